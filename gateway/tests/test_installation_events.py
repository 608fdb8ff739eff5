"""With a real nats-server: the app store's installation events decide which schools an app's token reaches.

The events are published the way the app store does it (a kit outbox and relay onto EDU_APPSTORE). The periodic
snapshot refresh is set to an hour, so what the tests see is the refresh the consumer triggers itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contracts.events import EventPayload, StreamSpec
from contracts.events.appstore import InstallationGrantedV1, InstallationRemovedV1
from gateway.installations.models import AppInstallation
from kit.db import Database
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import OutboxEvent, OutboxRelay, emit
from kit.testing import database_with_tables

from .conftest import GatewayFactory, RunningGateway

APP = {"client_id": "app-homework-helper", "app_id": "5b3c1f0e-8a0d-4f7e-9d6b-3a2c1e0f9b77"}
INSTALLATION_ID = "0f6f6f8e-4c1a-4a8e-8d7e-111111111111"


class AppStoreBus:
    """The app store's side of the bus: an outbox in its own database, relayed onto EDU_APPSTORE."""

    def __init__(self, tmp_path: Path, nats_url: str) -> None:
        self.database = database_with_tables(f"sqlite:///{tmp_path / 'appstore-outbox.db'}", OutboxEvent)
        self.nats_url = nats_url

    def publish(self, *payloads: EventPayload) -> None:
        with self.database.session() as session:
            for payload in payloads:
                emit(session, payload, subject_id=INSTALLATION_ID)
        asyncio.run(self._relay())

    async def _relay(self) -> None:
        link = NatsLink(self.nats_url, name="appstore", streams=[StreamSpec("appstore")])
        await link.start()
        try:
            assert await link.wait_connected(timeout=10)
            await link.ensure_streams()
            relay = OutboxRelay(self.database, link, service="appstore")
            while await asyncio.to_thread(relay.backlog) > 0:
                await relay.publish_batch()
        finally:
            await link.close()


@pytest.fixture
def appstore(tmp_path: Path, nats_server: NatsServer) -> AppStoreBus:
    return AppStoreBus(tmp_path, nats_server.url)


def granted(school_id: str, scopes: list[str], at: datetime) -> InstallationGrantedV1:
    return InstallationGrantedV1(
        installation_id=INSTALLATION_ID, app_id=APP["app_id"], client_id=APP["client_id"], school_id=school_id,
        scopes=scopes, version_id=str(uuid.uuid4()), granted_at=at,
    )  # fmt: skip


def removed(school_id: str, at: datetime) -> InstallationRemovedV1:
    return InstallationRemovedV1(
        installation_id=INSTALLATION_ID, app_id=APP["app_id"], client_id=APP["client_id"], school_id=school_id,
        scopes=["roster.read"], version_id=str(uuid.uuid4()), reason="uninstalled", removed_at=at,
        delete_data_by=date(2030, 1, 1),
    )  # fmt: skip


def status_within(gw: RunningGateway, path: str, expected: int, seconds: float = 15.0) -> int:
    headers = gw.bearer(scopes="roster.read", **APP)
    deadline = time.monotonic() + seconds
    status = 0
    while time.monotonic() < deadline:
        status = httpx.get(f"{gw.url}{path}", headers=headers).status_code
        if status == expected:
            break
        time.sleep(0.05)
    return status


def stored(gw: RunningGateway, school_id: str) -> AppInstallation | None:
    database: Database = gw.state.database
    with database.session() as session:
        return session.get(AppInstallation, (APP["client_id"], school_id))


def test_granted_admits_the_app_and_removed_refuses_it_at_once(gateway: GatewayFactory, appstore: AppStoreBus) -> None:
    gw = gateway(installation_refresh_seconds=3600)
    path = "/api/standin/schools/school-a/roster"
    assert status_within(gw, path, 403, seconds=1) == 403

    now = datetime.now(UTC)
    appstore.publish(granted("school-a", ["openid", "roster.read"], now))
    assert status_within(gw, path, 200) == 200
    # Only the school that installed it.
    assert status_within(gw, "/api/standin/schools/school-b/roster", 403, seconds=1) == 403

    appstore.publish(removed("school-a", now + timedelta(seconds=1)))
    assert status_within(gw, path, 403) == 403
    row = stored(gw, "school-a")
    assert row is not None and row.active is False


def test_a_regrant_without_the_scope_refuses_it_and_stale_events_change_nothing(
    gateway: GatewayFactory, appstore: AppStoreBus
) -> None:
    gw = gateway(installation_refresh_seconds=3600)
    path = "/api/standin/schools/school-a/roster"
    start = datetime.now(UTC)
    appstore.publish(granted("school-a", ["openid", "roster.read"], start))
    assert status_within(gw, path, 200) == 200
    appstore.publish(granted("school-a", ["openid"], start + timedelta(seconds=1)))
    assert status_within(gw, path, 403) == 403

    # A redelivered older grant, and a removal older than the current grant, are ignored; a grant at another
    # school published after them tells when they have been handled.
    appstore.publish(
        granted("school-a", ["openid", "roster.read"], start),
        removed("school-a", start + timedelta(milliseconds=500)),
        granted("school-b", ["openid", "roster.read"], start),
    )
    assert status_within(gw, "/api/standin/schools/school-b/roster", 200) == 200
    assert status_within(gw, path, 200, seconds=0.5) == 403
    row = stored(gw, "school-a")
    assert row is not None and row.active is True and row.scopes == "openid"
