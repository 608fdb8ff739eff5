"""Transactional outbox: an event is written in the same transaction as the change that caused it.

The relay publishes stored events to JetStream with ``Nats-Msg-Id`` = event id, so a re-send after
a crash falls inside the stream's duplicate window and is dropped by the server; it marks them
published only after JetStream acknowledged them, and keeps retrying with backoff while NATS is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from opentelemetry import propagate
from prometheus_client import Counter, Gauge
from sqlmodel import Field, Session, SQLModel, col, select

from contracts.envelope import CONTENT_TYPE_CLOUDEVENTS_JSON, EventEnvelope
from contracts.events import EventPayload
from contracts.messaging import (
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_TYPE,
    HEADER_MESSAGE_ID,
    HEADER_TRACEPARENT,
    HEADER_TRACESTATE,
)
from kit.db import Database
from kit.messaging import NatsLink

logger = logging.getLogger("kit.outbox")

EVENTS_PUBLISHED = Counter("edu_outbox_published_total", "Outbox events acknowledged by JetStream", ["service"])
PUBLISH_FAILURES = Counter("edu_outbox_publish_failures_total", "Failed outbox publish batches", ["service"])
OUTBOX_BACKLOG = Gauge("edu_outbox_backlog", "Outbox events waiting to be published", ["service"])


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxEvent(SQLModel, table=True):
    """An event waiting for (or done with) publication; part of every service's schema."""

    __tablename__ = "outbox_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    envelope: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    published_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True), index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)


def _trace_carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def build_envelope(
    payload: EventPayload,
    *,
    subject_id: str | None = None,
    org_id: str | None = None,
    carrier: dict[str, str] | None = None,
) -> EventEnvelope:
    carrier = _trace_carrier() if carrier is None else carrier
    return EventEnvelope(
        source=f"/edu/{payload.service}",
        type=payload.event_type(),
        subject=subject_id,
        dataschema=payload.schema_uri(),
        orgid=org_id,
        traceparent=carrier.get("traceparent"),
        tracestate=carrier.get("tracestate"),
        data=payload.model_dump(mode="json"),
    )


def emit(
    session: Session, payload: EventPayload, *, subject_id: str | None = None, org_id: str | None = None
) -> EventEnvelope:
    """Store an event in the caller's transaction; it is published after, and only if, that commits."""
    envelope = build_envelope(payload, subject_id=subject_id, org_id=org_id)
    session.add(
        OutboxEvent(
            event_id=envelope.id,
            event_type=envelope.type,
            subject=payload.subject(),
            envelope=envelope.model_dump_json(exclude_none=True),
        )
    )
    session.info["outbox_written"] = True
    return envelope


@dataclass(frozen=True)
class PendingEvent:
    """One event of a bulk write: its payload, the entity it is about, and the owning organisation."""

    payload: EventPayload
    subject_id: str | None = None
    org_id: str | None = None


def emit_many(session: Session, events: list[PendingEvent]) -> int:
    """Store many events with one multi-row insert (bulk imports); same guarantees as :func:`emit`."""
    if not events:
        return 0
    carrier = _trace_carrier()
    rows = []
    now = utcnow()
    for event in events:
        envelope = build_envelope(event.payload, subject_id=event.subject_id, org_id=event.org_id, carrier=carrier)
        rows.append(
            {
                "event_id": envelope.id,
                "event_type": envelope.type,
                "subject": event.payload.subject(),
                "envelope": envelope.model_dump_json(exclude_none=True),
                "created_at": now,
                "attempts": 0,
            }
        )
    session.execute(sa.insert(OutboxEvent.__table__), rows)  # type: ignore[attr-defined]
    session.info["outbox_written"] = True
    return len(rows)


@dataclass(frozen=True)
class _Pending:
    row_id: int
    event_id: str
    subject: str
    envelope: str


class OutboxRelay:
    """Publishes unpublished outbox rows in order, in batches, until stopped."""

    def __init__(
        self,
        database: Database,
        link: NatsLink,
        *,
        service: str,
        batch_size: int = 500,
        ack_timeout: float = 5.0,
        idle_poll_seconds: float = 1.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self.database = database
        self.link = link
        self.service = service
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.idle_poll_seconds = idle_poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        database.on_commit(self.notify)

    def notify(self) -> None:
        """Wake the relay (thread-safe: called after commits in worker threads)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        """Let the current batch finish, then stop; cancel only if that takes too long."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _pending = await asyncio.wait({task}, timeout=self.ack_timeout + 1)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # A stop flag rather than cancellation alone: on Python 3.11 a cancellation that races with a
        # timeout can be swallowed, and the relay would then never stop.
        backoff = 0.1
        while not self._stopping:
            try:
                if not self.link.is_connected:
                    await self.link.wait_connected(timeout=self.idle_poll_seconds)
                    continue
                self._wake.clear()
                published = await self.publish_batch()
                backoff = 0.1
                if published < self.batch_size and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.idle_poll_seconds):
                            await self._wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                PUBLISH_FAILURES.labels(self.service).inc()
                logger.warning("outbox publish failed (%s); retrying in %.1fs", error, backoff)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._wake.wait()
                backoff = min(backoff * 2, self.max_backoff_seconds)

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many events JetStream acknowledged."""
        pending = await asyncio.to_thread(self._claim)
        if not pending:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            return 0
        try:
            await self._publish(pending)
        except BaseException as error:
            await asyncio.to_thread(self._record_failure, pending, repr(error)[:500])
            raise
        await asyncio.to_thread(self._mark_published, [item.row_id for item in pending])
        EVENTS_PUBLISHED.labels(self.service).inc(len(pending))
        return len(pending)

    async def _publish(self, pending: list[_Pending]) -> None:
        jetstream = self.link.jetstream
        if jetstream is None:
            raise ConnectionError("NATS is not connected")
        futures = []
        for item in pending:
            envelope = EventEnvelope.from_json_bytes(item.envelope)
            headers = {
                HEADER_MESSAGE_ID: item.event_id,
                HEADER_CONTENT_TYPE: CONTENT_TYPE_CLOUDEVENTS_JSON,
                HEADER_EVENT_TYPE: envelope.type,
            }
            if envelope.traceparent:
                headers[HEADER_TRACEPARENT] = envelope.traceparent
            if envelope.tracestate:
                headers[HEADER_TRACESTATE] = envelope.tracestate
            futures.append(
                await jetstream.publish_async(
                    item.subject, item.envelope.encode(), headers=headers, wait_stall=self.ack_timeout
                )
            )
        # A future never completes if the connection dropped mid-batch, so bound the wait.
        try:
            async with asyncio.timeout(self.ack_timeout):
                acks = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        del acks

    def _claim(self) -> list[_Pending]:
        with self.database.session() as session:
            rows = session.exec(
                select(OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.subject, OutboxEvent.envelope)
                .where(col(OutboxEvent.published_at).is_(None))
                .order_by(col(OutboxEvent.id))
                .limit(self.batch_size)
            ).all()
        return [_Pending(int(row[0]), row[1], row[2], row[3]) for row in rows]

    def _mark_published(self, row_ids: list[int]) -> None:
        now = utcnow()
        with self.database.session() as session:
            session.execute(
                sa.update(OutboxEvent)
                .where(col(OutboxEvent.id).in_(row_ids))
                .values(published_at=now, attempts=OutboxEvent.attempts + 1)
            )

    def _record_failure(self, pending: list[_Pending], error: str) -> None:
        with contextlib.suppress(Exception), self.database.session() as session:
            session.execute(
                sa.update(OutboxEvent)
                .where(col(OutboxEvent.id).in_([item.row_id for item in pending]))
                .values(attempts=OutboxEvent.attempts + 1, last_error=error)
            )

    def backlog(self) -> int:
        with self.database.session() as session:
            return int(
                session.exec(
                    select(sa.func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
                ).one()
            )
