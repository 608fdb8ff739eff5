"""Test support for the enrollment service: a migrated database, a real nats-server, the app, real tokens,
and a small city fed into the directory projection through identity's own event types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeAlias

import httpx
import pytest
from fastapi import FastAPI

from contracts.envelope import EventEnvelope
from contracts.events import EventPayload
from enrollment.config import EnrollmentSettings
from enrollment.directory.handlers import identity_event_handler
from enrollment.main import MIGRATIONS, create_app
from kit.crypto import FieldCipher
from kit.db import Database
from kit.natsserver import NatsServer
from kit.outbox import build_envelope
from kit.testing import TEST_FETCH_TIMEOUT, TestCity, TestIssuer, build_test_city, running

SCOPES_ADMIN = "enrollment.read enrollment.write roster.read roster.students.read org.read"


@pytest.fixture
def settings(migrated_database: Callable[[Path], str], nats_server: NatsServer) -> EnrollmentSettings:
    settings = EnrollmentSettings(
        environment="test",
        database_url=migrated_database(MIGRATIONS),
        consumer_fetch_timeout_seconds=TEST_FETCH_TIMEOUT,
        nats_url=nats_server.url,
        log_json=False,
        public_base_url="http://enrollment.test",
        verification_retry_seconds=[0.2, 0.5, 1.0],
        verification_poll_seconds=0.1,
    )
    return settings


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def app(settings: EnrollmentSettings, issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    async with running(create_app(settings), issuer) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enrollment.test") as http:
        yield http


def feed(database: Database, *payloads: EventPayload, cipher: FieldCipher | None = None) -> None:
    """Apply identity events to the projection through the service's own consumer handler."""
    apply = identity_event_handler(cipher or default_cipher())
    for payload in payloads:
        envelope = EventEnvelope.model_validate_json(build_envelope(payload, carrier={}).model_dump_json())
        with database.session() as session:
            apply(session, envelope)


def default_cipher() -> FieldCipher:
    """The cipher of a service running on default (development) settings, as the test settings are."""
    defaults = EnrollmentSettings()
    return FieldCipher(defaults.pii_encryption_key.get_secret_value(), defaults.pii_hash_key.get_secret_value())


City: TypeAlias = TestCity


def build_city(database: Database, issuer: TestIssuer) -> City:
    return build_test_city(database, issuer, feed=feed, default_scopes=SCOPES_ADMIN)


@pytest.fixture
def city(app: FastAPI, issuer: TestIssuer) -> City:
    return build_city(app.state.database, issuer)
