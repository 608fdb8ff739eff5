"""Pytest fixtures shared by every service's tests: a real nats-server, a real database, a real browser.

The database is a fresh SQLite file per test, or a fresh PostgreSQL database per test when
``TEST_DATABASE_URL`` points at a PostgreSQL server. A service's tests take theirs already migrated
(``migrated_database``): its migrations run once per session into a template, and each test gets a copy.
Browser tests drive Debian's Chromium (``CHROMIUM_PATH``, by default /usr/bin/chromium) through Playwright
against a ``live_server``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from kit.db import Database, make_engine, normalise_url
from kit.migrations import upgrade
from kit.natsserver import NatsServer

if TYPE_CHECKING:
    from fastapi import FastAPI
    from joserfc.jwk import RSAKey
    from playwright.sync_api import Browser

    from contracts.envelope import EventEnvelope
    from contracts.events import EventPayload


#: ``consumer_fetch_timeout_seconds`` of services under test: an app stopping at the end of a test waits for its
#: consumers' idle pulls, and the suite starts and stops hundreds of them.
TEST_FETCH_TIMEOUT = 0.1


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream on a free port; tests may stop and start it."""
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_admin_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if url and url.startswith(("postgres://", "postgresql")):
        return normalise_url(url)
    return None


@contextlib.contextmanager
def scratch_postgres_database(admin_url: str, prefix: str = "t") -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url``, dropped afterwards (tests, benches)."""
    admin_url = normalise_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database that exists only for this test."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with scratch_postgres_database(admin_url) as url:
        yield url


class MigrationTemplates:
    """One migrated database per migration history for the whole test session, copied for each test.

    Running a service's migrations costs seconds on PostgreSQL (alembic, DDL and a catalog per revision); copying a
    migrated database costs a fraction of that: ``CREATE DATABASE … TEMPLATE`` on PostgreSQL, SQLite's online backup
    of the file. The copy is the same database the migrations would have produced, data migrations included."""

    def __init__(self, directory: Path, admin_url: str | None) -> None:
        self.directory = directory
        self.admin_url = admin_url
        self.templates: dict[Path, str] = {}  # script location -> template (database name or SQLite file)

    def _template(self, script_location: Path) -> str:
        if script_location not in self.templates:
            name = f"tpl_{uuid.uuid4().hex[:16]}"
            if self.admin_url is None:
                path = self.directory / f"{name}.db"
                upgrade(f"sqlite:///{path}", script_location)
                self.templates[script_location] = str(path)
            else:
                self._execute(f'CREATE DATABASE "{name}"')
                try:
                    upgrade(self._url_of(name), script_location)
                except BaseException:
                    # A migration that fails must fail every test that needs it, not leave a half-built template.
                    self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    raise
                self.templates[script_location] = name
        return self.templates[script_location]

    def _url_of(self, name: str) -> str:
        assert self.admin_url is not None
        return sa.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        assert self.admin_url is not None
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            admin.dispose()

    @contextlib.contextmanager
    def copy(self, script_location: Path, directory: Path) -> Iterator[str]:
        """A database of its own, migrated to head by ``script_location``'s scripts, dropped afterwards."""
        template = self._template(script_location)
        name = f"t_{uuid.uuid4().hex[:16]}"
        if self.admin_url is None:
            path = directory / f"{name}.db"
            with (
                contextlib.closing(sqlite3.connect(template)) as source,
                contextlib.closing(sqlite3.connect(path)) as target,
            ):
                source.backup(target)
            yield f"sqlite:///{path}"
            return
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield self._url_of(name)
        finally:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for template in self.templates.values():
            if self.admin_url is None:
                Path(template).unlink(missing_ok=True)
            else:
                self._execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        self.templates.clear()


@pytest.fixture(scope="session")
def migration_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigrationTemplates]:
    templates = MigrationTemplates(tmp_path_factory.mktemp("migrated"), postgres_admin_url())
    try:
        yield templates
    finally:
        templates.close()
        shutil.rmtree(templates.directory, ignore_errors=True)


@pytest.fixture
def migrated_database(migration_templates: MigrationTemplates, tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """``migrated_database(MIGRATIONS)``: the URL of a database of this test's own, already migrated to head by the
    service's scripts at ``MIGRATIONS`` (SQLite file, or PostgreSQL with ``TEST_DATABASE_URL``)."""
    with contextlib.ExitStack() as stack:

        def make(script_location: Path) -> str:
            return stack.enter_context(migration_templates.copy(script_location, tmp_path))

        yield make


def schema_drift(database_url: str, metadata: sa.MetaData) -> list[Any]:
    """What differs between the migrated database at ``database_url`` and the models' ``metadata`` (alembic's
    autogenerate comparison, types included); empty when the migrations build exactly what the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def database_with_tables(url: str, *models: type[SQLModel]) -> Database:
    """A Database at ``url`` holding just the tables of ``models`` (kit's own tests have no migrations)."""
    database = Database(url)
    SQLModel.metadata.create_all(database.engine, tables=[model.__table__ for model in models])  # type: ignore[attr-defined]
    return database


async def publish_events(
    nats_url: str, *payloads: EventPayload, subject_id: str | None = None, repeat: int = 1
) -> list[EventEnvelope]:
    """Publish events on their service's stream as its outbox relay does (one envelope each). ``repeat`` sends each
    envelope again under another NATS message id, past JetStream's duplicate window, as a relay re-sending after
    that window would."""
    from contracts.events import StreamSpec
    from kit.messaging import NatsLink
    from kit.outbox import build_envelope

    streams = [StreamSpec(service) for service in dict.fromkeys(payload.service for payload in payloads)]
    link = NatsLink(nats_url, name="test-publisher", streams=streams)
    await link.start()
    envelopes = [build_envelope(payload, subject_id=subject_id) for payload in payloads]
    try:
        assert await link.wait_connected(timeout=10), f"could not reach {nats_url}"  # streams declared by then
        assert link.jetstream is not None
        for envelope, payload in zip(envelopes, payloads, strict=True):
            for copy in range(repeat):
                await link.jetstream.publish(
                    payload.subject(), envelope.to_json_bytes(), headers={"Nats-Msg-Id": f"{envelope.id}:{copy}"}
                )
    finally:
        await link.close()
    return envelopes


def wait_until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (and return it); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server whose URL must be known before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def mounted_under(prefix: str, app: Any) -> Any:
    """``app`` (whose lifespan the test already runs) served below ``prefix``, as the gateway exposes a service
    at ``/api/<service>``; anything else answers 404."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        if not path.startswith(prefix + "/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        inner = path[len(prefix) :]
        await app({**scope, "path": inner, "raw_path": inner.encode()}, receive, send)

    return asgi


@contextlib.contextmanager
def live_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 30.0,
    websockets: bool = False,
    proxy_headers: bool = False,
) -> Iterator[str]:
    """Serve ``app`` (an ASGI app, lifespan included) with uvicorn in a background thread; yields its base URL.

    The port is ``port``, or a free one chosen by the OS. On exit the server finishes its open requests, runs the
    app's shutdown and the thread is joined.
    """
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", ws="websockets-sansio" if websockets else "none", log_config=None,
        access_log=False, server_header=False, proxy_headers=proxy_headers,
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=f"live-server-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the live server stopped while starting; see the log above")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the live server did not start within {startup_timeout} s")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        listener.close()


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium driven by Playwright's sync API (use it from plain ``def`` tests).

    Uses the system's Chromium, never a browser downloaded by ``playwright install``.
    """
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"no Chromium at {path}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path)
        try:
            yield chromium
        finally:
            chromium.close()


def mint_access_token(
    key: RSAKey,
    *,
    issuer: str,
    audience: str = "edu-platform",
    scopes: str = "",
    client_id: str = "platform-portal",
    subject: str | None = None,
    app_id: str | None = None,
    expires_in: int = 300,
    roles: list[dict[str, str]] | None = None,
    jti: str | None = None,
) -> str:
    """An RFC 9068 access token signed with ``key``, shaped as the identity provider issues them."""
    from joserfc import jwt

    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject or client_id,
        "aud": audience,
        "exp": now + expires_in,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
        "client_id": client_id,
        "scope": scopes,
        "roles": roles or [],
    }
    if app_id is not None:
        claims["app_id"] = app_id
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=["RS256"])


class TestIssuer:
    """A signing key standing in for the identity provider's, for a service's own tests.

    ``trust(app)`` makes the service verify tokens against this key's JWKS (served in-process), so every
    request still passes the service's real token verification; ``token(...)`` mints one.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, issuer: str = "https://id.edu-platform.test", audience: str = "edu-platform") -> None:
        from joserfc.jwk import RSAKey

        self.issuer = issuer
        self.audience = audience
        self.key = RSAKey.generate_key(2048, parameters={"kid": f"test-{uuid.uuid4().hex[:8]}"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False, use="sig", alg="RS256")]}

    def trust(self, app: FastAPI) -> None:
        """Point ``app``'s token verifier at this issuer (call before the app serves requests)."""
        import httpx
        from fastapi import FastAPI as _FastAPI

        from kit.auth import JwksCache, TokenVerifier

        keys = _FastAPI()
        keys.get("/.well-known/jwks.json")(self.jwks)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=keys), base_url="http://issuer.test")
        app.state.jwks = JwksCache("http://issuer.test/.well-known/jwks.json", http_client=client)
        app.state.jwks_client = client
        app.state.token_verifier = TokenVerifier(app.state.jwks, issuer=self.issuer, audience=self.audience)

    def token(self, **claims: Any) -> str:
        return mint_access_token(self.key, issuer=self.issuer, audience=self.audience, **claims)


# ------------------------------------------------------------------------------------ route catalogue


_OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


@contextlib.asynccontextmanager
async def running(app: FastAPI, issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    """The service app, trusting ``issuer``'s tokens, with its lifespan (NATS, outbox relay, consumers) running."""
    issuer.trust(app)
    async with app.router.lifespan_context(app):
        yield app
    await app.state.jwks_client.aclose()


def documented_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation in a service's own OpenAPI document; hidden pages are not in it."""
    document = app.openapi()
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in _METHODS
    }


def concrete_path(template: str) -> str:
    """A path template with every parameter filled by a well-formed id nobody has."""
    import re

    return re.sub(r"\{[a-z_][a-z0-9_]*\}", "00000000-0000-4000-8000-000000000000", template)


def catalogue_drift(app: FastAPI, api: Any) -> tuple[list[str], list[str]]:
    """Routes the gateway's catalogue (a ``contracts.api.ServiceApi``) declares but the service does not serve,
    and operations the service serves that the catalogue lacks (outside its root paths)."""

    def at_the_root(path: str) -> bool:
        return any(path == root or (root.endswith("/") and path.startswith(root)) for root in api.root_paths)

    documented = documented_operations(app)
    catalogued = {(route.method, route.path) for route in api.routes}
    missing = sorted(route.operation_key for route in api.routes if (route.method, route.path) not in documented)
    stray = sorted(
        f"{method} {path}"
        for method, path in documented
        if (method, path) not in catalogued and path not in _OPERATIONAL_PATHS and not at_the_root(path)
    )
    return missing, stray


# ------------------------------------------------------------------------------------------------ a test city


@dataclass
class CityPerson:
    id: str
    name: str
    roles: list[dict[str, str]] = field(default_factory=list)


@dataclass
class TestCity:
    """A city with two districts; district A has two primary schools, district B one.

    Its organisations and people reach a service's directory projection through identity's own event types, by
    the service's ``feed(database, *payloads)``; tokens are minted by the test issuer with each person's roles.
    """

    __test__ = False

    database: Database
    issuer: TestIssuer
    feed: Callable[..., None]
    default_scopes: str
    city_id: str
    district_a: str
    district_b: str
    school_a1: str
    school_a2: str
    school_b1: str
    paths: dict[str, str]
    people: dict[str, CityPerson] = field(default_factory=dict)

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
    ) -> CityPerson:
        from contracts.events import identity as identity_events

        person_id = str(uuid.uuid4())
        payloads: list[Any] = [
            identity_events.PersonCreatedV1(
                person_id=person_id, kind=kind, name=name, org_id=org_id, sex=sex, student_number=student_number
            )
        ]
        roles = []
        if role is not None:
            payloads.append(
                identity_events.RoleGrantedV1(
                    grant_id=str(uuid.uuid4()), person_id=person_id, role=role, org_id=org_id,
                    org_path=self.paths[org_id],
                )
            )  # fmt: skip
            roles.append({"role": role, "org_id": org_id, "org_path": self.paths[org_id]})
        self.feed(self.database, *payloads)
        person = CityPerson(id=person_id, name=name, roles=roles)
        self.people[key] = person
        return person

    def token(self, key: str, scopes: str | None = None, **claims: Any) -> dict[str, str]:
        """Authorization headers for a person of the city, with their roles."""
        person = self.people[key]
        token = self.issuer.token(subject=person.id, roles=person.roles, scopes=scopes or self.default_scopes, **claims)
        return {"Authorization": f"Bearer {token}"}

    def app_token(self, *, scopes: str, schools: list[str], app_id: str = "app-roster-sync") -> dict[str, str]:
        """Headers of a vendor app's call as the gateway forwards it (token plus the installing schools)."""
        token = self.issuer.token(client_id=f"{app_id}-client", app_id=app_id, scopes=scopes)
        return {"Authorization": f"Bearer {token}", "X-Edu-App-Schools": ",".join(schools)}


def build_test_city(
    database: Database, issuer: TestIssuer, *, feed: Callable[..., None], default_scopes: str
) -> TestCity:
    """The test city, announced to the service through ``feed``, with its administrators and three teachers."""
    from contracts.events import identity as identity_events

    ids = {name: str(uuid.uuid4()) for name in ("city", "da", "db", "a1", "a2", "b1")}
    paths = {ids["city"]: f"/{ids['city']}"}
    organisations = [
        ("city", None, "city", "滨江市"),
        ("da", "city", "district", "春晓区"),
        ("db", "city", "district", "秋实区"),
        ("a1", "da", "school", "春晓第一小学"),
        ("a2", "da", "school", "春晓第二小学"),
        ("b1", "db", "school", "秋实小学"),
    ]
    for key, parent, _kind, _name in organisations:
        if parent is not None:
            paths[ids[key]] = f"{paths[ids[parent]]}/{ids[key]}"
    feed(
        database,
        *[
            identity_events.OrganisationCreatedV1(
                org_id=ids[key], parent_id=ids[parent] if parent else None, kind=kind, name=name,
                path=paths[ids[key]], school_type="primary" if kind == "school" else None,
            )
            for key, parent, kind, name in organisations
        ],
    )  # fmt: skip
    city = TestCity(
        database=database, issuer=issuer, feed=feed, default_scopes=default_scopes, city_id=ids["city"],
        district_a=ids["da"], district_b=ids["db"], school_a1=ids["a1"], school_a2=ids["a2"], school_b1=ids["b1"],
        paths=paths,
    )  # fmt: skip
    city.add_person("city_admin", kind="staff", name="市教育局管理员", org_id=ids["city"], role="city_admin")
    city.add_person("district_a_admin", kind="staff", name="春晓区管理员", org_id=ids["da"], role="district_admin")
    city.add_person("a1_admin", kind="staff", name="春晓一小管理员", org_id=ids["a1"], role="school_admin")
    city.add_person("b1_admin", kind="staff", name="秋实小学管理员", org_id=ids["b1"], role="school_admin")
    city.add_person("a1_teacher", kind="staff", name="王老师", org_id=ids["a1"], role="teacher", sex="female")
    city.add_person("a1_teacher2", kind="staff", name="李老师", org_id=ids["a1"], role="teacher", sex="male")
    city.add_person("b1_teacher", kind="staff", name="赵老师", org_id=ids["b1"], role="teacher", sex="female")
    return city
