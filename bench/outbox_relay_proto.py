"""Prototype of a faster ``kit.outbox.OutboxRelay``, measured with ``outbox_throughput.py --relay proto``.

Same table, same guarantees (publish with Nats-Msg-Id, mark published only after the JetStream ack),
three changes, each switchable with ``OUTBOX_PROTO`` (comma-separated, default all):

- ``nostall``: ``publish_async(wait_stall=None)`` while a batch fits the context's pending limit.
  With a number, nats-py wraps the semaphore acquire in ``asyncio.wait_for`` - one task and several
  event-loop turns per message, so the flusher writes every message with its own ``send()``.
  The batch still has its overall ``ack_timeout``.
- ``noparse``: no ``EventEnvelope.from_json_bytes`` per row; ``ce-type`` comes from the
  ``event_type`` column and the envelope JSON is parsed only when it contains trace context.
- ``pipeline``: claim batch k+1 (rows with id > last id of batch k) while the acks of batch k are
  outstanding, and mark batch k published in the background.
- ``window`` (with ``pipeline``): also *send* batch k+1 before awaiting the acks of batch k, so the
  server stores one batch while Python encodes the next (two batches in flight; on a failure both are
  left unpublished and re-sent, de-duplicated by Nats-Msg-Id).
- ``core``: claim and mark with SQLAlchemy Core on a connection (no ORM session; the id list is one
  expanding bind parameter compiled once instead of ``in_()`` building a bind per id).

- ``partial``: replace the ``published_at`` index by ``(id) WHERE published_at IS NULL``, which
  serves the claim query (unpublished rows in id order) directly instead of a scan over every
  unpublished row plus a sort, or a primary-key scan that filters out all published rows.

Not in the default set: ``window``, ``core``, ``partial`` (measured separately).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select

from contracts.envelope import CONTENT_TYPE_CLOUDEVENTS_JSON, EventEnvelope
from kit.outbox import EVENTS_PUBLISHED, OUTBOX_BACKLOG, OutboxEvent, OutboxRelay, utcnow

FEATURES = {name.strip() for name in os.environ.get("OUTBOX_PROTO", "nostall,noparse,pipeline").split(",")}


@dataclass(frozen=True)
class _Pending:
    row_id: int
    event_id: str
    event_type: str
    subject: str
    envelope: str


_TABLE = OutboxEvent.__table__  # type: ignore[attr-defined]
_CLAIM = (
    sa.select(_TABLE.c.id, _TABLE.c.event_id, _TABLE.c.event_type, _TABLE.c.subject, _TABLE.c.envelope)
    .where(_TABLE.c.published_at.is_(None), _TABLE.c.id > sa.bindparam("after_id"))
    .order_by(_TABLE.c.id)
    .limit(sa.bindparam("batch_size"))
)
_MARK = (
    sa.update(_TABLE)
    .where(_TABLE.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(published_at=sa.bindparam("now"), attempts=_TABLE.c.attempts + 1)
)


class ProtoRelay(OutboxRelay):
    @staticmethod
    def prepare_schema(engine: sa.Engine) -> None:
        if "partial" not in FEATURES:
            return
        with engine.begin() as connection:
            connection.execute(sa.text("DROP INDEX ix_outbox_event_published_at"))
            connection.execute(
                sa.text(
                    "CREATE INDEX ix_outbox_event_unpublished ON outbox_event (id) WHERE published_at IS NULL"
                )
            )

    def _claim(self, after_id: int = 0) -> list[_Pending]:  # type: ignore[override]
        if "core" in FEATURES:
            with self.database.engine.connect() as connection:
                result = connection.execute(_CLAIM, {"after_id": after_id, "batch_size": self.batch_size})
                return [_Pending(*row) for row in result]
        with self.database.session() as session:
            rows = session.exec(
                select(
                    OutboxEvent.id,
                    OutboxEvent.event_id,
                    OutboxEvent.event_type,
                    OutboxEvent.subject,
                    OutboxEvent.envelope,
                )
                .where(col(OutboxEvent.published_at).is_(None), col(OutboxEvent.id) > after_id)
                .order_by(col(OutboxEvent.id))
                .limit(self.batch_size)
            ).all()
        return [_Pending(int(row[0]), row[1], row[2], row[3], row[4]) for row in rows]

    def _mark_published(self, row_ids: list[int]) -> None:
        if "core" not in FEATURES:
            return super()._mark_published(row_ids)
        with self.database.engine.begin() as connection:
            connection.execute(_MARK, {"ids": row_ids, "now": utcnow()})
        return None

    def _headers(self, item: _Pending) -> dict[str, str]:
        headers = {
            "Nats-Msg-Id": item.event_id,
            "Content-Type": CONTENT_TYPE_CLOUDEVENTS_JSON,
            "ce-type": item.event_type,
        }
        if "noparse" in FEATURES:
            if '"trace' in item.envelope:
                raw = json.loads(item.envelope)
                for key in ("traceparent", "tracestate"):
                    if raw.get(key):
                        headers[key] = raw[key]
        else:
            envelope = EventEnvelope.from_json_bytes(item.envelope)
            if envelope.traceparent:
                headers["traceparent"] = envelope.traceparent
            if envelope.tracestate:
                headers["tracestate"] = envelope.tracestate
        return headers

    async def _send(self, pending: list[_Pending]) -> list[asyncio.Future]:  # type: ignore[type-arg]
        jetstream = self.link.jetstream
        if jetstream is None:
            raise ConnectionError("NATS is not connected")
        # The batch never waits for the pending-limit semaphore when it has a permit per message.
        fits = jetstream._publish_async_pending_semaphore._value >= len(pending)
        wait_stall = None if "nostall" in FEATURES and fits else self.ack_timeout
        futures = []
        try:
            for item in pending:
                futures.append(
                    await jetstream.publish_async(
                        item.subject,
                        item.envelope.encode(),
                        headers=self._headers(item),
                        wait_stall=wait_stall,
                    )
                )
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return futures

    async def _acks(self, futures: list[asyncio.Future]) -> None:  # type: ignore[type-arg]
        # A future never completes if the connection dropped mid-batch, so bound the wait.
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def _publish(self, pending: list[_Pending]) -> None:  # type: ignore[override]
        await self._acks(await self._send(pending))

    async def publish_batch(self) -> int:
        if "pipeline" not in FEATURES:
            return await super().publish_batch()
        if "window" in FEATURES:
            return await self._publish_windowed()
        return await self._publish_pipelined()

    async def _publish_pipelined(self) -> int:
        """Publish full batches back to back; a partial batch ends the run. Returns events acknowledged."""
        pending = await asyncio.to_thread(self._claim)
        if not pending:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            return 0
        total = 0
        marking: asyncio.Future[None] | None = None
        try:
            while pending:
                try:
                    futures = await self._send(pending)
                    following = (
                        asyncio.ensure_future(asyncio.to_thread(self._claim, pending[-1].row_id))
                        if len(pending) == self.batch_size
                        else None
                    )
                    try:
                        await self._acks(futures)
                    except BaseException:
                        if following is not None:
                            following.cancel()
                        raise
                except BaseException as error:
                    await asyncio.to_thread(self._record_failure, pending, repr(error)[:500])  # type: ignore[arg-type]
                    raise
                if marking is not None:
                    await marking
                marking = asyncio.ensure_future(
                    asyncio.to_thread(self._mark_published, [item.row_id for item in pending])
                )
                EVENTS_PUBLISHED.labels(self.service).inc(len(pending))
                total += len(pending)
                if following is None:
                    break
                pending = await following
        finally:
            if marking is not None:
                await marking
        return total

    async def _publish_windowed(self) -> int:
        """Like ``_publish_pipelined``, but batch k+1 is sent before the acks of batch k are awaited."""
        pending = await asyncio.to_thread(self._claim)
        if not pending:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            return 0
        total = 0
        marking: asyncio.Future[None] | None = None
        inflight: list[tuple[list[_Pending], list[asyncio.Future]]] = []  # type: ignore[type-arg]
        following: asyncio.Future[list[_Pending]] | None = None
        try:
            while pending or inflight:
                if pending:
                    inflight.append((pending, await self._send(pending)))
                    full = len(pending) == self.batch_size
                    following = (
                        asyncio.ensure_future(asyncio.to_thread(self._claim, pending[-1].row_id))
                        if full
                        else None
                    )
                    pending = []
                if len(inflight) == 2 or following is None:
                    done, futures = inflight[0]
                    await self._acks(futures)
                    inflight.pop(0)
                    if marking is not None:
                        await marking
                    marking = asyncio.ensure_future(
                        asyncio.to_thread(self._mark_published, [item.row_id for item in done])
                    )
                    EVENTS_PUBLISHED.labels(self.service).inc(len(done))
                    total += len(done)
                if following is not None and not pending:
                    pending = await following
                    following = None
        except BaseException as error:
            if following is not None:
                following.cancel()
            for batch, futures in inflight:
                for future in futures:
                    future.cancel()
                await asyncio.to_thread(self._record_failure, batch, repr(error)[:500])  # type: ignore[arg-type]
            raise
        finally:
            if marking is not None:
                await marking
        return total
