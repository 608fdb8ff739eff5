"""Usage records of apps' API calls: published to NATS in batches, never slowing a request, never lost.

The proxy calls :meth:`UsageRecorder.record` on the request path, which only appends to a list. A
background task cuts that list into batches and encodes each one, once, as the CloudEvents envelope it
will be published as: the batch id (= event id = ``Nats-Msg-Id``) and the records' ids are fixed from
then on. A second task publishes batches and waits for JetStream's acknowledgement.

While NATS is away, batches wait in memory; once more than ``memory_limit`` records are held, the oldest
whole batches spill to the spool directory, one file per batch (temporary file, fsync, rename). Spooled
batches are published first, oldest first, and a file is deleted only after its acknowledgement; files
left by a previous process are published on start. A batch sent twice (an acknowledgement lost, a crash
between acknowledgement and delete) falls in the stream's duplicate window and is stored once; beyond
that window consumers still deduplicate records by their id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nats.errors import MaxPayloadError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.events import StreamSpec
from contracts.events.gateway import ApiCallRecord, ApiUsageRecordedV1
from kit.messaging import NatsLink
from kit.outbox import build_envelope, event_headers

logger = logging.getLogger("gateway.usage")

USAGE_STREAM = StreamSpec(ApiUsageRecordedV1.service).name
# NATS refuses messages over the server's max_payload (1 MiB by default); headers need a little room too.
DEFAULT_MAX_BATCH_BYTES = 512 * 1024
_HEADER_ROOM = 4096

RECORDS_PUBLISHED = Counter("edu_gateway_usage_published_records", "Usage records acknowledged by JetStream")
RECORDS_SPOOLED = Counter("edu_gateway_usage_spooled_records", "Usage records written to the spool directory")
RECORDS_PENDING = Gauge("edu_gateway_usage_pending_records", "Usage records not yet acknowledged (memory and spool)")
RECORDS_REJECTED = Counter(
    "edu_gateway_usage_rejected_records",
    "Usage records that cannot be published as they are (invalid, oversized or unreadable); kept under rejected/",
)
RECORDS_DROPPED = Counter(
    "edu_gateway_usage_dropped_records", "Usage records given up because neither NATS nor the spool took them"
)
PUBLISH_FAILURES = Counter("edu_gateway_usage_publish_failures", "Failed publishes of usage batches")

# <sequence>-<records>-<batch id>.json: names sort oldest first, and the record count needs no parsing.
_SPOOL_NAME = re.compile(r"^(?P<sequence>\d{20})-(?P<records>\d+)-(?P<batch_id>[0-9a-f-]{36})\.json$")
_TEMPORARY_SUFFIX = ".tmp"
# Records encoded between two yields to the event loop (about 0.5 ms of work).
_RECORDS_PER_STEP = 64
REJECTED_DIR = "rejected"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """What the proxy knows about one call once it has answered."""

    client_id: str
    app_id: str
    school_id: str | None
    service: str
    route: str
    method: str
    status: int
    latency_ms: float
    request_bytes: int
    response_bytes: int
    at: datetime
    request_id: str


@dataclass(slots=True)
class _Batch:
    batch_id: str
    records: int
    body: bytes | None  # the envelope as published; None for a spooled batch until it is read back
    path: Path | None = None  # its spool file, once spilled


class _UnreadableSpoolFile(Exception):
    """A spool file that is not the envelope of a usage batch (truncated, edited, another event)."""


def _headers(batch_id: str) -> dict[str, str]:
    return event_headers(batch_id, ApiUsageRecordedV1.event_type())


def _to_record(call: ApiCall) -> ApiCallRecord:
    return ApiCallRecord(
        id=str(uuid.uuid4()),
        client_id=call.client_id,
        app_id=call.app_id,
        school_id=call.school_id,
        service=call.service,
        route=call.route,
        method=call.method,
        status=call.status,
        latency_ms=call.latency_ms,
        request_bytes=call.request_bytes,
        response_bytes=call.response_bytes,
        at=call.at,
        request_id=call.request_id,
    )


def _encode(records: list[ApiCallRecord], max_bytes: int) -> list[_Batch]:
    """One envelope per batch, halving a batch whose envelope would exceed ``max_bytes``."""
    batch_id = str(uuid.uuid4())
    # No trace context: a batch gathers many requests' records and belongs to none of their traces.
    envelope = build_envelope(ApiUsageRecordedV1(batch_id=batch_id, records=records), carrier={})
    body = envelope.model_copy(update={"id": batch_id}).to_json_bytes()
    if len(body) > max_bytes and len(records) > 1:
        half = len(records) // 2
        return _encode(records[:half], max_bytes) + _encode(records[half:], max_bytes)
    return [_Batch(batch_id=batch_id, records=len(records), body=body)]


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_spool_files(directory: Path, files: Sequence[tuple[str, bytes]]) -> None:
    """Write each file completely or not at all: a reader never sees a partial batch under its final name."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files:
        temporary = directory / f".{name}{_TEMPORARY_SUFFIX}"
        with temporary.open("wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(directory / name)
    _fsync_directory(directory)  # the renames themselves survive a power cut


def _read_spool_file(path: Path, batch_id: str) -> bytes:
    body = path.read_bytes()
    try:
        envelope = EventEnvelope.from_json_bytes(body)
        ApiUsageRecordedV1.model_validate(envelope.data)
    except ValidationError as error:
        raise _UnreadableSpoolFile(f"{path.name}: {error.error_count()} validation error(s)") from error
    if envelope.id != batch_id or envelope.type != ApiUsageRecordedV1.event_type():
        raise _UnreadableSpoolFile(f"{path.name}: holds {envelope.type} {envelope.id}, not batch {batch_id}")
    return body


def _scan_spool(directory: Path) -> list[_Batch]:
    """Batches left in the spool directory, oldest first; half-written temporary files are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    batches: list[_Batch] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(_TEMPORARY_SUFFIX):
            # Written by a process that died before the rename; its records died with its memory.
            logger.warning("removing a half-written usage spool file %s", path.name)
            path.unlink(missing_ok=True)
            continue
        match = _SPOOL_NAME.match(path.name)
        if match is None:
            logger.warning("ignoring %s in the usage spool directory: not a usage batch", path.name)
            continue
        batches.append(_Batch(batch_id=match["batch_id"], records=int(match["records"]), body=None, path=path))
    return batches


def _set_aside(directory: Path, name: str, body: bytes | None, source: Path | None) -> None:
    rejected = directory / REJECTED_DIR
    rejected.mkdir(exist_ok=True)
    if source is not None:
        source.replace(rejected / name)
    elif body is not None:
        _write_spool_files(rejected, [(name, body)])


class UsageRecorder:
    """Collects usage records and publishes them to the gateway's stream in batches.

    ``record`` must be called from the event loop's thread (the proxy's request handlers). Records
    recorded after ``stop`` are not published.
    """

    def __init__(
        self,
        link: NatsLink,
        *,
        batch_size: int,
        flush_interval: float,
        memory_limit: int,
        spool_dir: Path,
        ack_timeout: float = 5.0,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_backoff: float = 5.0,
    ) -> None:
        self.link = link
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.memory_limit = memory_limit
        self.spool_dir = Path(spool_dir)
        self.ack_timeout = ack_timeout
        self.max_batch_bytes = max_batch_bytes
        self.max_backoff = max_backoff

        self.published = 0  # records acknowledged by JetStream
        self.spooled = 0  # records ever written to the spool
        self.rejected = 0  # records set aside under spool_dir/rejected
        self.dropped = 0  # records given up (the spool failed while memory was full)
        self.publish_failures = 0

        self._current: list[ApiCall] = []
        self._memory: deque[_Batch] = deque()  # cut, waiting, oldest first
        self._spool: deque[_Batch] = deque()  # spilled, waiting, oldest first
        self._cutting_records = 0  # taken from self._current, not yet encoded
        self._memory_records = 0  # in self._memory, being spilled, or in flight from memory
        self._waiting_records = 0  # cut and not yet acknowledged, wherever they are
        self._last_sequence = 0
        self._batch_full = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # ---------------------------------------------------------------------------- request path

    def record(self, call: ApiCall) -> None:
        """Keep one call's record for the next batch (O(1); no I/O, no await, no exception)."""
        current = self._current
        current.append(call)
        if len(current) >= self.batch_size:
            self._batch_full.set()

    # ------------------------------------------------------------------------------- counters

    @property
    def pending(self) -> int:
        """Records not yet acknowledged by JetStream: in memory or in the spool."""
        return len(self._current) + self._cutting_records + self._waiting_records

    @property
    def held_in_memory(self) -> int:
        return len(self._current) + self._cutting_records + self._memory_records

    @property
    def spool_files(self) -> int:
        return len(self._spool)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Pick up batches a previous process left in the spool, then start cutting and publishing."""
        self._stopping = False
        self._stop_requested.clear()
        try:
            leftovers = await asyncio.to_thread(_scan_spool, self.spool_dir)
        except OSError as error:
            # Serving calls matters more than metering them: start, and let spilling report the disk.
            logger.error("usage spool directory %s is unusable: %s", self.spool_dir, error)
            leftovers = []
        if leftovers:
            logger.info("found %d usage batches left in the spool", len(leftovers))
        self._spool.extend(leftovers)
        self._waiting_records += sum(batch.records for batch in leftovers)
        self._update_gauge()
        self._tasks = [
            asyncio.create_task(self._cut_loop(), name="usage-cutter"),
            asyncio.create_task(self._publish_loop(), name="usage-publisher"),
        ]

    async def stop(self) -> None:
        """Publish what memory holds if NATS is connected; whatever is left goes to the spool."""
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        self._stop_requested.set()
        self._batch_full.set()
        self._batch_ready.set()
        if tasks:
            cutter, publisher = tasks
            # The cutter is not cancelled: a cancelled spill would leave files the index does not know.
            await cutter
            # The publisher waits at most one acknowledgement; cancelled, it puts its batch back.
            _done, running = await asyncio.wait({publisher}, timeout=self.ack_timeout + 1)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._cut(everything=True)
        while self._memory and self.link.is_connected:
            try:
                await self._publish_from_memory()
            except Exception as error:
                self._publish_failed(error)
                break
        if self._memory:
            await self._spill(self._memory_records)
        self._update_gauge()

    # ------------------------------------------------------------------------------- cutting

    async def _cut_loop(self) -> None:
        while not self._stopping:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._batch_full.wait()
                timed_out = not self._batch_full.is_set()
                self._batch_full.clear()
                if self._stopping:
                    return  # stop() cuts and flushes the rest itself
                await self._cut(everything=timed_out)
                if self._memory_records > self.memory_limit:
                    await self._spill(self._memory_records - self.memory_limit)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("cutting usage batches failed; retrying")

    async def _cut(self, *, everything: bool) -> None:
        """Turn held calls into encoded batches; a partial batch is cut only when ``everything``."""
        calls = self._current
        full = len(calls) - len(calls) % self.batch_size
        end = len(calls) if everything else full
        if end == 0:
            return
        self._current = calls[end:]
        self._cutting_records += end
        done = 0
        try:
            while done < end:
                chunk = calls[done : min(done + self.batch_size, end)]
                records = await self._records(chunk)
                for batch in _encode(records, self._max_body_bytes()) if records else []:
                    self._memory.append(batch)
                    self._memory_records += batch.records
                    self._waiting_records += batch.records
                done += len(chunk)
                self._cutting_records -= len(chunk)
                self._batch_ready.set()
                await asyncio.sleep(0)
        finally:
            if done < end:  # only a bug in encoding gets here; the counts must stay true
                self._cutting_records -= end - done
                self.dropped += end - done
                RECORDS_DROPPED.inc(end - done)
            self._update_gauge()

    async def _records(self, calls: list[ApiCall]) -> list[ApiCallRecord]:
        records: list[ApiCallRecord] = []
        for index, call in enumerate(calls, start=1):
            try:
                records.append(_to_record(call))
            except (ValidationError, AttributeError, TypeError) as error:
                # A proxy bug must not cost the other calls of the batch their records.
                self.rejected += 1
                RECORDS_REJECTED.inc()
                logger.error("usage record of request %s rejected: %s", getattr(call, "request_id", "?"), error)
            if index % _RECORDS_PER_STEP == 0:
                # Encoding costs a few microseconds a record: hand the loop back to requests now and then.
                await asyncio.sleep(0)
        return records

    def _max_body_bytes(self) -> int:
        client = self.link.client
        if client is None:
            return self.max_batch_bytes
        return min(self.max_batch_bytes, client.max_payload - _HEADER_ROOM)

    # ------------------------------------------------------------------------------ spooling

    def _spool_name(self, batch: _Batch) -> str:
        # Strictly increasing within a process, time-ordered across processes.
        self._last_sequence = max(time.time_ns(), self._last_sequence + 1)
        return f"{self._last_sequence:020d}-{batch.records}-{batch.batch_id}.json"

    async def _spill(self, excess: int) -> None:
        """Move the oldest whole batches from memory to the spool until ``excess`` records have gone."""
        spilling: list[_Batch] = []
        records = 0
        while self._memory and records < excess:
            batch = self._memory.popleft()
            spilling.append(batch)
            records += batch.records
        if not spilling:
            return
        files: list[tuple[str, bytes]] = []
        for batch in spilling:
            assert batch.body is not None  # batches in memory always hold their envelope
            files.append((self._spool_name(batch), batch.body))
        try:
            await asyncio.to_thread(_write_spool_files, self.spool_dir, files)
        except Exception as error:
            self._memory.extendleft(reversed(spilling))
            logger.error("could not spool %d usage records (%s); keeping them in memory", records, error)
            self._drop_beyond_hard_limit()
            return
        for batch, (name, _body) in zip(spilling, files, strict=True):
            batch.path = self.spool_dir / name
            batch.body = None
            self._spool.append(batch)
        self._memory_records -= records
        self.spooled += records
        RECORDS_SPOOLED.inc(records)
        self._batch_ready.set()

    def _drop_beyond_hard_limit(self) -> None:
        # With NATS away and the spool failing (disk full), memory is all there is; bounded, so that
        # usage metering can never take the gateway's memory and with it the requests themselves.
        while self._memory and self._memory_records > 2 * self.memory_limit:
            batch = self._memory.popleft()
            self._memory_records -= batch.records
            self._waiting_records -= batch.records
            self.dropped += batch.records
            RECORDS_DROPPED.inc(batch.records)
            logger.error(
                "dropped usage batch %s (%d records): neither NATS nor the spool took it", batch.batch_id, batch.records
            )
        self._update_gauge()

    # ---------------------------------------------------------------------------- publishing

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                if not self.link.is_connected:
                    await self.link.wait_connected(timeout=0.25)
                    continue
                self._batch_ready.clear()
                if self._spool:
                    await self._publish_from_spool()
                elif self._memory:
                    await self._publish_from_memory()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self._batch_ready.wait()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._publish_failed(error)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stop_requested.wait()
                backoff = min(backoff * 2, self.max_backoff)

    def _publish_failed(self, error: Exception) -> None:
        self.publish_failures += 1
        PUBLISH_FAILURES.inc()
        logger.warning("publishing usage batch failed (%s: %s); retrying", type(error).__name__, error)

    async def _send(self, batch_id: str, body: bytes) -> None:
        jetstream = self.link.jetstream
        if jetstream is None:
            raise ConnectionError("NATS is not connected")
        await jetstream.publish(
            ApiUsageRecordedV1.subject(),
            body,
            timeout=self.ack_timeout,
            stream=USAGE_STREAM,
            headers=_headers(batch_id),
        )

    async def _publish_from_memory(self) -> None:
        batch = self._memory.popleft()
        assert batch.body is not None
        try:
            await self._send(batch.batch_id, batch.body)
        except MaxPayloadError:
            self._memory_records -= batch.records
            await self._reject(batch, "larger than the NATS server accepts")
            return
        except BaseException:
            self._memory.appendleft(batch)  # same bytes, same id: a retry is deduplicated
            raise
        self._memory_records -= batch.records
        self._acknowledged(batch)

    async def _publish_from_spool(self) -> None:
        batch = self._spool[0]
        assert batch.path is not None
        try:
            body = await asyncio.to_thread(_read_spool_file, batch.path, batch.batch_id)
        except FileNotFoundError:
            self._spool.popleft()
            self._waiting_records -= batch.records
            logger.warning("usage spool file %s vanished before it was published", batch.path.name)
            self._update_gauge()
            return
        except (_UnreadableSpoolFile, ValueError) as error:
            self._spool.popleft()
            await self._reject(batch, str(error))
            return
        try:
            await self._send(batch.batch_id, body)
        except MaxPayloadError:
            self._spool.popleft()
            await self._reject(batch, "larger than the NATS server accepts")
            return
        self._spool.popleft()
        # Deleted only now: a crash before this line re-sends the file, and the stream drops the copy.
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(batch.path.unlink)
        self._acknowledged(batch)

    def _acknowledged(self, batch: _Batch) -> None:
        self._waiting_records -= batch.records
        self.published += batch.records
        RECORDS_PUBLISHED.inc(batch.records)
        self._update_gauge()

    async def _reject(self, batch: _Batch, reason: str) -> None:
        """Keep a batch that can never be published as it is under rejected/, out of the queue's way."""
        self._waiting_records -= batch.records
        self.rejected += batch.records
        RECORDS_REJECTED.inc(batch.records)
        name = batch.path.name if batch.path is not None else self._spool_name(batch)
        logger.error(
            "usage batch %s (%d records) set aside under %s/: %s", batch.batch_id, batch.records, REJECTED_DIR, reason
        )
        try:
            await asyncio.to_thread(_set_aside, self.spool_dir, name, batch.body, batch.path)
        except OSError as error:
            logger.error("could not set usage batch %s aside: %s", batch.batch_id, error)
        self._update_gauge()

    def _update_gauge(self) -> None:
        RECORDS_PENDING.set(self.pending)
