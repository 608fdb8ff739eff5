"""Test support for the enrollment service: a migrated database, a real nats-server, the app, real tokens,
and a small city fed into the directory projection through identity's own event types."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.envelope import EventEnvelope
from contracts.events import EventPayload
from contracts.events import identity as identity_events
from enrollment.config import EnrollmentSettings
from enrollment.directory.handlers import identity_event_handler
from enrollment.main import create_app, migrate
from kit.crypto import FieldCipher
from kit.db import Database
from kit.natsserver import NatsServer
from kit.outbox import build_envelope
from kit.testing import TestIssuer

SCOPES_ADMIN = "enrollment.read enrollment.write roster.read roster.students.read org.read"


@pytest.fixture
def settings(database_url: str, nats_server: NatsServer) -> EnrollmentSettings:
    settings = EnrollmentSettings(
        environment="test",
        database_url=database_url,
        nats_url=nats_server.url,
        log_json=False,
        public_base_url="http://enrollment.test",
        verification_retry_seconds=[0.2, 0.5, 1.0],
        verification_poll_seconds=0.1,
    )
    migrate(settings)
    return settings


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def app(settings: EnrollmentSettings, issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    issuer.trust(application)
    async with application.router.lifespan_context(application):
        yield application
    await application.state.jwks_client.aclose()


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


@dataclass
class Person:
    id: str
    name: str
    roles: list[dict[str, str]] = field(default_factory=list)


@dataclass
class City:
    """A city with two districts; district A has two primary schools, district B one."""

    database: Database
    issuer: TestIssuer
    city_id: str
    district_a: str
    district_b: str
    school_a1: str
    school_a2: str
    school_b1: str
    paths: dict[str, str]
    people: dict[str, Person] = field(default_factory=dict)

    def add_person(
        self,
        key: str,
        *,
        kind: str,
        name: str,
        org_id: str,
        role: str | None = None,
        sex: str | None = None,
        student_number: str | None = None,
    ) -> Person:
        person_id = str(uuid.uuid4())
        payloads: list[EventPayload] = [
            identity_events.PersonCreatedV1(
                person_id=person_id,
                kind=kind,
                name=name,
                org_id=org_id,
                sex=sex,
                student_number=student_number,
            )
        ]
        roles = []
        if role is not None:
            payloads.append(
                identity_events.RoleGrantedV1(
                    grant_id=str(uuid.uuid4()),
                    person_id=person_id,
                    role=role,
                    org_id=org_id,
                    org_path=self.paths[org_id],
                )
            )
            roles.append({"role": role, "org_id": org_id, "org_path": self.paths[org_id]})
        feed(self.database, *payloads)
        person = Person(id=person_id, name=name, roles=roles)
        self.people[key] = person
        return person

    def token(self, key: str, scopes: str = SCOPES_ADMIN, **claims: Any) -> dict[str, str]:
        """Authorization headers for a person of the city, with their roles."""
        person = self.people[key]
        token = self.issuer.token(subject=person.id, roles=person.roles, scopes=scopes, **claims)
        return {"Authorization": f"Bearer {token}"}

    def app_token(self, *, scopes: str, schools: list[str], app_id: str = "app-roster-sync") -> dict[str, str]:
        """Headers of a vendor app's call as the gateway forwards it (token plus the installing schools)."""
        token = self.issuer.token(client_id=f"{app_id}-client", app_id=app_id, scopes=scopes)
        return {"Authorization": f"Bearer {token}", "X-Edu-App-Schools": ",".join(schools)}


def build_city(database: Database, issuer: TestIssuer) -> City:
    ids = {name: str(uuid.uuid4()) for name in ("city", "da", "db", "a1", "a2", "b1")}
    paths = {
        ids["city"]: f"/{ids['city']}",
        ids["da"]: f"/{ids['city']}/{ids['da']}",
        ids["db"]: f"/{ids['city']}/{ids['db']}",
    }
    paths[ids["a1"]] = f"{paths[ids['da']]}/{ids['a1']}"
    paths[ids["a2"]] = f"{paths[ids['da']]}/{ids['a2']}"
    paths[ids["b1"]] = f"{paths[ids['db']]}/{ids['b1']}"
    organisations = [
        ("city", None, "city", "滨江市"),
        ("da", "city", "district", "春晓区"),
        ("db", "city", "district", "秋实区"),
        ("a1", "da", "school", "春晓第一小学"),
        ("a2", "da", "school", "春晓第二小学"),
        ("b1", "db", "school", "秋实小学"),
    ]
    feed(
        database,
        *[
            identity_events.OrganisationCreatedV1(
                org_id=ids[key],
                parent_id=ids[parent] if parent else None,
                kind=kind,
                name=name,
                path=paths[ids[key]],
                school_type="primary" if kind == "school" else None,
            )
            for key, parent, kind, name in organisations
        ],
    )
    city = City(
        database=database, issuer=issuer, city_id=ids["city"], district_a=ids["da"], district_b=ids["db"],
        school_a1=ids["a1"], school_a2=ids["a2"], school_b1=ids["b1"], paths=paths,
    )  # fmt: skip
    city.add_person("city_admin", kind="staff", name="市教育局管理员", org_id=ids["city"], role="city_admin")
    city.add_person("district_a_admin", kind="staff", name="春晓区管理员", org_id=ids["da"], role="district_admin")
    city.add_person("a1_admin", kind="staff", name="春晓一小管理员", org_id=ids["a1"], role="school_admin")
    city.add_person("b1_admin", kind="staff", name="秋实小学管理员", org_id=ids["b1"], role="school_admin")
    city.add_person("a1_teacher", kind="staff", name="王老师", org_id=ids["a1"], role="teacher", sex="female")
    city.add_person("a1_teacher2", kind="staff", name="李老师", org_id=ids["a1"], role="teacher", sex="male")
    city.add_person("b1_teacher", kind="staff", name="赵老师", org_id=ids["b1"], role="teacher", sex="female")
    return city


@pytest.fixture
def city(app: FastAPI, issuer: TestIssuer) -> City:
    return build_city(app.state.database, issuer)
