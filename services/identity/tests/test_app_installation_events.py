"""With a real nats-server: the app store's installation and app-status events end an app's tokens at identity.

The app store's events are published the way the app store does it, through a kit outbox and relay onto
EDU_APPSTORE; identity's consumer revokes the tokens, and announces the revocations to the gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from contracts.events import EventPayload, StreamSpec
from contracts.events.appstore import AppStatusChangedV1, InstallationRemovedV1
from contracts.events.identity import AccessTokensRevokedV1
from identity.config import IdentitySettings
from identity.oauth import tokens
from identity.oauth.models import IssuedAccessToken, OAuthClient, RefreshToken
from identity.people.models import Person
from identity.testing import Directory, register_client
from kit.db import Database
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import OutboxEvent, OutboxRelay, emit
from kit.testing import database_with_tables

APP_ID = "8d0e6c7a-1d7e-4c55-9f5e-2f7d3c1b9a01"


@dataclass
class AppStoreOutbox:
    """The app store's side of the bus: an outbox and its relay onto EDU_APPSTORE."""

    database: Database
    relay: OutboxRelay

    async def publish(self, payload: EventPayload) -> None:
        with self.database.session() as session:
            emit(session, payload)
        while await asyncio.to_thread(self.relay.backlog) > 0:
            await self.relay.publish_batch()


@pytest.fixture
async def appstore(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[AppStoreOutbox]:
    database = database_with_tables(f"sqlite:///{tmp_path / 'appstore-outbox.db'}", OutboxEvent)
    link = NatsLink(nats_server.url, name="appstore", streams=[StreamSpec("appstore")])
    await link.start()
    assert await link.wait_connected(timeout=10)
    await link.ensure_streams()
    try:
        yield AppStoreOutbox(database, OutboxRelay(database, link, service="appstore"))
    finally:
        await link.close()
        database.dispose()


@dataclass
class Issued:
    jti: str
    refresh_hash: str


def issue(app: FastAPI, settings: IdentitySettings, client_id: str, person: Person) -> Issued:
    """An access token and a refresh token of the app's client for ``person``, as the code flow leaves them."""
    database: Database = app.state.database
    grant_id = str(uuid.uuid4())
    with database.session() as session:
        client = session.get(OAuthClient, client_id)
        assert client is not None
        access = tokens.issue_access_token(
            session, settings, client=client, subject=f"pairwise-{person.id[:8]}", person_id=person.id,
            scope="openid roster.read", grant_id=grant_id,
        )  # fmt: skip
        refresh = tokens.new_refresh_token(
            session, settings, client_id=client_id, person_id=person.id, scope="openid roster.read",
            grant_id=grant_id, auth_time=int(datetime.now(UTC).timestamp()), amr=["pwd"],
        )  # fmt: skip
    return Issued(jti=access.jti, refresh_hash=tokens.digest(refresh))


def revoked(app: FastAPI, issued: Issued) -> tuple[bool, bool]:
    database: Database = app.state.database
    with database.session() as session:
        access = session.get(IssuedAccessToken, issued.jti)
        refresh = session.get(RefreshToken, issued.refresh_hash)
        assert access is not None and refresh is not None
        return access.revoked_at is not None, refresh.revoked_at is not None


async def eventually(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        # The consumer works in its own task and thread: the database is the only signal there is.
        while not await asyncio.to_thread(condition):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def announced_jtis(app: FastAPI) -> list[str]:
    """The jtis identity announced as revoked (its outbox, which its relay publishes to the gateway)."""
    database: Database = app.state.database
    with database.session() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == AccessTokensRevokedV1.event_type())
        ).all()
    jtis: list[str] = []
    for row in rows:
        jtis.extend(AccessTokensRevokedV1.model_validate_json(_data(row.envelope)).jtis)
    return jtis


def _data(envelope: str) -> str:
    import json

    return json.dumps(json.loads(envelope)["data"])


def vendor_client(app: FastAPI) -> str:
    return register_client(
        app, client_name="作业小助手", grant_types=["authorization_code", "refresh_token", "client_credentials"],
        redirect_uris=["https://vendor.example.cn/callback"], scope="openid roster.read",
        sector_identifier=f"urn:edu-platform:app:{APP_ID}", app_id=APP_ID,
    ).client_id  # fmt: skip


def removed(directory: Directory, client_id: str) -> InstallationRemovedV1:
    now = datetime.now(UTC)
    return InstallationRemovedV1(
        installation_id=str(uuid.uuid4()), app_id=APP_ID, client_id=client_id, school_id=directory.school_a.id,
        scopes=["openid", "roster.read"], version_id=str(uuid.uuid4()), reason="uninstalled", removed_at=now,
        delete_data_by=date(2030, 1, 1),
    )  # fmt: skip


async def test_uninstalling_revokes_the_apps_tokens_of_that_schools_people_only(
    app: FastAPI, settings: IdentitySettings, directory: Directory, appstore: AppStoreOutbox
) -> None:
    client_id = vendor_client(app)
    teacher = issue(app, settings, client_id, directory.teacher_a)
    admin_a = issue(app, settings, client_id, directory.school_admin_a)
    admin_b = issue(app, settings, client_id, directory.school_admin_b)
    district = issue(app, settings, client_id, directory.district_admin_a)

    event = removed(directory, client_id)
    await appstore.publish(event)
    await eventually(lambda: revoked(app, teacher) == (True, True) and revoked(app, admin_a) == (True, True))
    assert revoked(app, admin_b) == (False, False)
    assert revoked(app, district) == (False, False)
    assert {teacher.jti, admin_a.jti} <= set(announced_jtis(app))
    assert admin_b.jti not in announced_jtis(app)

    # The same facts again (a replay from the app store, under a new event id) revoke nothing more.
    before = len(announced_jtis(app))
    await appstore.publish(event.model_copy())
    marker = removed(directory, client_id).model_copy(update={"school_id": directory.school_b.id})
    await appstore.publish(marker)
    await eventually(lambda: revoked(app, admin_b) == (True, True))
    assert len(announced_jtis(app)) == before + 1


async def test_suspension_revokes_every_token_and_retirement_disables_the_client(
    app: FastAPI, settings: IdentitySettings, directory: Directory, appstore: AppStoreOutbox
) -> None:
    client_id = vendor_client(app)
    first = [issue(app, settings, client_id, person) for person in (directory.teacher_a, directory.school_admin_b)]

    def status(value: Literal["listed", "suspended", "retired"]) -> AppStatusChangedV1:
        return AppStatusChangedV1(
            app_id=APP_ID, vendor_id=str(uuid.uuid4()), client_id=client_id, status=value,
            reason="审核发现违规收集个人信息", effective_at=datetime.now(UTC),
        )  # fmt: skip

    await appstore.publish(status("suspended"))
    await eventually(lambda: all(revoked(app, issued) == (True, True) for issued in first))

    def client_active() -> bool:
        database: Database = app.state.database
        with database.session() as session:
            row = session.get(OAuthClient, client_id)
            assert row is not None
            return row.active

    assert client_active()
    await appstore.publish(status("listed"))  # reinstated: nothing to revoke
    later = issue(app, settings, client_id, directory.teacher_a)
    # Without a client id in the event, identity finds the app's client by app id.
    retired = status("retired").model_copy(update={"client_id": None})
    await appstore.publish(retired)
    await eventually(lambda: revoked(app, later) == (True, True) and not client_active())

    database: Database = app.state.database
    with database.session() as session:
        live = session.exec(
            select(IssuedAccessToken).where(
                IssuedAccessToken.client_id == client_id, col(IssuedAccessToken.revoked_at).is_(None)
            )
        ).all()
    assert live == []
