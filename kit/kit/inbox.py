"""Idempotent event consumers over durable JetStream pull consumers.

A handler's effects and the processed event id are committed in one transaction, so a redelivered
event has no second effect. A message that keeps failing goes to the dead-letter subject with its
error after ``max_attempts``; one that cannot even be parsed goes there at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from contracts.envelope import EventEnvelope
from contracts.messaging import (
    HEADER_ATTEMPTS,
    HEADER_CONSUMER,
    HEADER_ERROR,
    HEADER_MESSAGE_ID,
    HEADER_ORIGINAL_SEQUENCE,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SUBJECT,
    dead_letter_subject,
)
from kit.db import Database, insert_new_rows
from kit.messaging import NatsLink

logger = logging.getLogger("kit.inbox")
tracer = trace.get_tracer("kit.inbox")

EVENTS_HANDLED = Counter("edu_inbox_handled_total", "Events handled, by outcome", ["consumer", "outcome"])

Handler = Callable[[Session, EventEnvelope], None]
#: Applies many events in one transaction (high-volume consumers such as metering's usage ingest).
BatchHandler = Callable[[Session, list[EventEnvelope]], None]


class ProcessedEvent(SQLModel, table=True):
    """Ids of events a consumer has applied; the primary key makes a second application impossible."""

    __tablename__ = "inbox_processed_event"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=200)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=sa.DateTime(timezone=True))


def _one_at_a_time(handler: Handler) -> BatchHandler:
    def apply(session: Session, envelopes: list[EventEnvelope]) -> None:
        for envelope in envelopes:
            handler(session, envelope)

    return apply


class _Poison(Exception):
    """A message no retry can fix (unparseable envelope)."""


_STREAM_NOT_FOUND = 10059  # JetStream's error code


class EventConsumer:
    """Feeds events from one durable JetStream consumer to a synchronous handler, exactly once in effect."""

    def __init__(
        self,
        *,
        service: str,
        name: str,
        stream: str,
        subjects: list[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        database: Database,
        link: NatsLink,
        max_attempts: int = 5,
        ack_wait_seconds: float = 30.0,
        batch_size: int = 100,
        fetch_timeout: float = 1.0,
        deduplicated_by_handler: frozenset[str] = frozenset(),
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("an event consumer takes either a handler or a batch handler")
        self.service = service
        self.name = name
        self.stream = stream
        self.subjects = subjects
        self.handler: BatchHandler = batch_handler or _one_at_a_time(handler)  # type: ignore[arg-type]
        self.batched = batch_handler is not None
        self.database = database
        self.link = link
        self.max_attempts = max_attempts
        self.ack_wait_seconds = ack_wait_seconds
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        # Event types whose handler keeps them from taking effect twice by a unique key of its own (metering's
        # usage ledger): a processed-id row for each would only repeat that check, and grow without end.
        self.deduplicated_by_handler = deduplicated_by_handler
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None

    async def start(self) -> None:
        self._stop_requested = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        """Finish the message in hand, then stop; cancel only if that takes too long."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()
        done, _pending = await asyncio.wait({task}, timeout=self.fetch_timeout + 5)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _config(self) -> ConsumerConfig:
        # The server may deliver once more than max_attempts so that our own dead-lettering decides.
        return ConsumerConfig(
            durable_name=self.name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_attempts + 1,
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,
            filter_subject=self.subjects[0] if len(self.subjects) == 1 else None,
        )

    async def _run(self) -> None:
        # One pull subscription for the consumer's whole life: nats-py re-subscribes its inbox after a
        # reconnect, so pull requests left in flight across a server restart still reach us. Replacing
        # the subscription instead would strand those requests' messages on a dead inbox until
        # ack_wait expires (the known nats-py pull stall).
        subscription = None
        idle_fetches = 0
        # A batch consumer fetches the next batch while the database applies the current one (in order: only the
        # fetch runs ahead), so the broker's round trips and the writes overlap instead of adding up.
        prefetch: asyncio.Task[list[Msg]] | None = None
        waiting_for_stream = False
        while not self._stopping:
            try:
                if subscription is None:
                    if not self.link.is_connected or self.link.jetstream is None:
                        await self.link.wait_connected(timeout=1.0)
                        continue
                    await self._ensure_consumer()
                    subscription = await self.link.jetstream.pull_subscribe_bind(durable=self.name, stream=self.stream)
                    if waiting_for_stream:
                        logger.info("consumer %s: stream %s exists now; consuming", self.name, self.stream)
                        waiting_for_stream = False
                try:
                    if prefetch is not None:
                        fetched, prefetch = prefetch, None
                        messages = await fetched
                    else:
                        messages = await subscription.fetch(self.batch_size, timeout=self.fetch_timeout)
                    if self.batched and not self._stopping:
                        prefetch = asyncio.create_task(subscription.fetch(self.batch_size, timeout=self.fetch_timeout))
                except (NatsTimeoutError, TimeoutError):
                    idle_fetches += 1
                    if idle_fetches % 20 == 0 and self.link.is_connected:
                        # The durable consumer may be gone (a broker that lost its state): declare it again.
                        await self._ensure_consumer()
                    continue
                idle_fetches = 0
                if self.batched and len(messages) > 1 and await self._handle_batch(messages):
                    continue
                for message in messages:
                    if self._stopping:
                        break  # unacknowledged messages are redelivered after ack_wait
                    await self._handle(message)
            except asyncio.CancelledError:
                await self._release(prefetch)
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
                raise
            except NotFoundError as error:
                # The publishing service declares its stream when it first connects, which may be after we start:
                # said once, then waited for quietly.
                if subscription is None and error.err_code == _STREAM_NOT_FOUND:
                    if not waiting_for_stream:
                        logger.info("consumer %s: stream %s does not exist yet; waiting for its publisher",
                                    self.name, self.stream)  # fmt: skip
                        waiting_for_stream = True
                else:
                    logger.warning("consumer %s: %s; retrying", self.name, error)
                await self._pause(0.5)
            except Exception as error:
                logger.warning("consumer %s: %s; retrying", self.name, error)
                await self._pause(0.5)
        await self._release(prefetch)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _pause(self, seconds: float) -> None:
        """Sleep before retrying, but not past a stop."""
        if self._stop_requested is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)

    @staticmethod
    async def _release(prefetch: asyncio.Task[list[Msg]] | None) -> None:
        """Hand back a batch fetched ahead but never applied, so it is redelivered now, not after ack_wait."""
        if prefetch is None:
            return
        try:
            messages = await asyncio.wait_for(prefetch, timeout=5)
        except BaseException:  # a timeout, a broker gone, a cancellation: nothing was handed to us
            return
        for message in messages:
            with contextlib.suppress(Exception):
                await message.nak()

    async def _ensure_consumer(self) -> None:
        assert self.link.jetstream is not None
        await self.link.jetstream.add_consumer(self.stream, self._config())

    async def _handle(self, message: Msg) -> None:
        attempt = message.metadata.num_delivered
        carrier = dict(message.headers or {})
        token = otel_context.attach(propagate.extract(carrier))
        try:
            with tracer.start_as_current_span(f"consume {message.subject}", kind=trace.SpanKind.CONSUMER):
                try:
                    envelope = self._parse(message)
                    applied = await asyncio.to_thread(self._apply, envelope)
                except _Poison as poison:
                    await self._dead_letter(message, str(poison), attempt)
                    EVENTS_HANDLED.labels(self.name, "poison").inc()
                    return
                except Exception as error:
                    logger.warning(
                        "consumer %s failed on %s (attempt %d/%d): %s",
                        self.name, message.subject, attempt, self.max_attempts, error,
                    )  # fmt: skip
                    if attempt >= self.max_attempts:
                        await self._dead_letter(message, f"{type(error).__name__}: {error}", attempt)
                        EVENTS_HANDLED.labels(self.name, "dead_lettered").inc()
                    else:
                        await message.nak(delay=min(0.2 * 2**attempt, 30.0))
                        EVENTS_HANDLED.labels(self.name, "retried").inc()
                    return
                await message.ack()
                EVENTS_HANDLED.labels(self.name, "applied" if applied else "duplicate").inc()
        finally:
            otel_context.detach(token)

    async def _handle_batch(self, messages: list[Msg]) -> bool:
        """Apply a fetched batch in one transaction and acknowledge it; False to fall back to one at a time.

        Any failure (a poison message, a handler error) leaves the batch unacknowledged and unapplied, and the
        caller then handles each message alone, so one bad event neither blocks nor takes down the others.
        """
        with tracer.start_as_current_span(f"consume batch {self.stream}", kind=trace.SpanKind.CONSUMER):
            try:
                envelopes = [self._parse(message) for message in messages]
                applied = await asyncio.to_thread(self._apply_many, envelopes)
            except Exception as error:
                logger.info("consumer %s: batch of %d falls back to one at a time: %s", self.name, len(messages), error)
                return False
            for message in messages:  # in turn: an ack only queues a write, cheaper than a task per message
                await message.ack()
        EVENTS_HANDLED.labels(self.name, "applied").inc(applied)
        EVENTS_HANDLED.labels(self.name, "duplicate").inc(len(messages) - applied)
        return True

    def _apply_many(self, envelopes: list[EventEnvelope]) -> int:
        """Apply the events not applied before, together; returns how many were new (or handed to a handler that
        deduplicates them itself).

        The processed ids are inserted first, in the same transaction as the handler's writes: the table's key picks
        the new events (and waits for a replica applying the same batch, then skips what it committed).
        """
        unique: dict[str, EventEnvelope] = {}
        for envelope in envelopes:
            unique.setdefault(envelope.id, envelope)  # the same event twice in one batch counts once
        tracked = [envelope for envelope in unique.values() if envelope.type not in self.deduplicated_by_handler]
        with self.database.session() as session:
            processed_at = datetime.now(UTC)
            # Straight to the driver: building a model object per id costs more than the handler's own inserts.
            new_keys = insert_new_rows(
                session, ProcessedEvent.__table__, ("consumer", "event_id", "event_type", "processed_at"),  # type: ignore[attr-defined]
                [(self.name, envelope.id, envelope.type, processed_at) for envelope in tracked],
                ("consumer", "event_id"),
            )  # fmt: skip
            fresh = [
                envelope
                for envelope in unique.values()  # in stream order, tracked or not
                if envelope.type in self.deduplicated_by_handler or (self.name, envelope.id) in new_keys
            ]
            if fresh:
                self.handler(session, fresh)
        return len(fresh)

    @staticmethod
    def _parse(message: Msg) -> EventEnvelope:
        try:
            return EventEnvelope.from_json_bytes(message.data)
        except ValidationError as error:
            raise _Poison(f"not a valid CloudEvents envelope: {error.errors()[:3]}") from error

    def _apply(self, envelope: EventEnvelope) -> bool:
        """Apply the event once; returns False when it had been applied before."""
        if envelope.type in self.deduplicated_by_handler:
            with self.database.session() as session:
                self.handler(session, [envelope])
            return True
        try:
            with self.database.session() as session:
                if session.get(ProcessedEvent, (self.name, envelope.id)) is not None:
                    return False
                self.handler(session, [envelope])
                session.add(ProcessedEvent(consumer=self.name, event_id=envelope.id, event_type=envelope.type))
        except IntegrityError:
            # A concurrent delivery of the same event committed first; nothing more to do.
            with self.database.session() as session:
                if session.get(ProcessedEvent, (self.name, envelope.id)) is not None:
                    return False
            raise
        return True

    async def _dead_letter(self, message: Msg, error: str, attempt: int) -> None:
        assert self.link.jetstream is not None
        metadata = message.metadata
        headers = {
            HEADER_MESSAGE_ID: f"{self.name}:{metadata.stream}:{metadata.sequence.stream}",
            HEADER_ERROR: error[:1000],
            HEADER_CONSUMER: self.name,
            HEADER_ORIGINAL_SUBJECT: message.subject,
            HEADER_ORIGINAL_STREAM: metadata.stream,
            HEADER_ORIGINAL_SEQUENCE: str(metadata.sequence.stream),
            HEADER_ATTEMPTS: str(attempt),
        }
        await self.link.jetstream.publish(dead_letter_subject(self.service, self.name), message.data, headers=headers)
        await message.term()
        logger.error("consumer %s dead-lettered %s after %d attempts: %s", self.name, message.subject, attempt, error)
