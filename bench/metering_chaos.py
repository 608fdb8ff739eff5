"""Metering chaos run: a million usage events, 10% re-sent, the service killed and NATS restarted mid-way.

    .venv/bin/python bench/metering_chaos.py                        # 1,000,000 events, SQLite
    .venv/bin/python bench/metering_chaos.py --events 100000        # a quick check
    .venv/bin/python bench/metering_chaos.py --postgres postgresql://postgres@127.0.0.1:5432/test

One nats-server (fixed port, JetStream file store), one database, one ``python -m metering serve`` process (see
bench/metering_ingest.py for how they are started). The bench publishes the app store's facts (vendor, apps, an
installation per app and school) and waits until metering has them, then ``--events`` units of usage, half launches
(one per message on EDU_APPSTORE) and half API-call records in gateway batches of ``--batch-records`` (EDU_GATEWAY).
``--resend`` of them are sent again: launches with the same envelope id (the broker's duplicate window drops them)
or in a new envelope with the same launch id; API-call records as whole batches re-sent with the same batch id, and
as records re-sent inside new batches with new batch ids (past the broker, only metering's ledger dedups them).

While publishing: at 30% of the messages metering is killed with SIGKILL and started again; at 60% nats-server is
stopped and started again on the same port and store (the publisher retries what was not acknowledged, with the
same Nats-Msg-Id). At the end the bench waits until both consumers have acknowledged everything, then compares the
totals per meter in ``usage_total`` with the publisher's exact expectations (distinct ids) and prints PASS or FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine, load_average
from metering_ingest import (
    APPSTORE,
    APPSTORE_CONSUMER,
    GATEWAY,
    GATEWAY_CONSUMER,
    City,
    Expected,
    Ledger,
    Message,
    MeteringService,
    consumer_backlog,
    declare_streams,
    encode,
    make_launch,
    process_cpu_seconds,
    scratch_database,
    stream_messages,
    wait_for,
)

from contracts.events.gateway import ApiCallRecord, ApiUsageRecordedV1
from kit.natsserver import NatsServer, free_port

CHUNK = 5000  # messages published before their acks are awaited together


@dataclass
class Counters:
    messages: int = 0
    launch_resent_same: int = 0
    launch_resent_new: int = 0
    batches_resent_same: int = 0
    records_resent_new_batch: int = 0
    publish_retries: int = 0


def gateway_batch(records: list[ApiCallRecord], batch_id: str | None = None) -> Message:
    batch_id = batch_id or str(uuid.uuid4())
    return encode(ApiUsageRecordedV1(batch_id=batch_id, records=records), event_id=batch_id)


def make_record(city: City, rng: random.Random, expected: Expected) -> ApiCallRecord:
    app, school = rng.randrange(city.apps), rng.randrange(city.schools)
    record_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    expected.api_calls.add(record_id)
    return ApiCallRecord(
        id=record_id, client_id=f"client-{app:04d}", app_id=city.app_id(app), school_id=city.school_id(school),
        service="identity", route="/api/identity/organisations/{org_id}", method="GET", status=200,
        latency_ms=12.5, request_bytes=0, response_bytes=512, at=city.now - timedelta(seconds=rng.uniform(0, 3600)),
        request_id=f"req-{record_id[:18]}",
    )  # fmt: skip


def usage_messages(
    city: City, events: int, batch_records: int, resend: float, seed: int, expected: Expected, counters: Counters
) -> Iterator[Message]:
    """Half launches, half API-call records in batches, mixed; re-sends come a little after their originals."""
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    later: list[Message] = []
    resent_records: list[ApiCallRecord] = []
    launches = events // 2
    records = events - launches
    made_launches = made_records = 0
    while made_launches < launches or made_records < records:
        if made_records < records and (made_launches >= launches or rng.random() < 1 / (batch_records + 1)):
            size = min(batch_records, records - made_records)
            batch = [make_record(city, rng, expected) for _ in range(size)]
            made_records += size
            message = gateway_batch(batch)
            yield message
            for record in batch:
                if rng.random() < resend / 2:  # the other half of the re-sent records: whole batches below
                    resent_records.append(record)
                    counters.records_resent_new_batch += 1
            if rng.random() < resend / 2:
                later.append(message)  # the gateway re-sending a batch whose ack it lost
                counters.batches_resent_same += 1
            if len(resent_records) >= batch_records:
                later.append(gateway_batch(resent_records[:batch_records]))
                del resent_records[:batch_records]
        else:
            payload = make_launch(city, rng, f"launch-{tag}-{made_launches:09d}", expected)
            made_launches += 1
            message = encode(payload, org_id=payload.school_id)
            yield message
            if rng.random() < resend:
                if rng.random() < 0.5:
                    later.append(message)
                    counters.launch_resent_same += 1
                else:
                    later.append(encode(payload, org_id=payload.school_id))
                    counters.launch_resent_new += 1
        if len(later) > 2000 or (later and rng.random() < 0.001):
            rng.shuffle(later)
            yield from later
            later.clear()
    if resent_records:
        later.append(gateway_batch(resent_records))
    yield from later


async def publish_chunk(js: JetStreamContext, chunk: list[Message], counters: Counters) -> None:
    """Publish until every message of the chunk is acknowledged; retries keep their Nats-Msg-Id."""
    pending = chunk
    while pending:
        futures: list[asyncio.Future[PubAck] | None] = []
        for subject, body, headers in pending:
            try:
                futures.append(await js.publish_async(subject, body, headers=headers, wait_stall=5))
            except Exception:
                futures.append(None)
        waiting = [future for future in futures if future is not None]
        if waiting:
            _done, not_done = await asyncio.wait(waiting, timeout=20)
            for future in not_done:
                future.cancel()  # releases publish_async's pending slot
        failed = [
            message
            for message, future in zip(pending, futures, strict=True)
            if future is None or future.cancelled() or future.exception() is not None
        ]
        if failed:
            counters.publish_retries += len(failed)
            await asyncio.sleep(1.0)
        pending = failed


async def kill_metering(args: argparse.Namespace, service: MeteringService, log: list[str], started: float) -> None:
    def note(text: str) -> None:
        line = f"  t={time.perf_counter() - started:7.1f}s  {text}"
        log.append(line)
        print(line, flush=True)

    note("kill -9 metering")
    service.kill()
    await asyncio.sleep(args.down_seconds)
    await asyncio.to_thread(service.start)
    note("metering started again and ready")


async def restart_nats(args: argparse.Namespace, server: NatsServer, log: list[str], started: float) -> None:
    def note(text: str) -> None:
        line = f"  t={time.perf_counter() - started:7.1f}s  {text}"
        log.append(line)
        print(line, flush=True)

    note("stop nats-server")
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(args.down_seconds)
    await asyncio.to_thread(server.start)
    note("nats-server started again (same port and store)")


async def wait_drained(js: JetStreamContext, ledger: Ledger, expected: Expected, limit: float) -> bool:
    started = time.perf_counter()
    last_report = started
    while True:
        try:
            backlogs = [await consumer_backlog(js, APPSTORE.name, APPSTORE_CONSUMER),
                        await consumer_backlog(js, GATEWAY.name, GATEWAY_CONSUMER)]  # fmt: skip
        except Exception:
            backlogs = [None, None]
        launches = await asyncio.to_thread(ledger.count, "appstore")
        calls = await asyncio.to_thread(ledger.count, "gateway")
        if backlogs == [0, 0] and launches >= len(expected.launches) and calls >= len(expected.api_calls):
            return True
        now = time.perf_counter()
        if now - last_report > 30:
            print(f"  draining: backlog {backlogs}, launches {launches:,}/{len(expected.launches):,}, "
                  f"api calls {calls:,}/{len(expected.api_calls):,}", flush=True)  # fmt: skip
            last_report = now
        if now - started > limit:
            print(f"  ! not drained after {limit:.0f}s: backlog {backlogs}")
            return False
        await asyncio.sleep(1.0)


async def quiet(error: Exception) -> None:
    """The broker is down on purpose: no traceback per refused reconnection."""


async def run(args: argparse.Namespace, work_dir: Path) -> int:
    print(describe_machine())
    city = City(apps=args.apps, schools=args.schools, users=args.users)
    server = NatsServer(work_dir / "nats", port=free_port(), log_file=work_dir / "nats.log")
    server.start()
    expected = Expected()
    counters = Counters()
    log: list[str] = []
    client: NatsClient | None = None
    with scratch_database(args.postgres, work_dir, "metering") as database_url:
        service = MeteringService(database_url, server.url, work_dir, args.batch_size)
        ledger = Ledger(database_url)
        print(f"database {'PostgreSQL (scratch)' if args.postgres else 'SQLite file'}; {args.events:,} usage events, "
              f"{args.resend:.0%} re-sent; {args.apps} apps x {args.schools} schools; work dir {work_dir}")  # fmt: skip
        try:
            service.migrate()
            await declare_streams(server.url)
            client = await nats.connect(server.url, name="bench-chaos", max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.5, error_cb=quiet)  # fmt: skip
            js = client.jetstream(publish_async_max_pending=args.max_pending)
            service.start()
            await publish_chunk(js, city.facts(), counters)
            await wait_for(city.installations, ledger.installations)

            started = time.perf_counter()
            estimate = args.events // 2 * (1 + args.resend) + args.events / 2 / args.batch_records * (1 + args.resend)
            triggers = {"kill": 0.3 * estimate, "nats": 0.6 * estimate}
            tasks: list[asyncio.Task[None]] = []
            chunk: list[Message] = []
            messages = usage_messages(city, args.events, args.batch_records, args.resend, args.seed, expected, counters)
            for message in messages:
                chunk.append(message)
                if len(chunk) < CHUNK:
                    continue
                await publish_chunk(js, chunk, counters)
                counters.messages += len(chunk)
                chunk = []
                if "kill" in triggers and counters.messages >= triggers["kill"]:
                    del triggers["kill"]
                    tasks.append(asyncio.create_task(kill_metering(args, service, log, started)))
                if "nats" in triggers and counters.messages >= triggers["nats"]:
                    del triggers["nats"]
                    tasks.append(asyncio.create_task(restart_nats(args, server, log, started)))
            if chunk:
                await publish_chunk(js, chunk, counters)
                counters.messages += len(chunk)
            publish_seconds = time.perf_counter() - started
            print(f"  t={publish_seconds:7.1f}s  published {counters.messages:,} messages", flush=True)
            await asyncio.gather(*tasks)
            drained = await wait_drained(js, ledger, expected, limit=max(600.0, args.events / 50))
            total_seconds = time.perf_counter() - started
            print(f"  t={total_seconds:7.1f}s  drained", flush=True)
            totals = ledger.totals_by_meter()
            statuses = ledger.statuses()
            first_launch, last_launch = ledger.received_span("appstore")
            first_call, last_call = ledger.received_span("gateway")
            stream_counts = {APPSTORE.name: await stream_messages(js, APPSTORE.name),
                             GATEWAY.name: await stream_messages(js, GATEWAY.name)}  # fmt: skip
            cpu = process_cpu_seconds(service.process.pid) if service.process else 0.0
        finally:
            service.stop()
            if client is not None:
                await client.close()
            ledger.close()
            server.stop()

    distinct = len(expected.launches) + len(expected.api_calls)
    firsts = [moment for moment in (first_launch, first_call) if moment]
    lasts = [moment for moment in (last_launch, last_call) if moment]
    span = (max(lasts) - min(firsts)).total_seconds() if firsts and lasts else 0.0
    print(f"\nload average at the end {load_average()}")
    print(f"\nmessages published {counters.messages:,} (launch re-sends: {counters.launch_resent_same:,} same id, "
          f"{counters.launch_resent_new:,} new envelope; gateway: {counters.batches_resent_same:,} batches re-sent "
          f"with their id, {counters.records_resent_new_batch:,} records re-sent in new batches); "
          f"publish retries {counters.publish_retries:,}")  # fmt: skip
    print(f"stream messages {stream_counts}")
    print(f"time: publishing {publish_seconds:.1f} s ({counters.messages / publish_seconds:,.0f} msgs/s), "
          f"until drained {total_seconds:.1f} s; ingest {distinct:,} distinct usage events in {span:.1f} s of "
          f"received_at = {distinct / span if span else 0:,.0f} events/s")  # fmt: skip
    print(f"CPU of the service process since its restart: {cpu:.0f} s")
    print("chaos:")
    for line in log:
        print(line)
    print(f"\n{'meter':<22} {'expected':>12} {'actual':>12}  result")
    print("-" * 56)
    ok = drained
    for meter, count in expected.per_meter().items():
        actual = totals.get(meter, 0)
        ok = ok and actual == count
        print(f"{meter:<22} {count:>12,} {actual:>12,}  {'ok' if actual == count else 'DIFFERENT'}")
    only_billable = set(statuses) == {"billable"}
    ok = ok and only_billable
    print(f"statuses in usage_total: {statuses}{'' if only_billable else '  (expected only billable)'}")
    print(f"\n{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="distinct usage events (1000000)")
    parser.add_argument("--batch-records", type=int, default=100, help="API-call records per gateway batch (100)")
    parser.add_argument("--resend", type=float, default=0.10, help="share of events sent again (0.10)")
    parser.add_argument("--batch-size", type=int, default=None, help="METERING_INGEST_BATCH_SIZE (service default)")
    parser.add_argument("--down-seconds", type=float, default=2.0, help="how long metering and NATS stay down (2)")
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--max-pending", type=int, default=4000, help="publish_async_max_pending")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--postgres", help="PostgreSQL admin URL; a scratch database is created next to it")
    parser.add_argument("--work-dir", type=Path, help="keep store, database and logs here (default: temp dir)")
    args = parser.parse_args()
    if min(args.events, args.batch_records, args.apps, args.schools, args.users) <= 0:
        parser.error("--events, --batch-records, --apps, --schools and --users must be positive")
    logging.getLogger("kit.messaging").setLevel(logging.ERROR)
    if args.work_dir is not None:
        work_dir = args.work_dir / time.strftime("metering-chaos-%Y%m%d-%H%M%S")
        work_dir.mkdir(parents=True)
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="metering-chaos-"))
    try:
        import uvloop

        return uvloop.run(run(args, work_dir))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
