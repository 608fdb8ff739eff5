"""Consumers apply each event once, dead-letter poison, and recover after a NATS restart."""

from __future__ import annotations

import asyncio
import json
import logging

import nats
import pytest
from sqlmodel import Field, Session, SQLModel, select

from contracts.envelope import EventEnvelope
from contracts.events import StreamSpec
from contracts.events.identity import PersonCreatedV1
from kit.db import Database
from kit.inbox import EventConsumer, ProcessedEvent
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import build_envelope
from kit.testing import database_with_tables


class SeenPerson(SQLModel, table=True):
    """A consumer-side projection whose rows count how often an event took effect."""

    __tablename__ = "kit_test_seen_person"
    id: int | None = Field(default=None, primary_key=True)
    person_id: str
    name: str


def make_database(url: str) -> Database:
    return database_with_tables(url, ProcessedEvent, SeenPerson)


def person_event(person_id: str, name: str) -> EventEnvelope:
    return build_envelope(PersonCreatedV1(person_id=person_id, kind="student", name=name), subject_id=person_id)


async def publish(url: str, envelope: EventEnvelope | bytes, subject: str = "edu.identity.person.created") -> None:
    client = await nats.connect(url)
    try:
        data = envelope if isinstance(envelope, bytes) else envelope.to_json_bytes()
        # No Nats-Msg-Id on purpose: the broker must not be what prevents the second effect.
        await client.jetstream().publish(subject, data)
    finally:
        await client.close()


def project(session: Session, envelope: EventEnvelope) -> None:
    session.add(SeenPerson(person_id=envelope.data["person_id"], name=envelope.data["name"]))


async def eventually(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def seen(database: Database) -> list[SeenPerson]:
    with database.session() as session:
        return list(session.exec(select(SeenPerson)).all())


async def start(database: Database, url: str, handler=project, max_attempts: int = 3):  # type: ignore[no-untyped-def]
    link = NatsLink(url, name="test-consumer", streams=[StreamSpec("identity")])
    await link.start()
    assert await link.wait_connected(10)
    consumer = EventConsumer(
        service="enrollment", name="enrollment-people", stream="EDU_IDENTITY",
        subjects=["edu.identity.person.>"], handler=handler, database=database, link=link,
        max_attempts=max_attempts, fetch_timeout=0.3,
    )  # fmt: skip
    await consumer.start()
    return link, consumer


async def test_the_same_event_delivered_twice_applies_once(database_url: str, nats_server: NatsServer) -> None:
    database = make_database(database_url)
    link, consumer = await start(database, nats_server.url)
    try:
        event = person_event("p-1", "王雨桐")
        await publish(nats_server.url, event)
        await publish(nats_server.url, event)  # a producer re-send outside the duplicate window
        await publish(nats_server.url, person_event("p-2", "李子轩"))
        await eventually(lambda: len(seen(database)) >= 2)
        await asyncio.sleep(1.0)  # give the duplicate every chance to be applied
    finally:
        await consumer.stop()
        await link.close()
    assert sorted(row.person_id for row in seen(database)) == ["p-1", "p-2"]


async def test_a_consumer_started_before_its_stream_says_so_once_then_consumes(
    database_url: str, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    database = make_database(database_url)
    listener = NatsLink(nats_server.url, name="enrollment")  # declares no stream: identity has not started yet
    await listener.start()
    assert await listener.wait_connected(10)
    consumer = EventConsumer(
        service="enrollment", name="enrollment-people", stream="EDU_IDENTITY", subjects=["edu.identity.person.>"],
        handler=project, database=database, link=listener, max_attempts=3, fetch_timeout=0.3,
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="kit.inbox")
    await consumer.start()
    try:
        await asyncio.sleep(1.6)  # several retries while the stream is missing
        identity = NatsLink(nats_server.url, name="identity", streams=[StreamSpec("identity")])
        await identity.start()
        assert await identity.wait_connected(10)
        await identity.close()
        await publish(nats_server.url, person_event("p-1", "王雨桐"))
        await eventually(lambda: len(seen(database)) == 1)
    finally:
        await consumer.stop()
        await listener.close()
    messages = [record.getMessage() for record in caplog.records if record.name == "kit.inbox"]
    assert [message for message in messages if "does not exist yet" in message] == [
        "consumer enrollment-people: stream EDU_IDENTITY does not exist yet; waiting for its publisher"
    ]
    assert "consumer enrollment-people: stream EDU_IDENTITY exists now; consuming" in messages
    assert not [record for record in caplog.records if record.name == "kit.inbox" and record.levelno >= logging.WARNING]


async def test_poison_event_lands_in_dead_letter_subject(database_url: str, nats_server: NatsServer) -> None:
    database = make_database(database_url)

    def failing(session: Session, envelope: EventEnvelope) -> None:
        if envelope.data["name"] == "坏数据":
            raise ValueError("name rejected by the projection")
        project(session, envelope)

    client = await nats.connect(nats_server.url)
    link, consumer = await start(database, nats_server.url, handler=failing, max_attempts=2)
    try:
        dead = await client.subscribe("deadletter.>")
        await publish(nats_server.url, person_event("p-bad", "坏数据"))
        await publish(nats_server.url, b"this is not a cloudevent")
        await publish(nats_server.url, person_event("p-good", "张欣怡"))
        letters = [await dead.next_msg(timeout=15), await dead.next_msg(timeout=15)]
        await eventually(lambda: len(seen(database)) == 1)
    finally:
        await consumer.stop()
        await link.close()
        await client.close()
    by_subject = {letter.headers["Edu-Error"][:20]: letter for letter in letters}  # type: ignore[index]
    assert len(by_subject) == 2
    errors = sorted(letter.headers["Edu-Error"] for letter in letters)  # type: ignore[index]
    assert any("name rejected by the projection" in error for error in errors)
    assert any("not a valid CloudEvents envelope" in error for error in errors)
    for letter in letters:
        assert letter.subject == "deadletter.enrollment.enrollment-people"
        assert letter.headers["Edu-Original-Subject"] == "edu.identity.person.created"  # type: ignore[index]
    poisoned = next(letter for letter in letters if "rejected" in letter.headers["Edu-Error"])  # type: ignore[index]
    assert json.loads(poisoned.data)["data"]["person_id"] == "p-bad"
    assert poisoned.headers["Edu-Attempts"] == "2"  # type: ignore[index]
    assert [row.person_id for row in seen(database)] == ["p-good"]


async def test_consumer_recovers_after_nats_restart(database_url: str, nats_server: NatsServer) -> None:
    database = make_database(database_url)
    link, consumer = await start(database, nats_server.url)
    try:
        await publish(nats_server.url, person_event("p-1", "王雨桐"))
        await eventually(lambda: len(seen(database)) == 1)
        nats_server.stop()
        await asyncio.sleep(1.0)
        nats_server.start()
        await publish(nats_server.url, person_event("p-2", "李子轩"))
        await eventually(lambda: len(seen(database)) == 2, timeout=30)
    finally:
        await consumer.stop()
        await link.close()
    assert sorted(row.person_id for row in seen(database)) == ["p-1", "p-2"]


async def test_trace_context_travels_from_the_writing_request_to_the_consumer(
    database_url: str, nats_server: NatsServer
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kit.outbox import OutboxEvent, OutboxRelay, emit
    from kit.settings import ServiceSettings
    from kit.telemetry import configure_tracing

    provider = configure_tracing(ServiceSettings(service_name="kit-test"))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    database = make_database(database_url)
    SQLModel.metadata.create_all(database.engine, tables=[OutboxEvent.__table__])  # type: ignore[attr-defined]
    seen_traceparents: list[str | None] = []

    def remember(session: Session, envelope: EventEnvelope) -> None:
        seen_traceparents.append(envelope.traceparent)
        project(session, envelope)

    link, consumer = await start(database, nats_server.url, handler=remember)
    relay = OutboxRelay(database, link, service="identity", idle_poll_seconds=0.2)
    await relay.start()
    try:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("POST /people") as request_span, database.session() as session:
            emit(session, PersonCreatedV1(person_id="p-t", kind="student", name="周佳怡"), subject_id="p-t")
        trace_id = format(request_span.get_span_context().trace_id, "032x")
        await eventually(lambda: len(seen(database)) == 1)
    finally:
        await relay.stop()
        await consumer.stop()
        await link.close()
    assert seen_traceparents[0] is not None and trace_id in seen_traceparents[0]
    consumer_spans = [span for span in exporter.get_finished_spans() if span.name.startswith("consume ")]
    assert consumer_spans, "the consumer must record a span"
    assert format(consumer_spans[0].context.trace_id, "032x") == trace_id


# ------------------------------------------------------------------------------------------------ batches


async def _publish_all(url: str, payloads: list[bytes]) -> None:
    client = await nats.connect(url)
    try:
        stream = client.jetstream()
        for data in payloads:
            await stream.publish("edu.identity.person.created", data)  # no Nats-Msg-Id: duplicates reach us
    finally:
        await client.close()


async def _start(database: Database, url: str, batch_handler, calls: list[int], deduplicated_by_handler=frozenset()):  # type: ignore[no-untyped-def]
    link = NatsLink(url, name="test-batch-consumer", streams=[StreamSpec("identity")])
    await link.start()
    assert await link.wait_connected(10)

    def counting(session: Session, envelopes: list[EventEnvelope]) -> None:
        calls.append(len(envelopes))
        batch_handler(session, envelopes)

    consumer = EventConsumer(
        service="metering", name="metering-people", stream="EDU_IDENTITY", subjects=["edu.identity.person.>"],
        batch_handler=counting, database=database, link=link, max_attempts=2, fetch_timeout=0.3, batch_size=50,
        deduplicated_by_handler=deduplicated_by_handler,
    )  # fmt: skip
    return link, consumer


def _apply_each(session: Session, envelopes: list[EventEnvelope]) -> None:
    for envelope in envelopes:
        project(session, envelope)


async def test_a_batch_is_applied_together_and_repeats_count_once(database_url: str, nats_server: NatsServer) -> None:
    database = make_database(database_url)
    events = [person_event(f"p-{index}", f"学生{index}") for index in range(40)]
    payloads = [event.to_json_bytes() for event in events] + [events[3].to_json_bytes(), events[7].to_json_bytes()]
    calls: list[int] = []
    link, consumer = await _start(database, nats_server.url, _apply_each, calls)
    await _publish_all(nats_server.url, payloads)
    await consumer.start()
    try:
        await eventually(lambda: len(seen(database)) >= 40)
        await asyncio.sleep(0.8)
    finally:
        await consumer.stop()
        await link.close()
    assert sorted(row.person_id for row in seen(database)) == sorted(f"p-{index}" for index in range(40))
    assert max(calls) > 1  # more than one event per transaction


async def test_events_the_handler_deduplicates_itself_leave_no_processed_ids(
    database_url: str, nats_server: NatsServer
) -> None:
    """A handler with a unique key of its own (metering's usage ledger) gets repeats and ignores them; the consumer
    keeps no processed-id row for those event types."""
    database = make_database(database_url)

    def once_per_person(session: Session, envelopes: list[EventEnvelope]) -> None:
        known = set(session.exec(select(SeenPerson.person_id)))
        for envelope in envelopes:
            if envelope.data["person_id"] not in known:
                known.add(envelope.data["person_id"])
                project(session, envelope)

    events = [person_event(f"p-{index}", f"学生{index}") for index in range(20)]
    again = [build_envelope(PersonCreatedV1(person_id="p-4", kind="student", name="学生4"), subject_id="p-4")]
    payloads = [event.to_json_bytes() for event in events] + [events[4].to_json_bytes(), again[0].to_json_bytes()]
    calls: list[int] = []
    link, consumer = await _start(
        database, nats_server.url, once_per_person, calls, frozenset({PersonCreatedV1.event_type()})
    )
    await _publish_all(nats_server.url, payloads)
    await consumer.start()
    try:
        await eventually(lambda: sum(calls) >= 21)
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await link.close()
    assert sorted(row.person_id for row in seen(database)) == sorted(f"p-{index}" for index in range(20))
    assert sum(calls) >= 21  # the new envelope of p-4 reached the handler: only the handler's own key stopped it
    with database.session() as session:
        assert session.exec(select(ProcessedEvent)).all() == []


async def test_one_bad_event_in_a_batch_does_not_hold_back_the_others(
    database_url: str, nats_server: NatsServer
) -> None:
    database = make_database(database_url)

    def refusing(session: Session, envelopes: list[EventEnvelope]) -> None:
        for envelope in envelopes:
            if envelope.data["name"] == "坏数据":
                raise ValueError("name rejected by the projection")
            project(session, envelope)

    good = [person_event(f"p-{index}", f"学生{index}") for index in range(10)]
    payloads = [event.to_json_bytes() for event in good[:5]]
    payloads += [person_event("p-bad", "坏数据").to_json_bytes(), b"not a cloudevent"]
    payloads += [event.to_json_bytes() for event in good[5:]]
    calls: list[int] = []
    client = await nats.connect(nats_server.url)
    dead = await client.subscribe("deadletter.>")
    link, consumer = await _start(database, nats_server.url, refusing, calls)
    await _publish_all(nats_server.url, payloads)
    await consumer.start()
    try:
        letters = [await dead.next_msg(timeout=15), await dead.next_msg(timeout=15)]
        await eventually(lambda: len(seen(database)) == 10)
    finally:
        await consumer.stop()
        await link.close()
        await client.close()
    assert sorted(row.person_id for row in seen(database)) == sorted(f"p-{index}" for index in range(10))
    assert {letter.subject for letter in letters} == {"deadletter.metering.metering-people"}
