"""Transactional outbox: an event is written in the same transaction as the change that caused it.

The relay publishes stored events to JetStream with ``Nats-Msg-Id`` = event id, so a re-send after
a crash falls inside the stream's duplicate window and is dropped by the server; it marks them
published only after JetStream acknowledged them, and keeps retrying with backoff while NATS is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import propagate
from prometheus_client import Counter, Gauge
from sqlalchemy.dialects import postgresql
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
    # The relay's claim reads unpublished rows in id order: this index holds exactly those, so a claim
    # neither sorts the whole backlog nor walks past every published row.
    __table_args__ = (
        sa.Index(
            "ix_outbox_event_unpublished",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    envelope: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    published_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
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


@dataclass(frozen=True, slots=True)
class _Pending:
    row_id: int
    event_id: str
    event_type: str
    subject: str
    envelope: str


_OUTBOX = OutboxEvent.__table__  # type: ignore[attr-defined]
# Core statements, compiled once: unpublished rows after a cursor, and "these ids are published"
# with the id list as one expanding parameter (``in_(list)`` builds and compiles a bind per id).
_CLAIM = (
    sa.select(_OUTBOX.c.id, _OUTBOX.c.event_id, _OUTBOX.c.event_type, _OUTBOX.c.subject, _OUTBOX.c.envelope)
    .where(_OUTBOX.c.published_at.is_(None), _OUTBOX.c.id > sa.bindparam("after_id"))
    .order_by(_OUTBOX.c.id)
    .limit(sa.bindparam("batch_size"))
)
_MARK_PUBLISHED = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(sa.bindparam("row_ids", expanding=True)))
    .values(published_at=sa.bindparam("now"), attempts=_OUTBOX.c.attempts + 1)
)
# On PostgreSQL one array parameter instead of a thousand binds: about 3x faster per batch (bench).
_MARK_PUBLISHED_POSTGRES = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.any_(sa.bindparam("row_ids", type_=postgresql.ARRAY(sa.Integer))))
    .values(published_at=sa.bindparam("now"), attempts=_OUTBOX.c.attempts + 1)
)


def event_headers(
    event_id: str, event_type: str, *, traceparent: str | None = None, tracestate: str | None = None
) -> dict[str, str]:
    """NATS headers of a published event: ``Nats-Msg-Id`` (JetStream's duplicate key), content type, type, trace."""
    headers = {
        HEADER_MESSAGE_ID: event_id,
        HEADER_CONTENT_TYPE: CONTENT_TYPE_CLOUDEVENTS_JSON,
        HEADER_EVENT_TYPE: event_type,
    }
    if traceparent:
        headers[HEADER_TRACEPARENT] = traceparent
    if tracestate:
        headers[HEADER_TRACESTATE] = tracestate
    return headers


def _headers(item: _Pending) -> dict[str, str]:
    # Parse the stored envelope only when it carries trace context (not for every row).
    if '"trace' not in item.envelope:
        return event_headers(item.event_id, item.event_type)
    envelope = json.loads(item.envelope)
    return event_headers(
        item.event_id, item.event_type, traceparent=envelope.get("traceparent"), tracestate=envelope.get("tracestate")
    )


class OutboxRelay:
    """Publishes unpublished outbox rows in order, in batches, until stopped."""

    def __init__(
        self,
        database: Database,
        link: NatsLink,
        *,
        service: str,
        batch_size: int = 1000,
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
        self._jetstream: JetStreamContext | None = None
        self._jetstream_client: object | None = None
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
                published = await self._drain()
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

    async def _drain(self) -> int:
        """Publish full batches back to back until a short one; returns how many were acknowledged.

        While JetStream acknowledges batch k, a worker thread claims batch k+1 (the rows after the
        last id of batch k, since k is not marked yet) and batch k-1 is marked published in the
        background. A batch is still marked only after its acks, and one batch is in flight at a time.
        """
        pending = await asyncio.to_thread(self._claim)
        if not pending:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            return 0
        total = 0
        marking: asyncio.Future[None] | None = None
        try:
            while pending:
                following: asyncio.Future[list[_Pending]] | None = None
                try:
                    futures = await self._send(pending)
                    if len(pending) == self.batch_size and not self._stopping:
                        following = asyncio.ensure_future(asyncio.to_thread(self._claim, pending[-1].row_id))
                    await self._acknowledged(futures)
                except BaseException as error:
                    if following is not None:
                        following.cancel()
                    await asyncio.to_thread(self._record_failure, pending, repr(error)[:500])
                    raise
                if marking is not None:
                    await marking
                marking = asyncio.ensure_future(
                    asyncio.to_thread(self._mark_published, [item.row_id for item in pending])
                )
                EVENTS_PUBLISHED.labels(self.service).inc(len(pending))
                total += len(pending)
                pending = await following if following is not None else []
        finally:
            if marking is not None:
                await marking
        return total

    def _publisher(self) -> JetStreamContext:
        """The relay's own JetStream context, whose pending limit always fits one batch."""
        client = self.link.client
        if client is None or self.link.jetstream is None:
            raise ConnectionError("NATS is not connected")
        if self._jetstream is None or self._jetstream_client is not client:
            self._jetstream = client.jetstream(timeout=self.ack_timeout, publish_async_max_pending=self.batch_size)
            self._jetstream_client = client
        return self._jetstream

    async def _send(self, pending: list[_Pending]) -> list[asyncio.Future[PubAck]]:
        jetstream = self._publisher()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for item in pending:
                # wait_stall=None: a number makes nats-py wrap every publish in asyncio.wait_for (a task
                # and a trip through the event loop per message, so every message gets its own send()).
                # Only this relay uses the context and it waits for each batch, so no publish stalls.
                futures.append(
                    await jetstream.publish_async(item.subject, item.envelope.encode(), headers=_headers(item))
                )
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return futures

    async def _acknowledged(self, futures: list[asyncio.Future[PubAck]]) -> None:
        # A future never completes if the connection dropped mid-batch, so bound the wait.
        try:
            async with asyncio.timeout(self.ack_timeout):
                await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def _publish(self, pending: list[_Pending]) -> None:
        await self._acknowledged(await self._send(pending))

    def _claim(self, after_id: int = 0) -> list[_Pending]:
        # Read-only: on SQLite the claim then reads beside the mark of the previous batch.
        with self.database.engine.execution_options(read_only=True).connect() as connection:
            rows = connection.execute(_CLAIM, {"after_id": after_id, "batch_size": self.batch_size})
            return [_Pending(*row) for row in rows]

    def _mark_published(self, row_ids: list[int]) -> None:
        statement = _MARK_PUBLISHED_POSTGRES if self.database.dialect == "postgresql" else _MARK_PUBLISHED
        with self.database.engine.begin() as connection:
            connection.execute(statement, {"row_ids": row_ids, "now": utcnow()})

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
