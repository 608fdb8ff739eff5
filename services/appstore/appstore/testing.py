"""Test support for the app store: a migrated database, a real nats-server, the app, real tokens, and a small
city (with vendor developers) fed into the roster projection through identity's own event types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from appstore.config import AppStoreSettings
from appstore.main import MIGRATIONS, create_app
from appstore.roster.handlers import apply_roster_event
from contracts.envelope import EventEnvelope
from contracts.events import EventPayload
from kit.db import Database
from kit.natsserver import NatsServer
from kit.outbox import build_envelope
from kit.testing import TEST_FETCH_TIMEOUT, TestCity, TestIssuer, build_test_city, running

SCOPES_SCHOOL_ADMIN = "apps.read apps.install"
SCOPES_DEVELOPER = "apps.develop"
SCOPES_REVIEWER = "apps.review apps.read"
SCOPES_ALL = "apps.read apps.install apps.develop apps.review"


@pytest.fixture
def settings(migrated_database: Callable[[Path], str], nats_server: NatsServer) -> AppStoreSettings:
    settings = AppStoreSettings(
        environment="test",
        database_url=migrated_database(MIGRATIONS),
        consumer_fetch_timeout_seconds=TEST_FETCH_TIMEOUT,
        nats_url=nats_server.url,
        log_json=False,
        public_base_url="http://appstore.test",
        platform_base_url="http://platform.test",
    )
    return settings


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def app(settings: AppStoreSettings, issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    async with running(create_app(settings), issuer) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://appstore.test") as http:
        yield http


def feed(database: Database, *payloads: EventPayload) -> None:
    """Apply identity or enrollment events to the roster projection through the service's own handler."""
    for payload in payloads:
        envelope = EventEnvelope.model_validate_json(build_envelope(payload, carrier={}).model_dump_json())
        with database.session() as session:
            apply_roster_event(session, envelope)


def build_city(database: Database, issuer: TestIssuer) -> TestCity:
    """The test city, plus two developers of different vendors (role vendor_developer at the city)."""
    city = build_test_city(database, issuer, feed=feed, default_scopes=SCOPES_ALL)
    city.add_person("developer", kind="staff", name="开发者张工", org_id=city.city_id, role="vendor_developer")
    city.add_person("developer2", kind="staff", name="开发者李工", org_id=city.city_id, role="vendor_developer")
    city.add_person("other_developer", kind="staff", name="别家开发者", org_id=city.city_id, role="vendor_developer")
    return city


@pytest.fixture
def city(app: FastAPI, issuer: TestIssuer) -> TestCity:
    return build_city(app.state.database, issuer)


def school_ids(database: Database) -> dict[str, str]:
    """The schools of the app store's directory projection, by name."""
    from sqlmodel import select

    from appstore.roster.models import RosterOrganisation

    with database.read_session() as session:
        rows = session.exec(select(RosterOrganisation).where(RosterOrganisation.kind == "school")).all()
        return {row.name: row.id for row in rows}
