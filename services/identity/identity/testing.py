"""Test support for the identity service: a migrated database, a real nats-server, the app, and real tokens.

Used by the service's own tests and by cross-service tests; tokens are signed with the real keys.
"""

from __future__ import annotations

import asyncio
import html
import io
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from fastapi import FastAPI
from sqlmodel import select

from contracts.auth import RoleClaim
from identity.config import IdentitySettings
from identity.keys import service as keys
from identity.main import MIGRATIONS, create_app
from identity.oauth import clients
from identity.oauth.schemas import ClientRegistration
from identity.organisations import service as organisations
from identity.organisations.models import Organisation
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.models import Person
from identity.people.schemas import PersonCreate
from identity.roles import REQUIRED_SCOPES
from kit.db import Database
from kit.identifiers import resident_id_check_character
from kit.natsserver import NatsServer
from kit.testing import TEST_FETCH_TIMEOUT


def settings_for_tests(database_url: str, nats_url: str) -> IdentitySettings:
    """Identity's settings under test, at ``database_url`` (already migrated) and ``nats_url``."""
    return IdentitySettings(
        environment="test",
        database_url=database_url,
        consumer_fetch_timeout_seconds=TEST_FETCH_TIMEOUT,
        nats_url=nats_url,
        log_json=False,
        public_base_url="http://identity.test",
        token_issuer="http://identity.test",
        jwks_url="http://identity.test/.well-known/jwks.json",
        # The cheapest argon2id: tests check behaviour, not cost (the bench states the production cost).
        password_hash_time_cost=1,
        password_hash_memory_kib=8 * 1024,
        password_hash_parallelism=1,
    )


@pytest.fixture
def settings(migrated_database: Callable[[Path], str], nats_server: NatsServer) -> IdentitySettings:
    return settings_for_tests(migrated_database(MIGRATIONS), nats_server.url)


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


def access_token_for(
    app: FastAPI, settings: IdentitySettings, person: Person, *, scopes: Sequence[str] = REQUIRED_SCOPES,
    **overrides: Any,
) -> str:  # fmt: skip
    """A real access token signed with the service's current key, acting as ``person`` with their active roles."""
    database: Database = app.state.database
    with database.session() as session:
        roles = []
        for grant in people.roles_of(session, person.id):
            if grant.active:
                path = organisations.get(session, grant.org_id).path
                roles.append(RoleClaim(role=grant.role, org_id=grant.org_id, org_path=path))
        fields: dict[str, Any] = {"client_id": "platform-admin-console", **overrides}
        return keys.issue_access_token(
            session, settings, subject=person.id, scopes=list(scopes), roles=roles, **fields
        )  # fmt: skip


def person_named(app: FastAPI, username: str) -> Person:
    """The person with this login, detached from the session."""
    database: Database = app.state.database
    with database.read_session() as session:
        person = session.exec(select(Person).where(Person.username == username)).one()
        session.expunge(person)
        return person


@pytest.fixture
def token_for(app: FastAPI, settings: IdentitySettings) -> TokenFactory:
    """A real access token signed with the service's current key, acting as ``person``."""

    def issue(person: Person, *, scopes: tuple[str, ...] = REQUIRED_SCOPES, **overrides: object) -> str:
        return access_token_for(app, settings, person, scopes=scopes, **overrides)

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


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    secret: str | None


def register_client(app: FastAPI, **fields: Any) -> RegisteredClient:
    """Register an OAuth client straight through the service (what the app store's call does)."""
    database: Database = app.state.database
    with database.session() as session:
        row, secret = clients.register(session, ClientRegistration(**fields), registered_by=None, production=False)
        return RegisteredClient(client_id=row.client_id, secret=secret)


async def all_published(app: FastAPI, timeout: float = 30.0) -> None:
    """Wait until the outbox relay has published everything committed so far."""
    relay = app.state.runtime.relay
    deadline = asyncio.get_running_loop().time() + timeout
    while await asyncio.to_thread(relay.backlog) > 0:
        assert asyncio.get_running_loop().time() < deadline, "the outbox was not drained in time"
        await asyncio.sleep(0.05)


def give_login(app: FastAPI, person: Person, username: str, password: str, *, must_change: bool = False) -> None:
    """Give ``person`` a login name and password (through the same policy check as administrators)."""
    from identity.accounts import service as accounts

    database: Database = app.state.database
    with database.session() as session:
        row = session.get(Person, person.id)
        assert row is not None
        row.username = username
        accounts.set_password(session, app.state.settings, row, password, must_change=must_change, actor=None)


_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
_META_REFRESH = re.compile(r'http-equiv="refresh" content="0;url=([^"]+)"')


class Visitor:
    """A browser stand-in over HTTP for the sign-in pages: it keeps cookies, posts forms with their hidden
    fields (CSRF token included), and follows the provider's own redirects and continue pages, stopping
    at a redirect to another site (a client's ``redirect_uri``)."""

    def __init__(self, app: FastAPI, base_url: str = "http://identity.test") -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    async def __aenter__(self) -> Visitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def follow(self, response: httpx.Response) -> httpx.Response:
        for _ in range(10):
            if response.is_redirect:
                location = response.headers["location"]
                if location.startswith("/") or location.startswith(self.base_url):
                    response = await self.http.get(location.removeprefix(self.base_url))
                    continue
                return response  # leaving for the client's site
            refresh = _META_REFRESH.search(response.text) if response.status_code == 200 else None
            if refresh:
                response = await self.http.get(html.unescape(refresh.group(1)))
                continue
            return response
        raise AssertionError("redirect loop")

    async def open(self, url: str) -> httpx.Response:
        return await self.follow(await self.http.get(url.removeprefix(self.base_url)))

    async def submit(self, page: httpx.Response, action: str, **fields: str) -> httpx.Response:
        """Post the form on ``page`` whose action is ``action``, with its hidden fields plus ``fields``."""
        text = page.text
        start = text.index(f'action="{action}"')
        form = text[start : text.index("</form>", start)]
        data = {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}
        data.update(fields)
        return await self.follow(await self.http.post(action, data=data))

    async def sign_in(self, url: str, username: str, password: str) -> httpx.Response:
        """Open ``url``; when it asks for a login, sign in, and return where that leads."""
        page = await self.open(url)
        if page.status_code == 200 and 'action="/login"' in page.text:
            page = await self.submit(page, "/login", username=username, password=password)
        return page


def csrf_token_in(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def message_in(html: str) -> str:
    """The text of a page's form message (error, notice)."""
    match = re.search(r'id="form-message"[^>]*>\s*<p>(.*?)</p>', html, re.S)
    assert match, html
    return match.group(1)
