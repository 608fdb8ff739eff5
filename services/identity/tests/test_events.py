"""End to end with a real nats-server: API changes arrive on EDU_IDENTITY as CloudEvents, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar

import httpx
import nats
import sqlalchemy as sa
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI
from nats.aio.msg import Msg
from sqlmodel import select

from identity.testing import Directory, TokenFactory, all_published, bearer, resident_id
from kit.natsserver import NatsServer
from kit.outbox import OutboxEvent

STREAM = "EDU_IDENTITY"
GIRL_ID = resident_id(date(2016, 3, 5), 124)
BOY_ID = resident_id(date(2015, 11, 20), 137)
T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Fail instead of hanging when something blocks."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def stream_messages(url: str) -> list[Msg]:
    """Everything on the stream, read through an ephemeral pull consumer."""
    client = await nats.connect(url)
    try:
        jetstream = client.jetstream()
        stored = (await jetstream.stream_info(STREAM)).state.messages
        subscription = await jetstream.pull_subscribe("edu.identity.>", stream=STREAM)
        messages: list[Msg] = []
        while len(messages) < stored:
            messages.extend(await subscription.fetch(stored - len(messages), timeout=5))
        return messages
    finally:
        await client.close()


def outbox_size(directory: Directory) -> int:
    with directory.database.session() as session:
        return int(session.exec(select(sa.func.count()).select_from(OutboxEvent)).one())


async def create_student(client: httpx.AsyncClient, token: str, org_id: str, name: str, rid: str) -> dict[str, Any]:
    response = await client.post(
        "/people",
        json={"kind": "student", "name": name, "org_id": org_id, "resident_id_number": rid,
              "student_number": "G" + rid},
        headers=bearer(token),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    person: dict[str, Any] = response.json()
    return person


async def test_api_changes_arrive_as_cloudevents(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory, nats_server: NatsServer
) -> None:
    district = await client.post(
        "/organisations", json={"kind": "district", "name": "集美区", "parent_id": directory.city.id},
        headers=bearer(token_for(directory.city_admin)),
    )  # fmt: skip
    assert district.status_code == 201
    person = await create_student(client, token_for(directory.school_admin_a), directory.school_a.id, "王雨桐", GIRL_ID)
    await all_published(app)

    messages = await stream_messages(nats_server.url)
    assert len(messages) == outbox_size(directory)
    sdk = JSONFormat()
    by_type: dict[str, list[tuple[Msg, dict[str, Any]]]] = {}
    for message in messages:
        envelope = json.loads(message.data)
        event = sdk.read(None, message.data)  # a conforming CloudEvent
        assert event.get_specversion() == "1.0"
        assert message.headers is not None
        assert message.headers["Nats-Msg-Id"] == envelope["id"] == event.get_id()
        assert message.headers["Content-Type"] == "application/cloudevents+json"
        assert message.subject.startswith("edu.identity.")
        assert event.get_extension("orgid"), envelope
        by_type.setdefault(envelope["type"], []).append((message, envelope))

    [(_, created_org)] = [
        item for item in by_type["edu.identity.organisation.created.v1"] if item[1]["subject"] == district.json()["id"]
    ]
    assert created_org["orgid"] == district.json()["id"]
    assert created_org["data"]["name"] == "集美区"

    [(message, created)] = [
        item for item in by_type["edu.identity.person.created.v1"] if item[1]["subject"] == person["id"]
    ]
    assert created["source"] == "/edu/identity"
    assert created["orgid"] == directory.school_a.id
    assert created["data"]["person_id"] == person["id"]
    assert created["data"]["kind"] == "student"
    assert "birth_date" not in created["data"]
    # Neither the resident ID number nor the birth date travel on the bus, in any form.
    for _message, envelope in (item for items in by_type.values() for item in items):
        raw = json.dumps(envelope, ensure_ascii=False)
        assert GIRL_ID not in raw
        assert "20160305" not in raw and "2016-03-05" not in raw
    granted = by_type["edu.identity.role.granted.v1"]
    assert [envelope["data"]["role"] for _, envelope in granted if envelope["subject"] == person["id"]] == ["student"]


async def test_events_wait_out_a_nats_outage_and_arrive_once(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory, nats_server: NatsServer
) -> None:
    token = token_for(directory.school_admin_a)
    await all_published(app)
    nats_server.stop()
    try:
        # The API does not need NATS: the change and its events commit together.
        person = await within(10, create_student(client, token, directory.school_a.id, "李子轩", BOY_ID))
        read = await within(10, client.get(f"/people/{person['id']}", headers=bearer(token)))
        assert read.status_code == 200
        await asyncio.sleep(0.5)
        relay = app.state.runtime.relay
        assert await asyncio.to_thread(relay.backlog) == 2  # person created, student role granted
    finally:
        nats_server.start()
    await all_published(app, timeout=5)

    messages = await stream_messages(nats_server.url)
    ids = [message.headers["Nats-Msg-Id"] for message in messages if message.headers]
    assert len(ids) == len(messages) == outbox_size(directory)
    assert [event_id for event_id, seen in Counter(ids).items() if seen > 1] == []
    about_person = [
        json.loads(message.data) for message in messages if json.loads(message.data)["subject"] == person["id"]
    ]
    assert sorted(envelope["type"] for envelope in about_person) == [
        "edu.identity.person.created.v1", "edu.identity.role.granted.v1"
    ]  # fmt: skip
