"""Test support for the identity service: a migrated database, a real nats-server, the app, and real tokens.

Used by the service's own tests and by cross-service tests; tokens are signed with the real keys.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import openpyxl
import pytest
from fastapi import FastAPI

from contracts.auth import RoleClaim
from identity.config import IdentitySettings
from identity.keys import service as keys
from identity.main import create_app, migrate
from identity.organisations import service as organisations
from identity.organisations.models import Organisation
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.models import Person
from identity.people.schemas import PersonCreate
from identity.people.validation import resident_id_check_character
from identity.roles import REQUIRED_SCOPES
from kit.db import Database
from kit.natsserver import NatsServer


@pytest.fixture
def settings(database_url: str, nats_server: NatsServer) -> IdentitySettings:
    settings = IdentitySettings(
        environment="test",
        database_url=database_url,
        nats_url=nats_server.url,
        log_json=False,
        public_base_url="http://identity.test",
        token_issuer="http://identity.test",
        jwks_url="http://identity.test/.well-known/jwks.json",
    )
    migrate(settings)
    return settings


@pytest.fixture
async def app(settings: IdentitySettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://identity.test") as http:
        yield http


@dataclass
class Directory:
    """A small city: two districts, a school in each, and an admin at every level."""

    database: Database
    city: Organisation
    district_a: Organisation
    district_b: Organisation
    school_a: Organisation
    school_b: Organisation
    city_admin: Person
    district_admin_a: Person
    school_admin_a: Person
    school_admin_b: Person
    auditor: Person
    teacher_a: Person


@pytest.fixture
def directory(app: FastAPI) -> Directory:
    database: Database = app.state.database
    cipher = app.state.cipher
    with database.session() as session:
        city = organisations.create_root(session, name="厦门市")
        district_a = organisations.create(
            session, OrganisationCreate(kind="district", name="思明区", parent_id=city.id)
        )
        district_b = organisations.create(
            session, OrganisationCreate(kind="district", name="湖里区", parent_id=city.id)
        )
        school_a = organisations.create(
            session,
            OrganisationCreate(
                kind="school", name="滨海小学", parent_id=district_a.id, school_code="2135020301", school_type="primary"
            ),
        )
        school_b = organisations.create(
            session,
            OrganisationCreate(
                kind="school", name="金山小学", parent_id=district_b.id, school_code="2135020601", school_type="primary"
            ),
        )

        def staff(name: str, org: Organisation, role: str, phone: str) -> Person:
            row = people.create(
                session, people.clean(PersonCreate(kind="staff", name=name, org_id=org.id, phone=phone), org), cipher,
                created_by=None,
            )  # fmt: skip
            people.grant_role(session, row, role=role, org_id=org.id, granted_by=None)
            return row

        result = Directory(
            database=database, city=city, district_a=district_a, district_b=district_b, school_a=school_a,
            school_b=school_b,
            city_admin=staff("陈建国", city, "city_admin", "13900000001"),
            district_admin_a=staff("苏卫东", district_a, "district_admin", "13900000002"),
            school_admin_a=staff("方校长", school_a, "school_admin", "13900000003"),
            school_admin_b=staff("梁校长", school_b, "school_admin", "13900000004"),
            auditor=staff("谢雅琴", city, "auditor", "13900000005"),
            teacher_a=staff("林慧敏", school_a, "teacher", "13900000006"),
        )  # fmt: skip
    return result


TokenFactory = Callable[..., str]


@pytest.fixture
def token_for(app: FastAPI, settings: IdentitySettings) -> TokenFactory:
    """A real access token signed with the service's current key, acting as ``person``."""

    def issue(person: Person, *, scopes: tuple[str, ...] = REQUIRED_SCOPES, **overrides: object) -> str:
        database: Database = app.state.database
        with database.session() as session:
            roles = []
            for grant in people.roles_of(session, person.id):
                if grant.active:
                    path = organisations.get(session, grant.org_id).path
                    roles.append(RoleClaim(role=grant.role, org_id=grant.org_id, org_path=path))
            return keys.issue_access_token(
                session, settings, subject=person.id, client_id="platform-admin-console", scopes=list(scopes),
                roles=roles, **overrides,
            )  # fmt: skip

    return issue


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def resident_id(birth: date, sequence: int, area_code: str = "350203") -> str:
    """A valid resident ID number (GB 11643-1999); an odd ``sequence`` is a boy, an even one a girl."""
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_character(first17)


def xlsx(rows: Sequence[Sequence[Any]], *, merge: str | None = None) -> bytes:
    """An XLSX workbook of ``rows`` as an office suite would save it; ``merge`` merges a cell range."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    if merge:
        sheet.merge_cells(merge)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
