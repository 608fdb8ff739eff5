"""Test support for metering: a migrated database, a real nats-server, the app, real tokens, a small city, and
factories that feed the app store's and identity's own event types through metering's own handlers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from contracts.envelope import EventEnvelope
from contracts.events import EventPayload
from contracts.events import appstore as appstore_events
from kit.db import Database
from kit.natsserver import NatsServer
from kit.outbox import build_envelope
from kit.testing import TEST_FETCH_TIMEOUT, TestCity, TestIssuer, build_test_city, running
from metering.config import MeteringSettings
from metering.main import MIGRATIONS, create_app
from metering.projections.handlers import apply_identity_event
from metering.usage.handlers import build_appstore_handler

SCOPES_READ = "metering.read"
SCOPES_FINANCE = "metering.read metering.approve"


@pytest.fixture
def settings(migrated_database: Callable[[Path], str], nats_server: NatsServer) -> MeteringSettings:
    return MeteringSettings(
        environment="test", database_url=migrated_database(MIGRATIONS), nats_url=nats_server.url, log_json=False,
        public_base_url="http://metering.test", consumer_fetch_timeout_seconds=TEST_FETCH_TIMEOUT,
    )  # fmt: skip


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def app(settings: MeteringSettings, issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    async with running(create_app(settings), issuer) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metering.test") as http:
        yield http


def envelope_of(payload: EventPayload) -> EventEnvelope:
    return EventEnvelope.model_validate_json(build_envelope(payload, carrier={}).model_dump_json())


def feed(database: Database, *payloads: EventPayload) -> None:
    """Apply identity events to metering's projections through the service's own handler."""
    for payload in payloads:
        with database.session() as session:
            apply_identity_event(session, envelope_of(payload))


def feed_appstore(database: Database, settings: MeteringSettings, *payloads: EventPayload) -> None:
    """Apply app store events (plans, installations, launches) through metering's own consumer handler."""
    handler = build_appstore_handler(settings)
    with database.session() as session:
        handler(session, [envelope_of(payload) for payload in payloads])


def build_city(database: Database, issuer: TestIssuer) -> TestCity:
    """The test city, plus developers of two vendors (role vendor_developer at the city)."""
    city = build_test_city(database, issuer, feed=feed, default_scopes=SCOPES_READ)
    city.add_person("developer", kind="staff", name="开发者张工", org_id=city.city_id, role="vendor_developer")
    city.add_person("other_developer", kind="staff", name="别家开发者", org_id=city.city_id, role="vendor_developer")
    return city


@pytest.fixture
def city(app: FastAPI, issuer: TestIssuer) -> TestCity:
    return build_city(app.state.database, issuer)


@dataclass
class MeteredTestApp:
    app_id: str
    vendor_id: str
    client_id: str


def add_vendor(database: Database, settings: MeteringSettings, *, name: str = "星火教育科技有限公司",
               developer_id: str | None = None) -> str:  # fmt: skip
    """A vendor (and optionally its developer), as the app store announces them; returns its id."""
    vendor_id = str(uuid.uuid4())
    payloads: list[EventPayload] = [
        appstore_events.VendorRegisteredV1(
            vendor_id=vendor_id, name=name, unified_social_credit_code="91350100MA2XN8KQ1B"
        )
    ]
    if developer_id is not None:
        payloads.append(appstore_events.VendorMemberAddedV1(vendor_id=vendor_id, person_id=developer_id, role="owner"))
    feed_appstore(database, settings, *payloads)
    return vendor_id


def publish_plan(
    database: Database, settings: MeteringSettings, *, app_id: str, vendor_id: str, unit: str, price_fen: int,
    effective_at: datetime, cap_fen: int | None = None, name: str = "课后作业小助手", client_id: str | None = None,
    reported_unit_name: str | None = None,
) -> None:  # fmt: skip
    """An app version published with a pricing plan that applies from ``effective_at``."""
    feed_appstore(
        database, settings,
        appstore_events.AppPublishedV1(
            app_id=app_id, vendor_id=vendor_id, version_id=str(uuid.uuid4()), app_version="1.0.0",
            client_id=client_id or f"{app_id}-client", scopes=["openid"], pricing_unit=unit,
            unit_price_fen=price_fen, monthly_cap_fen_per_school=cap_fen, effective_at=effective_at, app_name=name,
            reported_unit_name=reported_unit_name or ("一份批改的作业" if unit == "reported_unit" else None),
        ),
    )  # fmt: skip


def add_app(
    database: Database, settings: MeteringSettings, *, vendor_id: str, unit: str = "launch", price_fen: int = 10,
    cap_fen: int | None = None, effective_at: datetime | None = None, name: str = "课后作业小助手",
) -> MeteredTestApp:  # fmt: skip
    app_id = str(uuid.uuid4())
    publish_plan(
        database, settings, app_id=app_id, vendor_id=vendor_id, unit=unit, price_fen=price_fen, cap_fen=cap_fen,
        effective_at=effective_at or datetime(2020, 1, 1, tzinfo=UTC), name=name,
    )  # fmt: skip
    return MeteredTestApp(app_id=app_id, vendor_id=vendor_id, client_id=f"{app_id}-client")


def install(
    database: Database, settings: MeteringSettings, *, app_id: str, school_id: str, granted_at: datetime,
    installation_id: str | None = None,
) -> str:  # fmt: skip
    installation_id = installation_id or str(uuid.uuid4())
    feed_appstore(
        database, settings,
        appstore_events.InstallationGrantedV1(
            installation_id=installation_id, app_id=app_id, client_id=f"{app_id}-client", school_id=school_id,
            scopes=["openid"], version_id=str(uuid.uuid4()), granted_at=granted_at,
        ),
    )  # fmt: skip
    return installation_id


def uninstall(
    database: Database, settings: MeteringSettings, *, installation_id: str, app_id: str, school_id: str,
    removed_at: datetime,
) -> None:  # fmt: skip
    feed_appstore(
        database, settings,
        appstore_events.InstallationRemovedV1(
            installation_id=installation_id, app_id=app_id, client_id=f"{app_id}-client", school_id=school_id,
            scopes=["openid"], version_id=str(uuid.uuid4()), reason="uninstalled", removed_at=removed_at,
            delete_data_by=removed_at.date(),
        ),
    )  # fmt: skip


def launched(
    *, app_id: str, vendor_id: str, school_id: str, at: datetime, user: str | None = None, role: str = "student",
    launch_id: str | None = None, installation_id: str = "inst",
) -> appstore_events.AppLaunchedV1:  # fmt: skip
    """The app store's launch event (feed it with ``feed_appstore``)."""
    return appstore_events.AppLaunchedV1(
        launch_id=launch_id or str(uuid.uuid4()), app_id=app_id, vendor_id=vendor_id, installation_id=installation_id,
        school_id=school_id, user_pseudonym=user or str(uuid.uuid4()), role=role, kind="lti_1p3", launched_at=at,
    )  # fmt: skip
