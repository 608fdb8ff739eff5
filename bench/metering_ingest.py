"""Metering ingest: launches from JetStream to queryable aggregates, through the real service process.

    .venv/bin/python bench/metering_ingest.py                          # SQLite, 200,000 launches
    .venv/bin/python bench/metering_ingest.py --events 50000 --baseline-events 5000
    .venv/bin/python bench/metering_ingest.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/metering_ingest.py --profile 20000        # in-process cProfile of the handler only

Every run has its own nats-server (kit.natsserver, fresh store, free port), its own database (a SQLite file in the
run's directory, or a scratch PostgreSQL database next to ``--postgres``) and its own ``python -m metering serve``
process (migrated with ``python -m metering migrate``). The bench publishes what the app store would: a vendor, N apps
published with a launch-priced plan that took effect a year ago, an installation of every app at each of M schools,
then E launches (unique launch ids; users drawn from a pool, so monthly-active-user rows deduplicate) as CloudEvents
envelopes with ``js.publish_async`` to EDU_APPSTORE. 10% of the launches are sent again: half with the same envelope id
(JetStream's duplicate window drops them), half in a new envelope with the same launch id (they reach the consumer and
only metering's ledger keeps them from counting twice).

Modes, each with the service's batch size (METERING_INGEST_BATCH_SIZE, default 500) and the baseline of batch size 1
(one message per fetch and transaction):

* preload: the stream is filled first, then the service starts; the consumer's rate alone.
* live: the service runs while the bench publishes as fast as it can; every 1000th launch's publish time is kept and the
  database polled until its row is there (publish-to-visible latency, p50/p99).

Ingest rate is read from the database: distinct launches / (last - first ``usage_event.received_at``; each batch stamps
its rows when it starts). Correctness: the sum of launch quantity in ``usage_total`` equals the distinct launches
published, the monthly-active-user sum equals the distinct (month, app, school, user), all rows billable, and the
stream holds exactly the messages that should have passed its duplicate window. Nothing is asserted by time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import sqlalchemy as sa
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine, load_average

from contracts.events import StreamSpec
from contracts.events.appstore import AppLaunchedV1, AppPublishedV1, InstallationGrantedV1, VendorRegisteredV1
from contracts.events.base import EventPayload
from contracts.events.gateway import ApiCallRecord, ApiUsageRecordedV1
from contracts.manifest import PricingUnit
from kit.db import Database, normalise_url
from kit.messaging import NatsLink
from kit.natsserver import NatsServer, free_port
from kit.outbox import build_envelope, event_headers
from kit.testing import scratch_postgres_database
from metering import periods
from metering.usage.models import UsageEvent, UsageTotal

ROOT = Path(__file__).resolve().parents[1]
APPSTORE = StreamSpec("appstore")
GATEWAY = StreamSpec("gateway")
APPSTORE_CONSUMER = "metering-appstore"
GATEWAY_CONSUMER = "metering-gateway-usage"
TARGET_EVENTS_PER_SECOND = 10_000
TARGET_P99_SECONDS = 5.0
SAMPLE_EVERY = 100  # of usage events; only launches are sampled, so ~1 in 1,000 at --api-share 0.9

#: subject, body, headers of one JetStream message
Message = tuple[str, bytes, dict[str, str]]


# --- what the app store publishes --------------------------------------------------------------


def encode(payload: EventPayload, *, org_id: str | None = None, event_id: str | None = None) -> Message:
    """The message a service's outbox relay would publish for ``payload`` (envelope, Nats-Msg-Id = event id)."""
    envelope = build_envelope(payload, org_id=org_id, carrier={})
    if event_id is not None:
        envelope = envelope.model_copy(update={"id": event_id})
    return payload.subject(), envelope.to_json_bytes(), event_headers(envelope.id, envelope.type)


@dataclass
class City:
    """Apps of one vendor, all installed at every school; usage is stamped within the last hour."""

    apps: int
    schools: int
    users: int
    pricing_unit: PricingUnit = "launch"
    vendor_id: str = "vendor-bench-0001"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def app_id(self, index: int) -> str:
        return f"app-bench-{index:04d}"

    def school_id(self, index: int) -> str:
        return f"school-bench-{index:05d}"

    def installation_id(self, app: int, school: int) -> str:
        return f"inst-{app:04d}-{school:05d}"

    def facts(self) -> list[Message]:
        """Vendor, apps with a plan in force for a year, one installation per app and school."""
        year_ago = self.now - timedelta(days=365)
        messages = [encode(VendorRegisteredV1(vendor_id=self.vendor_id, name="基准测试科技有限公司",
                                              unified_social_credit_code="91110000MA00BENCH1"))]  # fmt: skip
        for app in range(self.apps):
            messages.append(encode(AppPublishedV1(
                app_id=self.app_id(app), vendor_id=self.vendor_id, version_id=f"ver-{app:04d}", app_version="1.0.0",
                client_id=f"client-{app:04d}", scopes=["openid"], pricing_unit=self.pricing_unit,
                unit_price_fen=5, monthly_cap_fen_per_school=None, effective_at=year_ago, app_name=f"基准应用{app}",
            )))  # fmt: skip
        for app in range(self.apps):
            for school in range(self.schools):
                messages.append(encode(InstallationGrantedV1(
                    installation_id=self.installation_id(app, school), app_id=self.app_id(app),
                    client_id=f"client-{app:04d}", school_id=self.school_id(school), scopes=["openid"],
                    version_id=f"ver-{app:04d}", granted_at=year_ago,
                ), org_id=self.school_id(school)))  # fmt: skip
        return messages

    @property
    def installations(self) -> int:
        return self.apps * self.schools


@dataclass
class Expected:
    """What the publisher sent, by distinct id: the exact totals metering must arrive at."""

    launches: set[str] = field(default_factory=set)
    active_users: set[tuple[str, str, str, str]] = field(default_factory=set)
    api_calls: set[str] = field(default_factory=set)

    def per_meter(self) -> dict[str, int]:
        return {"launch": len(self.launches), "monthly_active_user": len(self.active_users),
                "api_call": len(self.api_calls)}  # fmt: skip


def make_launch(city: City, rng: random.Random, launch_id: str, expected: Expected) -> AppLaunchedV1:
    app, school = rng.randrange(city.apps), rng.randrange(city.schools)
    user = f"{city.app_id(app)}-user-{rng.randrange(city.users)}"  # pairwise pseudonym: one per app
    launched_at = city.now - timedelta(seconds=rng.uniform(0, 3600))
    expected.launches.add(launch_id)
    expected.active_users.add((periods.period_of(launched_at), city.app_id(app), city.school_id(school), user))
    return AppLaunchedV1(
        launch_id=launch_id, app_id=city.app_id(app), vendor_id=city.vendor_id,
        installation_id=city.installation_id(app, school), school_id=city.school_id(school), user_pseudonym=user,
        role="student" if rng.random() < 0.9 else "teacher", kind="oidc", launched_at=launched_at,
    )  # fmt: skip


@dataclass
class Workload:
    """Messages in publishing order; ``sample`` maps a position to the launch id whose latency is measured."""

    messages: list[Message]
    #: usage events each message carries (1 for a launch, the batch's records for a gateway batch)
    weights: list[int]
    sample: dict[int, str]
    expected: Expected
    resent_same_id: int
    resent_new_id: int


def launch_workload(
    city: City, events: int, resend_share: float, seed: int, tag: str, *, api_share: float = 0.0,
    records_per_batch: int = 100,
) -> Workload:  # fmt: skip
    """``events`` distinct usage events: launches (one message each) and, for ``api_share`` of them, API-call records
    in the gateway's batches of ``records_per_batch``; ``resend_share`` of them sent again a little later (launches:
    half with the same envelope id; records: inside a later batch with a new batch id)."""
    rng = random.Random(seed)
    expected = Expected()
    later: dict[int, list[Message]] = {}
    messages: list[Message] = []
    weights: list[int] = []
    sample: dict[int, str] = {}
    same = new = 0
    records: list[ApiCallRecord] = []
    resent_records: list[ApiCallRecord] = []

    def flush_records(pending: list[ApiCallRecord]) -> None:
        if pending:
            batch_id = str(uuid.uuid4())
            payload = ApiUsageRecordedV1(batch_id=batch_id, records=list(pending))
            messages.append(encode(payload, event_id=batch_id))
            weights.append(len(pending))
            pending.clear()

    def resend_later(index: int) -> None:
        again = later.pop(index, ())
        messages.extend(again)
        weights.extend(1 for _ in again)

    for index in range(events):
        if rng.random() < api_share:
            record = make_api_call(city, rng, f"call-{tag}-{index:09d}", expected)
            records.append(record)
            if rng.random() < resend_share:
                resent_records.append(record)
            if len(records) >= records_per_batch:
                flush_records(records)
            if len(resent_records) >= records_per_batch:
                flush_records(resent_records)
                new += records_per_batch
            resend_later(index)
            continue
        launch_id = f"launch-{tag}-{index:09d}"
        payload = make_launch(city, rng, launch_id, expected)
        message = encode(payload, org_id=payload.school_id)
        if index % SAMPLE_EVERY == 0:
            sample[len(messages)] = launch_id
        messages.append(message)
        weights.append(1)
        if rng.random() < resend_share:
            at = index + rng.randint(1, 5000)
            if rng.random() < 0.5:
                resend, same = message, same + 1  # a relay re-sending after a lost ack
            else:
                resend, new = encode(payload, org_id=payload.school_id), new + 1  # the fact emitted twice
            later.setdefault(min(at, events - 1), []).append(resend)
        resend_later(index)
    flush_records(records)
    flush_records(resent_records)
    for index in list(later):
        resend_later(index)
    return Workload(messages, weights, sample, expected, same, new)


def make_api_call(city: City, rng: random.Random, record_id: str, expected: Expected) -> ApiCallRecord:
    app, school = rng.randrange(city.apps), rng.randrange(city.schools)
    expected.api_calls.add(record_id)
    return ApiCallRecord(
        id=record_id, client_id=f"client-{app:04d}", app_id=city.app_id(app), school_id=city.school_id(school),
        service="enrollment", route="/api/enrollment/ims/oneroster/rostering/v1p2/classes", method="GET", status=200,
        latency_ms=12.5, request_bytes=0, response_bytes=2048, at=city.now - timedelta(seconds=rng.uniform(0, 3600)),
        request_id=str(uuid.uuid4()),
    )  # fmt: skip


# --- NATS ---------------------------------------------------------------------------------------


async def declare_streams(url: str) -> None:
    """EDU_APPSTORE and EDU_GATEWAY exactly as the services' NatsLink declares them."""
    link = NatsLink(url, name="bench-streams", streams=[APPSTORE, GATEWAY])
    await link.start()
    try:
        if not await link.wait_connected(15):
            raise RuntimeError(f"could not reach nats-server at {url}")
        await link.ensure_streams()
    finally:
        await link.close()


async def publish_all(
    js: JetStreamContext,
    messages: Sequence[Message],
    *,
    sample: dict[int, str] | None = None,
    sent_at: dict[str, float] | None = None,
    pace: float = 0.0,
    weights: Sequence[int] | None = None,
) -> float:
    """Publish with ``publish_async`` and wait for every ack; returns the seconds taken. ``pace`` caps the rate at
    that many usage events per second (``weights``: events per message; one each without them)."""
    started = time.perf_counter()
    futures = []
    carried = 0
    for position, (subject, body, headers) in enumerate(messages):
        if sample is not None and sent_at is not None and position in sample:
            sent_at[sample[position]] = time.monotonic()
        futures.append(await js.publish_async(subject, body, headers=headers))
        carried += weights[position] if weights is not None else 1
        if pace and position % 20 == 19:
            behind = started + carried / pace - time.perf_counter()
            if behind > 0:
                await asyncio.sleep(behind)
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    acks = await asyncio.gather(*futures, return_exceptions=True)
    failures = [ack for ack in acks if isinstance(ack, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed, first: {failures[0]!r}")
    return elapsed


async def consumer_backlog(js: JetStreamContext, stream: str, consumer: str) -> int | None:
    """Messages the durable consumer has not yet acknowledged (None before it exists)."""
    try:
        info = await js.consumer_info(stream, consumer)
    except nats.js.errors.NotFoundError:
        return None
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def stream_messages(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.messages)


# --- the service process ------------------------------------------------------------------------


class MeteringService:
    """``python -m metering serve`` as a child process: started, stopped, or killed -9."""

    def __init__(
        self, database_url: str, nats_url: str, work_dir: Path, batch_size: int | None = None, replica: int = 0
    ) -> None:
        self.port = free_port()
        self.log_file = work_dir / ("metering.log" if replica == 0 else f"metering-{replica}.log")
        self.env = {
            **os.environ,
            "METERING_DATABASE_URL": database_url,
            "METERING_NATS_URL": nats_url,
            "METERING_HTTP_PORT": str(self.port),
            "METERING_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "METERING_ENVIRONMENT": "test",
            "METERING_LOG_JSON": "false",
        }
        if batch_size is not None:
            self.env["METERING_INGEST_BATCH_SIZE"] = str(batch_size)
            if batch_size == 1:  # the baseline: one message per transaction on both streams
                self.env["METERING_GATEWAY_BATCH_MESSAGES"] = "1"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def migrate(self) -> None:
        with open(self.log_file, "ab") as log:
            subprocess.run([sys.executable, "-m", "metering", "migrate"], env=self.env, cwd=ROOT, stdout=log,
                           stderr=subprocess.STDOUT, check=True)  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "metering", "serve"], env=self.env, cwd=ROOT,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"metering exited with {self.process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"metering was not ready within {timeout:.0f}s; see {self.log_file}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """kill -9: no shutdown, batches in hand are lost and redelivered."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def scratch_database(postgres: str | None, work_dir: Path, name: str) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{work_dir / f'{name}.db'}"
        return
    with scratch_postgres_database(postgres, prefix="bench_metering") as url:
        yield url


# --- reading the service's database -------------------------------------------------------------


class Ledger:
    """Read-only queries on metering's tables, as a dashboard would see them."""

    def __init__(self, url: str) -> None:
        self.database = Database(normalise_url(url))
        # Reads never take SQLite's write lock (kit.db begins them deferred): they must not queue behind ingest.
        self.engine = self.database.engine.execution_options(read_only=True)
        self.events: sa.Table = UsageEvent.__table__
        self.totals: sa.Table = UsageTotal.__table__

    def close(self) -> None:
        self.database.dispose()

    def _scalar(self, statement: sa.Executable) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar() or 0)

    def count(self, source: str) -> int:
        return self._scalar(sa.select(sa.func.count()).select_from(self.events).where(self.events.c.source == source))

    def installations(self) -> int:
        return self._scalar(sa.text("SELECT count(*) FROM installation_span"))

    def visible(self, source: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        statement = sa.select(self.events.c.source_event_id).where(
            self.events.c.source == source, self.events.c.source_event_id.in_(list(ids))
        )
        with self.engine.connect() as connection:
            return set(connection.execute(statement).scalars())

    def received_span(self, source: str) -> tuple[datetime | None, datetime | None]:
        column = self.events.c.received_at
        statement = sa.select(sa.func.min(column), sa.func.max(column)).where(self.events.c.source == source)
        with self.engine.connect() as connection:
            first, last = connection.execute(statement).one()
        return _as_datetime(first), _as_datetime(last)

    def totals_by_meter(self) -> dict[str, int]:
        c = self.totals.c
        statement = sa.select(c.meter, sa.func.sum(c.quantity)).group_by(c.meter)
        with self.engine.connect() as connection:
            return {str(meter): int(total or 0) for meter, total in connection.execute(statement)}

    def statuses(self) -> dict[str, int]:
        c = self.totals.c
        statement = sa.select(c.status, sa.func.sum(c.quantity)).group_by(c.status)
        with self.engine.connect() as connection:
            return {str(status): int(total or 0) for status, total in connection.execute(statement)}


def _as_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregates return the stored text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def wait_drained(
    js: JetStreamContext, ledger: Ledger, *, consumer: str, stream: str, source: str, expected: int, limit: float
) -> tuple[float, bool]:
    """Seconds until the consumer has acknowledged everything and the ledger holds ``expected`` rows."""
    started = time.perf_counter()
    while True:
        backlog = await consumer_backlog(js, stream, consumer)
        rows = await asyncio.to_thread(ledger.count, source)
        if backlog == 0 and rows >= expected:
            return time.perf_counter() - started, True
        if time.perf_counter() - started > limit:
            print(f"  ! not drained after {limit:.0f}s: backlog {backlog}, {rows:,} of {expected:,} rows")
            return time.perf_counter() - started, False
        await asyncio.sleep(0.25)


async def wait_for(rows: int, read: Callable[[], int], limit: float = 120.0) -> None:
    """Until ``read()`` counts at least ``rows`` (the facts applied before usage is published)."""
    started = time.perf_counter()
    while await asyncio.to_thread(read) < rows:
        if time.perf_counter() - started > limit:
            raise TimeoutError(f"fewer than {rows} rows after {limit:.0f}s")
        await asyncio.sleep(0.2)


async def watch_latency(
    ledger: Ledger, sent_at: dict[str, float], seen_at: dict[str, float], stop: asyncio.Event, interval: float
) -> None:
    """Poll the database for the sampled launches; a launch is visible when its row (and its total) committed."""
    while True:
        pending = [launch_id for launch_id in sent_at if launch_id not in seen_at]
        if pending:
            found = await asyncio.to_thread(ledger.visible, "appstore", pending)
            now = time.monotonic()
            for launch_id in found:
                seen_at[launch_id] = now
        elif stop.is_set():
            return
        await asyncio.sleep(interval)


# --- one run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    mode: str
    batch_size: int
    events: int
    publish_seconds: float = 0.0
    published: int = 0
    ingest_rate: float = 0.0
    drain_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    stream_messages: int = 0
    stream_expected: int = 0
    drained: bool = False
    service_cpu: float = 0.0

    @property
    def correct(self) -> bool:
        return (
            self.drained
            and all(self.totals.get(meter, 0) == count for meter, count in self.expected.items() if count)
            and {status for status, quantity in self.statuses.items() if quantity} == {"billable"}
            and self.stream_messages == self.stream_expected
        )


def process_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


async def run_ingest(args: argparse.Namespace, mode: str, batch_size: int, events: int, base_dir: Path) -> RunResult:
    work_dir = base_dir / f"{mode}-b{batch_size}"
    work_dir.mkdir(parents=True)
    city = City(apps=args.apps, schools=args.schools, users=args.users)
    workload = launch_workload(city, events, args.resend, seed=args.seed, tag=uuid.uuid4().hex[:8],
                               api_share=args.api_share, records_per_batch=args.records_per_batch)  # fmt: skip
    facts = city.facts()
    result = RunResult(mode, batch_size, events, expected=workload.expected.per_meter())
    result.stream_expected = len(facts) + len(workload.messages) - workload.resent_same_id
    server = NatsServer(work_dir / "nats", log_file=work_dir / "nats.log")
    server.start()
    client: NatsClient | None = None
    with scratch_database(args.postgres, work_dir, "metering") as database_url:
        service = MeteringService(database_url, server.url, work_dir, batch_size)
        # Further replicas: members of the same durable consumers, as Kubernetes runs them (JetStream shares out
        # the messages).
        replicas = [
            MeteringService(database_url, server.url, work_dir, batch_size, replica)
            for replica in range(1, args.replicas)
        ]
        ledger = Ledger(database_url)
        try:
            service.migrate()
            await declare_streams(server.url)
            client = await nats.connect(server.url, name="bench-publisher")
            js = client.jetstream(publish_async_max_pending=args.max_pending)
            limit = max(300.0, events / 100)
            sent_at: dict[str, float] = {}
            seen_at: dict[str, float] = {}
            if mode == "preload":
                # The app store's facts first, applied; then the usage, with the service stopped, so the run
                # measures the consumers alone on a full stream (not the publisher, not a replay that meets usage
                # before the installations it needs).
                await publish_all(js, facts)
                service.start()
                await wait_for(city.installations, ledger.installations)
                service.stop()
                result.publish_seconds = await publish_all(js, workload.messages)
                service.start()
                for replica in replicas:
                    replica.start()
            else:
                service.start()
                for replica in replicas:
                    replica.start()
                await publish_all(js, facts)
                await wait_for(city.installations, ledger.installations)
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch_latency(ledger, sent_at, seen_at, stop, args.poll))
                result.publish_seconds = await publish_all(
                    js,
                    workload.messages,
                    sample=workload.sample,
                    sent_at=sent_at,
                    pace=args.live_rate,
                    weights=workload.weights,
                )
            assert service.process is not None
            result.drain_seconds, result.drained = await wait_drained(
                js, ledger, consumer=APPSTORE_CONSUMER, stream=APPSTORE.name, source="appstore",
                expected=len(workload.expected.launches), limit=limit,
            )  # fmt: skip
            if workload.expected.api_calls:
                gateway_seconds, gateway_drained = await wait_drained(
                    js, ledger, consumer=GATEWAY_CONSUMER, stream=GATEWAY.name, source="gateway",
                    expected=len(workload.expected.api_calls), limit=limit,
                )  # fmt: skip
                result.drain_seconds += gateway_seconds
                result.drained = result.drained and gateway_drained
            if mode == "live":
                stop.set()
                await asyncio.wait_for(watcher, 30)
                result.latencies = [seen_at[key] - sent_at[key] for key in sent_at if key in seen_at]
            result.service_cpu = sum(
                process_cpu_seconds(each.process.pid) for each in (service, *replicas) if each.process is not None
            )
            result.published = len(workload.messages)
            result.stream_messages = await stream_messages(js, APPSTORE.name)
            if workload.expected.api_calls:
                result.stream_messages += await stream_messages(js, GATEWAY.name)
            spans = [ledger.received_span(source) for source in ("appstore", "gateway")]
            firsts = [first for first, _ in spans if first is not None]
            lasts = [last for _, last in spans if last is not None]
            if firsts and lasts and max(lasts) > min(firsts):
                usage_events = len(workload.expected.launches) + len(workload.expected.api_calls)
                result.ingest_rate = usage_events / (max(lasts) - min(firsts)).total_seconds()
            result.totals = ledger.totals_by_meter()
            result.statuses = ledger.statuses()
        finally:
            for each in (service, *replicas):
                each.stop()
            if client is not None:
                await client.close()
            ledger.close()
            server.stop()
    return result


# --- report -------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(results: list[RunResult]) -> bool:
    print(f"\nload average at the end {load_average()}")
    print("\ningest/s = distinct usage events (launches + API calls) / (last - first received_at in usage_event);\n"
          "drain = publish end (live) or service ready (preload) to all acknowledged and visible\n")  # fmt: skip
    header = (f"{'mode':<8} {'batch':>5} {'events':>9} {'msgs':>9} {'publish/s':>10} {'ingest/s':>9} {'drain s':>8} "
              f"{'cpu s':>6} {'p50 s':>6} {'p99 s':>6} {'n':>4}  check")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        p50 = f"{percentile(r.latencies, 0.5):6.2f}" if r.latencies else f"{'-':>6}"
        p99 = f"{percentile(r.latencies, 0.99):6.2f}" if r.latencies else f"{'-':>6}"
        publish_rate = r.published / r.publish_seconds
        print(f"{r.mode:<8} {r.batch_size:>5} {r.events:>9,} {r.published:>9,} {publish_rate:>10,.0f} "
              f"{r.ingest_rate:>9,.0f} {r.drain_seconds:>8.1f} {r.service_cpu:>6.1f} {p50} {p99} "
              f"{len(r.latencies):>4}  {'OK' if r.correct else 'MISMATCH'}")  # fmt: skip
    by_key = {(r.mode, r.batch_size): r for r in results}
    batched = [r for r in results if r.batch_size != 1]
    print()
    for r in batched:
        baseline = by_key.get((r.mode, 1))
        if baseline is not None and baseline.ingest_rate:
            print(f"ratio {r.mode}: batch {r.batch_size} / batch 1 = {r.ingest_rate / baseline.ingest_rate:.1f}x")
    print("\ncorrectness (usage_total sums vs distinct ids published):")
    for r in results:
        meters = ", ".join(f"{meter} {r.totals.get(meter, 0):,}/{count:,}" for meter, count in r.expected.items()
                           if count)  # fmt: skip
        print(f"  {r.mode:<8} batch {r.batch_size:<4} {meters}; statuses {r.statuses}; stream {r.stream_messages:,}"
              f"/{r.stream_expected:,}  {'OK' if r.correct else 'MISMATCH'}")  # fmt: skip
    verdict = {True: "PASS", False: "FAIL"}
    print("\ntargets (issue 7):")
    for r in batched:
        print(f"  {r.mode:<8} ingest >= {TARGET_EVENTS_PER_SECOND:,}/s   {r.ingest_rate:>9,.0f}  "
              f"{verdict[r.ingest_rate >= TARGET_EVENTS_PER_SECOND]}")  # fmt: skip
        if r.latencies:
            p99_seconds = percentile(r.latencies, 0.99)
            ok = verdict[p99_seconds < TARGET_P99_SECONDS]
            print(f"  {r.mode:<8} p99 < {TARGET_P99_SECONDS:g} s            {p99_seconds:>9.2f}  {ok}")
    return all(r.correct for r in results)


# --- in-process profile of the handler ----------------------------------------------------------


def profile_handler(args: argparse.Namespace, base_dir: Path) -> int:
    """The consumers' database work without NATS: parse + ``EventConsumer._apply_many`` per batch, under cProfile.

    The same mix as the runs (``--api-share``): launches go to the app store's consumer in batches of
    ``--batch-size`` messages, the gateway's record batches to its consumer in batches of
    METERING_GATEWAY_BATCH_MESSAGES, in publishing order.
    """
    from contracts.envelope import EventEnvelope
    from kit.inbox import EventConsumer
    from kit.migrations import upgrade
    from metering.config import MeteringSettings
    from metering.main import MIGRATIONS
    from metering.usage.handlers import (
        APPSTORE_SUBJECTS,
        GATEWAY_SUBJECTS,
        SELF_DEDUPLICATED,
        build_appstore_handler,
        build_gateway_handler,
    )

    events = args.profile
    city = City(apps=args.apps, schools=args.schools, users=args.users)
    workload = launch_workload(
        city, events, 0.0, seed=args.seed, tag="profile", api_share=args.api_share,
        records_per_batch=args.records_per_batch,
    )  # fmt: skip
    with scratch_database(args.postgres, base_dir, "profile") as url:
        upgrade(url, MIGRATIONS)
        settings = MeteringSettings(database_url=url, environment="test")
        database = Database(url)
        appstore = EventConsumer(
            service="metering", name=APPSTORE_CONSUMER, stream=APPSTORE.name, subjects=APPSTORE_SUBJECTS,
            batch_handler=build_appstore_handler(settings), database=database, link=None,
            deduplicated_by_handler=SELF_DEDUPLICATED,
        )  # fmt: skip
        gateway = EventConsumer(
            service="metering", name=GATEWAY_CONSUMER, stream=GATEWAY.name, subjects=GATEWAY_SUBJECTS,
            batch_handler=build_gateway_handler(settings), database=database, link=None,
            deduplicated_by_handler=SELF_DEDUPLICATED,
        )  # fmt: skip
        facts = city.facts()
        for start in range(0, len(facts), 500):
            appstore._apply_many([EventEnvelope.from_json_bytes(body) for _, body, _ in facts[start : start + 500]])
        pending: dict[str, list[bytes]] = {GATEWAY_CONSUMER: [], APPSTORE_CONSUMER: []}
        limits = {GATEWAY_CONSUMER: settings.gateway_batch_messages, APPSTORE_CONSUMER: args.batch_size}
        consumers = {GATEWAY_CONSUMER: gateway, APPSTORE_CONSUMER: appstore}
        profiler = cProfile.Profile()
        parse_seconds = apply_seconds = 0.0

        def apply(name: str) -> None:
            nonlocal parse_seconds, apply_seconds
            bodies = pending[name]
            if not bodies:
                return
            if args.cprofile:
                profiler.enable()
            t0 = time.perf_counter()
            envelopes = [EventEnvelope.from_json_bytes(body) for body in bodies]
            t1 = time.perf_counter()
            consumers[name]._apply_many(envelopes)
            t2 = time.perf_counter()
            profiler.disable()
            parse_seconds += t1 - t0
            apply_seconds += t2 - t1
            bodies.clear()

        started = time.perf_counter()
        for subject, body, _ in workload.messages:
            name = GATEWAY_CONSUMER if subject in GATEWAY_SUBJECTS else APPSTORE_CONSUMER
            pending[name].append(body)
            if len(pending[name]) >= limits[name]:
                apply(name)
        apply(GATEWAY_CONSUMER)
        apply(APPSTORE_CONSUMER)
        wall = time.perf_counter() - started
        database.dispose()
    print(f"in-process handlers, {database.dialect}, {events:,} usage events ({args.api_share:.0%} API calls) "
          f"(no NATS, no HTTP{'; cProfile on, ~2x slow' if args.cprofile else ''})")  # fmt: skip
    print(f"  wall {wall:.2f} s = {events / wall:,.0f} events/s; parse envelopes {parse_seconds:.2f} s, "
          f"_apply_many {apply_seconds:.2f} s")  # fmt: skip
    if not args.cprofile:
        return 0
    for key, title in ((pstats.SortKey.CUMULATIVE, "cumulative"), (pstats.SortKey.TIME, "own time")):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(key).print_stats(args.profile_lines)
        print(f"\n--- cProfile by {title} (top {args.profile_lines}) ---")
        print(out.getvalue())
    return 0


# --- main ---------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, base_dir: Path) -> int:
    print(describe_machine())
    print(f"database {'PostgreSQL (scratch database)' if args.postgres else 'SQLite file'}; {args.apps} apps x "
          f"{args.schools} schools installed, {args.users:,} users per app; {args.resend:.0%} re-sent")  # fmt: skip
    results = []
    for mode in args.modes:
        for batch_size, events in ((args.batch_size, args.events), (1, args.baseline_events)):
            if events <= 0:
                continue
            print(f"run: {mode}, batch size {batch_size}, {events:,} usage events ...", flush=True)
            started = time.perf_counter()
            results.append(await run_ingest(args, mode, batch_size, events, base_dir))
            print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
    return 0 if report(results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="distinct launches per batched run (200000)")
    parser.add_argument("--baseline-events", type=int, default=20_000,
                        help="distinct launches per batch-size-1 run (20000; 0 skips the baseline)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=500, help="METERING_INGEST_BATCH_SIZE of the measured runs")
    parser.add_argument("--modes", type=lambda text: text.split(","), default=["preload", "live"],
                        help="comma separated: preload,live")  # fmt: skip
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--users", type=int, default=2000, help="pseudonyms per app the launches draw from")
    parser.add_argument("--resend", type=float, default=0.10, help="share of usage events sent twice (0.10)")
    parser.add_argument(
        "--api-share",
        type=float,
        default=0.0,
        help="share of usage events that are API-call records in the gateway's batches (0.0)",
    )
    parser.add_argument("--records-per-batch", type=int, default=100, help="API-call records per gateway batch")
    parser.add_argument(
        "--live-rate", type=float, default=0.0,
        help="pace the live publisher: usage events/s as delivered, re-sent ones included (0: flat out)",
    )  # fmt: skip
    parser.add_argument("--max-pending", type=int, default=4000, help="publish_async_max_pending")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between latency polls of the database")
    parser.add_argument("--replicas", type=int, default=1, help="metering processes sharing the consumers (1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", help="PostgreSQL admin URL; each run gets a scratch database next to it")
    parser.add_argument("--profile", type=int, default=0, help="only profile the handler in-process on N launches")
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument(
        "--no-cprofile", dest="cprofile", action="store_false", help="--profile timing without cProfile"
    )
    parser.add_argument("--work-dir", type=Path, help="keep stores, databases and logs here (default: temp dir)")
    args = parser.parse_args()
    if min(args.events, args.batch_size, args.apps, args.schools, args.users) <= 0:
        parser.error("--events, --batch-size, --apps, --schools and --users must be positive")
    if set(args.modes) - {"preload", "live"}:
        parser.error("--modes takes preload and/or live")
    logging.getLogger("kit.messaging").setLevel(logging.ERROR)
    if args.work_dir is not None:
        base_dir = args.work_dir / time.strftime("metering-ingest-%Y%m%d-%H%M%S")
        base_dir.mkdir(parents=True)
    else:
        base_dir = Path(tempfile.mkdtemp(prefix="metering-ingest-"))
    try:
        if args.profile:
            return profile_handler(args, base_dir)
        import uvloop

        return uvloop.run(bench(args, base_dir))
    finally:
        if args.work_dir is None:
            shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
