"""The outbox publishes every committed event exactly once, even across a NATS outage."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from sqlmodel import Field, SQLModel, select

from contracts.events import StreamSpec
from contracts.events.identity import OrganisationCreatedV1
from kit.db import Database
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import OutboxEvent, OutboxRelay, PendingEvent, emit, emit_many
from kit.testing import database_with_tables


class Note(SQLModel, table=True):
    __tablename__ = "kit_test_note"
    id: int | None = Field(default=None, primary_key=True)
    text: str


def make_database(url: str) -> Database:
    return database_with_tables(url, OutboxEvent, Note)


def write_change(database: Database, index: int) -> str:
    with database.session() as session:
        session.add(Note(text=f"note {index}"))
        envelope = emit(
            session,
            OrganisationCreatedV1(
                org_id=f"org-{index}", parent_id=None, kind="city", name=f"市{index}", path=f"/org-{index}"
            ),
            subject_id=f"org-{index}",
            org_id=f"org-{index}",
        )
    return envelope.id


async def stream_events(url: str) -> list[dict]:
    client = await nats.connect(url)
    try:
        jetstream = client.jetstream()
        info = await jetstream.stream_info("EDU_IDENTITY")
        count = info.state.messages
        if count == 0:
            return []
        subscription = await jetstream.pull_subscribe(
            "edu.identity.>", durable=None, config=None, stream="EDU_IDENTITY"
        )
        messages = await subscription.fetch(count, timeout=5)
        return [json.loads(message.data) for message in messages]
    finally:
        await client.close()


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_event_is_published_once_even_when_nats_is_down_during_the_write(
    database_url: str, nats_server: NatsServer
) -> None:
    database = make_database(database_url)
    link = NatsLink(nats_server.url, name="test", streams=[StreamSpec("identity")])
    await link.start()
    assert await link.wait_connected(10)
    relay = OutboxRelay(database, link, service="identity", idle_poll_seconds=0.2, max_backoff_seconds=0.5)
    await relay.start()
    try:
        first = write_change(database, 1)

        async def first_published() -> bool:
            return relay.backlog() == 0

        await wait_for(first_published)
        nats_server.stop()
        written_while_down = [write_change(database, index) for index in range(2, 7)]
        await asyncio.sleep(1.0)
        assert relay.backlog() == 5, "events must wait in the outbox while NATS is away"
        nats_server.start()
        await wait_for(first_published, timeout=30)
    finally:
        await relay.stop()
        await link.close()

    events = await stream_events(nats_server.url)
    ids = [event["id"] for event in events]
    assert sorted(ids) == sorted([first, *written_while_down])
    assert len(ids) == len(set(ids))
    assert {event["type"] for event in events} == {"edu.identity.organisation.created.v1"}


async def test_a_rolled_back_change_publishes_nothing(database_url: str, nats_server: NatsServer) -> None:
    database = make_database(database_url)
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(Note(text="lost"))
        emit(session, OrganisationCreatedV1(org_id="x", parent_id=None, kind="city", name="市", path="/x"))
        raise RuntimeError("the change failed")
    with database.session() as session:
        assert session.exec(select(OutboxEvent)).all() == []


async def test_republishing_after_a_crash_before_marking_is_deduplicated(
    database_url: str, nats_server: NatsServer
) -> None:
    """A relay that published but died before marking rows re-sends them; JetStream keeps one copy."""
    database = make_database(database_url)
    event_ids = [write_change(database, index) for index in range(3)]
    link = NatsLink(nats_server.url, name="test", streams=[StreamSpec("identity")])
    await link.start()
    assert await link.wait_connected(10)
    relay = OutboxRelay(database, link, service="identity")
    pending = relay._claim()
    await relay._publish(pending)  # published, then "crashed" before _mark_published
    assert await relay.publish_batch() == 3  # the restarted relay sends all three again
    await link.close()
    events = await stream_events(nats_server.url)
    assert sorted(event["id"] for event in events) == sorted(event_ids)


async def test_bulk_events_are_stored_and_published_like_single_ones(
    database_url: str, nats_server: NatsServer
) -> None:
    database = make_database(database_url)
    payloads = [
        PendingEvent(
            OrganisationCreatedV1(org_id=f"o{i}", parent_id=None, kind="city", name=f"市{i}", path=f"/o{i}"),
            subject_id=f"o{i}",
            org_id=f"o{i}",
        )
        for i in range(250)
    ]
    with database.session() as session:
        session.add(Note(text="bulk"))
        assert emit_many(session, payloads) == 250
    link = NatsLink(nats_server.url, name="test", streams=[StreamSpec("identity")])
    await link.start()
    assert await link.wait_connected(10)
    relay = OutboxRelay(database, link, service="identity", batch_size=100)
    published = [await relay.publish_batch() for _ in range(4)]
    await link.close()
    assert published == [100, 100, 50, 0]
    events = await stream_events(nats_server.url)
    assert sorted(event["subject"] for event in events) == sorted(f"o{i}" for i in range(250))
    assert all(event["orgid"] == event["subject"] for event in events)
