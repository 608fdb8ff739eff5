"""Usage records of apps' calls reach the gateway's stream in batches, exactly once, across NATS outages."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nats
import pytest

from contracts.events import StreamSpec
from contracts.events.gateway import ApiUsageRecordedV1
from gateway.usage import USAGE_STREAM, ApiCall, UsageRecorder
from kit.messaging import NatsLink
from kit.natsserver import NatsServer

FIELDS = (
    "client_id",
    "app_id",
    "school_id",
    "service",
    "route",
    "method",
    "status",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "request_id",
)


def api_call(index: int, **changes: Any) -> ApiCall:
    values: dict[str, Any] = {
        "client_id": "homework-helper-web",
        "app_id": "homework-helper",
        "school_id": f"org-3301-{index % 3:04d}" if index % 4 else None,
        "service": "identity",
        "route": "/api/identity/organisations/{org_id}",
        "method": "GET",
        "status": 200 if index % 5 else 404,
        "latency_ms": 1.25 + index,
        "request_bytes": 0,
        "response_bytes": 310 + index,
        "at": datetime(2025, 3, 1, 8, 30, tzinfo=UTC) + timedelta(seconds=index),
        "request_id": f"req-{index:05d}",
    }
    values.update(changes)
    return ApiCall(**values)


@dataclass
class StoredBatch:
    headers: dict[str, str]
    envelope: dict[str, Any]
    size: int

    @property
    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.envelope["data"]["records"]
        return records


async def stored_message_count(url: str) -> int:
    client = await nats.connect(url)
    try:
        info = await client.jetstream().stream_info(USAGE_STREAM)
        return int(info.state.messages)
    finally:
        await client.close()


async def stored_batches(url: str) -> list[StoredBatch]:
    """Every message in the gateway's stream, read with an ephemeral JetStream consumer."""
    client = await nats.connect(url)
    try:
        jetstream = client.jetstream()
        count = (await jetstream.stream_info(USAGE_STREAM)).state.messages
        batches: list[StoredBatch] = []
        if count == 0:
            return batches
        subscription = await jetstream.pull_subscribe(ApiUsageRecordedV1.subject(), durable=None, stream=USAGE_STREAM)
        while len(batches) < count:
            for message in await subscription.fetch(count - len(batches), timeout=5):
                batches.append(StoredBatch(dict(message.headers or {}), json.loads(message.data), len(message.data)))
        return batches
    finally:
        await client.close()


def stored_records(batches: list[StoredBatch]) -> list[dict[str, Any]]:
    return [record for batch in batches for record in batch.records]


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def spool_files(directory: Path, pattern: str = "*.json") -> list[Path]:
    return sorted(directory.glob(pattern))


def write_spool_file(directory: Path, name: str, body: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(body)
    return path


async def connected_link(server: NatsServer) -> NatsLink:
    link = NatsLink(server.url, name="gateway-usage-test", streams=[StreamSpec("gateway")])
    await link.start()
    assert await link.wait_connected(10)
    return link


@pytest.fixture
async def link(nats_server: NatsServer) -> AsyncIterator[NatsLink]:
    link = await connected_link(nats_server)
    yield link
    await link.close()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "usage-spool"


def recorder_for(link: NatsLink, spool_dir: Path, **settings: Any) -> UsageRecorder:
    options: dict[str, Any] = {"batch_size": 10, "flush_interval": 0.05, "memory_limit": 1000, "ack_timeout": 1.0}
    options.update(settings)
    return UsageRecorder(link, spool_dir=spool_dir, **options)


async def test_full_batches_are_published_at_once_with_every_field(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    # A long flush interval: only a full batch (or stop) may publish.
    recorder = recorder_for(link, spool_dir, batch_size=5, flush_interval=60)
    await recorder.start()
    calls = [api_call(index) for index in range(12)]
    calls[7] = api_call(7, at=datetime(2025, 3, 1, 16, 30, tzinfo=timezone(timedelta(hours=8))))
    try:
        for call in calls:
            recorder.record(call)
        await wait_for(lambda: recorder.published == 10)
        await asyncio.sleep(0.2)
        assert recorder.published == 10, "a partial batch waits for the flush interval"
        assert recorder.pending == 2
    finally:
        await recorder.stop()
    assert recorder.published == 12, "stop publishes what is held while NATS is connected"
    assert recorder.pending == 0
    assert spool_files(spool_dir) == []

    batches = await stored_batches(nats_server.url)
    assert [len(batch.records) for batch in batches] == [5, 5, 2]
    for batch in batches:
        envelope = batch.envelope
        assert envelope["type"] == "edu.gateway.api_usage.recorded.v1"
        assert envelope["source"] == "/edu/gateway"
        assert envelope["specversion"] == "1.0"
        assert envelope["dataschema"] == ApiUsageRecordedV1.schema_uri()
        assert envelope["id"] == envelope["data"]["batch_id"] == batch.headers["Nats-Msg-Id"]
        assert batch.headers["ce-type"] == "edu.gateway.api_usage.recorded.v1"
        assert batch.headers["Content-Type"] == "application/cloudevents+json"
        ApiUsageRecordedV1.model_validate(envelope["data"])
    records = stored_records(batches)
    assert len({record["id"] for record in records}) == 12
    assert all(uuid.UUID(record["id"]) for record in records)
    for call, record in zip(calls, records, strict=True):
        assert {field: record[field] for field in FIELDS} == {field: getattr(call, field) for field in FIELDS}
        assert datetime.fromisoformat(record["at"]) == call.at
        assert record["at"].endswith("Z"), "times travel in UTC"
    assert records[7]["at"] == "2025-03-01T08:30:00Z"
    assert records[0]["school_id"] is None


async def test_a_partial_batch_is_published_after_the_flush_interval(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    recorder = recorder_for(link, spool_dir, batch_size=500, flush_interval=0.1)
    await recorder.start()
    try:
        for index in range(3):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.published == 3, timeout=3)
    finally:
        await recorder.stop()
    batches = await stored_batches(nats_server.url)
    assert [len(batch.records) for batch in batches] == [3]


async def test_records_wait_in_memory_then_on_disk_while_nats_is_away_and_arrive_exactly_once(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    recorder = recorder_for(link, spool_dir, batch_size=10, memory_limit=25)
    await recorder.start()
    try:
        for index in range(5):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.published == 5)

        nats_server.stop()
        await wait_for(lambda: not link.is_connected)
        for index in range(5, 105):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.held_in_memory <= 25)
        assert recorder.pending == 100
        assert recorder.published == 5
        # Whole batches of ten left memory, oldest first, until at most 25 records were held.
        files = spool_files(spool_dir)
        assert len(files) == 8
        assert recorder.spooled == 80
        assert recorder.held_in_memory == 20
        assert spool_files(spool_dir, "*.tmp") == [], "no half-written file is left behind"
        spooled = [json.loads(path.read_bytes()) for path in files]
        assert [record["request_id"] for batch in spooled for record in batch["data"]["records"]] == [
            f"req-{index:05d}" for index in range(5, 85)
        ]

        nats_server.start()
        await wait_for(lambda: recorder.published == 105, timeout=20)
        assert recorder.pending == 0
        assert spool_files(spool_dir) == [], "a spool file is deleted once its batch is acknowledged"
    finally:
        await recorder.stop()

    records = stored_records(await stored_batches(nats_server.url))
    assert [record_id for record_id, seen in Counter(record["id"] for record in records).items() if seen > 1] == []
    assert sorted(record["request_id"] for record in records) == [f"req-{index:05d}" for index in range(105)]


async def test_a_recorder_stopped_while_nats_is_away_leaves_files_the_next_one_publishes(
    nats_server: NatsServer, spool_dir: Path
) -> None:
    link = await connected_link(nats_server)
    recorder = recorder_for(link, spool_dir, batch_size=10, flush_interval=60)
    await recorder.start()
    nats_server.stop()
    await wait_for(lambda: not link.is_connected)
    for index in range(23):
        recorder.record(api_call(index))
    await recorder.stop()
    await link.close()
    files = spool_files(spool_dir)
    assert [len(json.loads(path.read_bytes())["data"]["records"]) for path in files] == [10, 10, 3]
    assert recorder.spooled == 23 and recorder.published == 0

    nats_server.start()
    link = await connected_link(nats_server)
    successor = recorder_for(link, spool_dir)
    try:
        await successor.start()
        assert successor.pending == 23, "leftover files count as pending from the start"
        await wait_for(lambda: successor.published == 23)
        assert spool_files(spool_dir) == []
    finally:
        await successor.stop()
        await link.close()

    records = stored_records(await stored_batches(nats_server.url))
    assert sorted(record["request_id"] for record in records) == [f"req-{index:05d}" for index in range(23)]
    assert len({record["id"] for record in records}) == 23


async def test_a_batch_sent_again_after_a_lost_acknowledgement_is_stored_once(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    # The server stores the batch, but its acknowledgement comes after the recorder stopped waiting.
    recorder = recorder_for(link, spool_dir, batch_size=10, ack_timeout=0.000_001)
    await recorder.start()
    try:
        for index in range(10):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.publish_failures >= 1)
        for _attempt in range(100):
            if await stored_message_count(nats_server.url) == 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the batch whose acknowledgement was missed is not in the stream")
        assert recorder.published == 0, "no acknowledgement was received yet"
        recorder.ack_timeout = 5.0
        await wait_for(lambda: recorder.published == 10)
    finally:
        await recorder.stop()
    batches = await stored_batches(nats_server.url)
    assert len(batches) == 1, "the re-sent batch fell in the stream's duplicate window"
    assert len(batches[0].records) == 10


async def test_a_file_published_but_not_deleted_before_a_crash_is_stored_once(
    nats_server: NatsServer, tmp_path: Path, spool_dir: Path
) -> None:
    link = await connected_link(nats_server)
    recorder = recorder_for(link, spool_dir, flush_interval=60)
    await recorder.start()
    nats_server.stop()
    await wait_for(lambda: not link.is_connected)
    for index in range(10):
        recorder.record(api_call(index))
    await recorder.stop()
    await link.close()
    [spooled] = spool_files(spool_dir)
    kept = shutil.copy(spooled, tmp_path / "kept.json")

    nats_server.start()
    link = await connected_link(nats_server)
    try:
        first = recorder_for(link, spool_dir)
        await first.start()
        await wait_for(lambda: first.published == 10)
        await first.stop()
        shutil.copy(kept, spooled)  # as if the process died between the acknowledgement and the delete
        second = recorder_for(link, spool_dir)
        await second.start()
        await wait_for(lambda: not spooled.exists())
        await second.stop()
    finally:
        await link.close()
    assert second.published == 10
    assert len(await stored_batches(nats_server.url)) == 1


async def test_an_unreadable_spool_file_is_set_aside_without_holding_up_the_others(
    nats_server: NatsServer, link: NatsLink, spool_dir: Path
) -> None:
    # Oldest name, so it is first in line; truncated as by a failing disk.
    broken = write_spool_file(spool_dir, f"{1:020d}-10-{uuid.uuid4()}.json", b'{"specversion": "1.0", "id": "')
    recorder = recorder_for(link, spool_dir)
    await recorder.start()
    try:
        for index in range(10):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.published == 10)
        assert recorder.rejected == 10
        assert recorder.pending == 0
    finally:
        await recorder.stop()
    assert not broken.exists()
    assert (spool_dir / "rejected" / broken.name).read_bytes() == b'{"specversion": "1.0", "id": "'
    assert len(stored_records(await stored_batches(nats_server.url))) == 10


async def test_an_invalid_call_costs_only_its_own_record(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    recorder = recorder_for(link, spool_dir, batch_size=5)
    await recorder.start()
    try:
        recorder.record(api_call(0))
        recorder.record(api_call(1, method="BREW"))
        recorder.record(api_call(2, at=datetime(2025, 3, 1, 8, 30)))  # no time zone
        recorder.record(api_call(3))
        recorder.record(api_call(4))
        await wait_for(lambda: recorder.published == 3)
    finally:
        await recorder.stop()
    assert recorder.rejected == 2
    records = stored_records(await stored_batches(nats_server.url))
    assert [record["request_id"] for record in records] == ["req-00000", "req-00003", "req-00004"]


async def test_a_batch_too_large_for_one_message_is_split(
    link: NatsLink, nats_server: NatsServer, spool_dir: Path
) -> None:
    recorder = recorder_for(link, spool_dir, batch_size=40, max_batch_bytes=4000)
    await recorder.start()
    try:
        for index in range(40):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.published == 40)
    finally:
        await recorder.stop()
    batches = await stored_batches(nats_server.url)
    assert len(batches) > 1
    assert all(batch.size <= 4000 for batch in batches)
    assert sorted(record["request_id"] for record in stored_records(batches)) == [
        f"req-{index:05d}" for index in range(40)
    ]


async def test_a_spooled_batch_larger_than_the_server_accepts_is_set_aside(
    nats_server: NatsServer, link: NatsLink, spool_dir: Path
) -> None:
    # A previous process, configured for larger messages than this server takes, never reached NATS.
    unreachable = NatsLink(nats_server.url, name="never-connected")
    previous = recorder_for(unreachable, spool_dir, batch_size=4000, max_batch_bytes=8 * 1024 * 1024)
    for index in range(4000):
        previous.record(api_call(index, request_id=f"old-{index:05d}"))
    await previous.stop()
    [oversized] = spool_files(spool_dir)
    assert link.client is not None
    assert oversized.stat().st_size > link.client.max_payload

    recorder = recorder_for(link, spool_dir)
    await recorder.start()
    try:
        for index in range(10):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.published == 10)
        await wait_for(lambda: recorder.rejected == 4000)
    finally:
        await recorder.stop()
    assert (spool_dir / "rejected" / oversized.name).exists(), "kept for an operator to replay"
    assert spool_files(spool_dir) == []
    records = stored_records(await stored_batches(nats_server.url))
    assert sorted(record["request_id"] for record in records) == [f"req-{index:05d}" for index in range(10)]


async def test_memory_stays_bounded_when_neither_nats_nor_the_disk_takes_records(
    link: NatsLink, nats_server: NatsServer, tmp_path: Path
) -> None:
    not_a_directory = write_spool_file(tmp_path, "occupied", b"")
    recorder = recorder_for(link, not_a_directory, batch_size=10, memory_limit=10)
    await recorder.start()
    try:
        nats_server.stop()
        await wait_for(lambda: not link.is_connected)
        for index in range(50):
            recorder.record(api_call(index))
        await wait_for(lambda: recorder.dropped == 30)
        assert recorder.held_in_memory == 20, "twice the memory limit, the newest records"
        nats_server.start()
        await wait_for(lambda: recorder.published == 20, timeout=20)
    finally:
        await recorder.stop()
    records = stored_records(await stored_batches(nats_server.url))
    assert sorted(record["request_id"] for record in records) == [f"req-{index:05d}" for index in range(30, 50)]
