"""Monthly statements benchmark: a month of usage for 500 apps x 1,000 schools, closed into statements.

    .venv/bin/python bench/metering_statements.py [--apps 500] [--schools 1000] [--vendors 50] [--seed 7]
    .venv/bin/python bench/metering_statements.py --postgres postgresql://postgres@127.0.0.1:5432/test   # scratch db

Builds a fresh metering database (migrated as the service migrates it) with --vendors vendors, --apps apps spread
over them, each with a price plan (a random pricing unit, 1–50 fen a unit, a monthly cap per school for half of
them, and for a tenth a second plan taking effect mid-month), a city of 10 districts and --schools schools. Then
it bulk-inserts October 2026's usage aggregates (``usage_total``) as the usage consumers would have left them: for
every app at every school its plan's meter on one to three days of the month, for a fifth of the pairs another
meter that the app is not billed by (recorded, never billed), for 2% of the pairs late September usage billed in
October (adjustment lines), and some held usage (not billed).

Timed: ``close_period`` for October in one transaction, commit included — every vendor's statement computed from
the aggregates (one grouped query, grouping and caps in Python) and its lines bulk-inserted, the events written to
the outbox. Side by side, the baseline: the same lines computed the naive way, one query per (app, school) pair,
over a sample of --sample-apps apps (all their schools) and extrapolated to every app; the baseline gets an index
on (app_id, school_id) so each of its queries is a lookup, not a scan. Before reporting, the sample's baseline
lines are checked equal to the stored statement lines.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kit.db import Database
from kit.testing import scratch_postgres_database
from metering import periods
from metering.config import MeteringSettings
from metering.main import migrate
from metering.projections.models import MeteredApp, MeteredOrganisation, MeteredVendor, PricePlan
from metering.statements import service
from metering.statements.models import Statement, StatementLine
from metering.usage.models import UsageTotal

PERIOD = "2026-10"
METERS = ("launch", "api_call", "monthly_active_user", "minute", "reported_unit")
CHUNK = 50_000


@contextlib.contextmanager
def database_url(postgres: str | None) -> Iterator[str]:
    if postgres:
        with scratch_postgres_database(postgres, prefix="bench_metering") as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'metering.db'}"


def insert(session: Session, table: sa.Table, rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(sa.insert(table), rows[start : start + CHUNK])


def build(database: Database, *, apps: int, schools: int, vendors: int, seed: int) -> tuple[int, list[str]]:
    """The reference data and a month of aggregates; returns the number of usage_total rows and the app ids."""
    rng = random.Random(seed)
    vendor_ids = [f"vendor-{v:04d}" for v in range(vendors)]
    app_ids = [f"app-{a:05d}" for a in range(apps)]
    districts = [f"district-{d:02d}" for d in range(10)]
    school_ids = [f"school-{s:05d}" for s in range(schools)]
    plans: list[dict[str, object]] = []
    plan_id = 0
    unit_of: dict[str, str] = {}
    plans_of: dict[str, list[int]] = defaultdict(list)
    for app_id in app_ids:
        unit = rng.choice(METERS)
        unit_of[app_id] = unit
        cap = rng.choice([None, rng.randint(500, 20_000)])
        starts = [datetime(2026, 1, 1, tzinfo=UTC)]
        if rng.random() < 0.1:
            starts.append(datetime(2026, 10, 16, tzinfo=UTC))
        for index, effective_at in enumerate(starts):
            plan_id += 1
            plans_of[app_id].append(plan_id)
            plans.append({
                "id": plan_id, "app_id": app_id, "version_id": f"{app_id}-v{index}", "app_version": f"1.{index}.0",
                "unit": unit, "unit_price_fen": rng.randint(1, 50), "monthly_cap_fen_per_school": cap,
                "reported_unit_name": "一份作业" if unit == "reported_unit" else None, "effective_at": effective_at,
            })  # fmt: skip
    totals: list[dict[str, object]] = []

    def total(day: date, app_id: str, school_id: str, meter: str, plan: int, status: str, billing: str) -> None:
        quantity = rng.randint(1, 400)
        totals.append({
            "billing_period": billing, "usage_day": day, "app_id": app_id, "school_id": school_id, "meter": meter,
            "plan_id": plan, "status": status, "quantity": quantity, "events": quantity,
        })  # fmt: skip

    for app_id in app_ids:
        unit = unit_of[app_id]
        for school_id in school_ids:
            for day in rng.sample(range(1, 32), rng.randint(1, 3)):
                plan = plans_of[app_id][-1] if day >= 16 else plans_of[app_id][0]
                total(date(2026, 10, day), app_id, school_id, unit, plan, "billable", PERIOD)
            if rng.random() < 0.2:
                other = rng.choice([meter for meter in METERS if meter != unit])
                total(
                    date(2026, 10, rng.randint(1, 31)),
                    app_id,
                    school_id,
                    other,
                    plans_of[app_id][0],
                    "billable",
                    PERIOD,
                )
            if rng.random() < 0.02:
                total(
                    date(2026, 9, rng.randint(1, 30)), app_id, school_id, unit, plans_of[app_id][0], "billable", PERIOD
                )
            if rng.random() < 0.01:
                total(date(2026, 10, rng.randint(1, 31)), app_id, school_id, unit, plans_of[app_id][0], "held", PERIOD)
    with database.session() as session:
        insert(session, MeteredVendor.__table__, [{"vendor_id": v, "name": f"企业{v}"} for v in vendor_ids])  # type: ignore[arg-type]
        insert(session, MeteredApp.__table__, [  # type: ignore[arg-type]
            {"app_id": a, "vendor_id": vendor_ids[i % vendors], "name": f"应用{i}", "client_id": f"{a}-client",
             "status": "listed"} for i, a in enumerate(app_ids)
        ])  # fmt: skip
        orgs: list[dict[str, object]] = [
            {
                "org_id": "city",
                "parent_id": None,
                "kind": "city",
                "name": "滨江市",
                "path": "/city",
                "district_id": None,
            }
        ]
        orgs += [{"org_id": d, "parent_id": "city", "kind": "district", "name": f"第{i}区", "path": f"/city/{d}",
                  "district_id": d} for i, d in enumerate(districts)]  # fmt: skip
        orgs += [{"org_id": s, "parent_id": districts[i % 10], "kind": "school", "name": f"第{i}小学",
                  "path": f"/city/{districts[i % 10]}/{s}", "district_id": districts[i % 10]}
                 for i, s in enumerate(school_ids)]  # fmt: skip
        insert(session, MeteredOrganisation.__table__, orgs)  # type: ignore[arg-type]
        insert(session, PricePlan.__table__, plans)  # type: ignore[arg-type]
        insert(session, UsageTotal.__table__, totals)  # type: ignore[arg-type]
    return len(totals), app_ids


LineKey = tuple[str, str, str, str, int]


def naive_lines(session: Session, app_ids: list[str]) -> dict[LineKey, tuple[int, int, int]]:
    """The baseline: one query per (app, school) pair; same pricing and cap rules."""
    schools = list(session.exec(select(MeteredOrganisation.org_id).where(MeteredOrganisation.kind == "school")))
    caps = service.caps_at_period_end(session, period=PERIOD, app_ids=app_ids)
    vendor_of = dict(session.exec(select(MeteredApp.app_id, MeteredApp.vendor_id)).all())
    found: dict[LineKey, tuple[int, int, int]] = {}
    for app_id in app_ids:
        for school_id in schools:
            rows = session.exec(
                select(UsageTotal, PricePlan)
                .join(PricePlan, col(PricePlan.id) == col(UsageTotal.plan_id))
                .where(UsageTotal.billing_period == PERIOD, UsageTotal.app_id == app_id,
                       UsageTotal.school_id == school_id, UsageTotal.status == "billable")
            ).all()  # fmt: skip
            grouped: dict[tuple[str, str, int, int], int] = defaultdict(int)
            for total, plan in rows:
                if total.meter == plan.unit:
                    grouped[
                        (total.meter, periods.period_of_day(total.usage_day), total.plan_id, plan.unit_price_fen)
                    ] += total.quantity
            drafts = [
                service.LineDraft(app_id=app_id, vendor_id=vendor_of[app_id], school_id=school_id, meter=meter,
                                  usage_period=month, plan_id=plan_id, unit_price_fen=price, quantity=quantity,
                                  gross_fen=quantity * price)
                for (meter, month, plan_id, price), quantity in sorted(grouped.items())
            ]  # fmt: skip
            service.apply_caps(drafts, period=PERIOD, caps=caps)
            for line in drafts:
                key = (line.app_id, line.school_id, line.meter, line.usage_period, line.plan_id)
                found[key] = (line.quantity, line.gross_fen, line.amount_fen)
    return found


def run(args: argparse.Namespace) -> None:
    with database_url(args.postgres) as url:
        settings = MeteringSettings(environment="test", database_url=url, log_json=False)
        migrate(settings)
        database = Database(url)
        started = time.perf_counter()
        rows, app_ids = build(database, apps=args.apps, schools=args.schools, vendors=args.vendors, seed=args.seed)
        print(f"database: {database.dialect}; built {rows:,} usage_total rows for {args.apps} apps x "
              f"{args.schools} schools ({args.vendors} vendors) in {time.perf_counter() - started:.1f} s")  # fmt: skip

        started = time.perf_counter()
        with database.session() as session:
            record = service.close_period(
                session, period=PERIOD, settings=settings, now=datetime(2026, 11, 10, tzinfo=UTC)
            )
        close_seconds = time.perf_counter() - started
        with database.read_session() as session:
            lines = session.exec(select(sa.func.count()).select_from(StatementLine)).one()
            total_fen = session.exec(select(sa.func.sum(Statement.total_fen))).one()
            late = session.exec(
                select(sa.func.count()).select_from(StatementLine).where(StatementLine.usage_period != PERIOD)
            ).one()
            capped = session.exec(
                select(sa.func.count()).select_from(StatementLine).where(col(StatementLine.cap_reduction_fen) > 0)
            ).one()
        print(f"close_period {PERIOD}: {record.statements} statements, {lines:,} lines ({late:,} late-usage "
              f"adjustment lines, {capped:,} capped), total {total_fen / 100:,.2f} yuan: {close_seconds:.2f} s "
              f"(target < 10 s)")  # fmt: skip

        sample = app_ids[: args.sample_apps]
        with database.session() as session:
            session.execute(sa.text("CREATE INDEX ix_bench_usage_total_app_school ON usage_total (app_id, school_id)"))
        started = time.perf_counter()
        with database.read_session() as session:
            baseline = naive_lines(session, sample)
        naive_seconds = time.perf_counter() - started
        extrapolated = naive_seconds * len(app_ids) / len(sample)
        with database.read_session() as session:
            stored = {
                (line.app_id, line.school_id, line.meter, line.usage_period, line.plan_id): (
                    line.quantity, line.gross_fen, line.amount_fen,
                )
                for line in session.exec(select(StatementLine).where(col(StatementLine.app_id).in_(sample)))
            }  # fmt: skip
        assert stored == baseline, "baseline lines differ from the statement lines"
        print(f"baseline (a query per app+school pair, indexed): {len(sample)} apps x {args.schools} schools in "
              f"{naive_seconds:.2f} s -> {extrapolated:.1f} s extrapolated to {len(app_ids)} apps (compute only, "
              f"no writes); {len(baseline):,} sample lines equal to the stored ones")  # fmt: skip
        print(f"speed-up (compute+write vs. baseline compute only): {extrapolated / close_seconds:.1f}x")
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--schools", type=int, default=1000)
    parser.add_argument("--vendors", type=int, default=50)
    parser.add_argument("--sample-apps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=None, help="Admin URL of a PostgreSQL server: run on a scratch database "
                        "there (default: a fresh SQLite file in a temporary directory)")  # fmt: skip
    run(parser.parse_args())


if __name__ == "__main__":
    main()
