"""Monthly statements benchmark: a month of usage for 500 apps x 1,000 schools, closed into statements.

    .venv/bin/python bench/metering_statements.py [--apps 500] [--schools 1000] [--vendors 50] [--pair-share 0.4]
    .venv/bin/python bench/metering_statements.py --postgres postgresql://postgres@127.0.0.1:5432/test   # scratch db

Builds a fresh metering database (migrated as the service migrates it) with --vendors vendors, --apps apps spread
over them, each with a price plan (a random pricing unit, 1–50 fen a unit, a monthly cap per school for half of
them, and for a tenth a second plan taking effect mid-month), a city of 10 districts and --schools schools. Then
it bulk-inserts October 2026's usage aggregates as the usage consumers would have left them, both the daily rows
(``usage_total``) and their rollup by month of use (``usage_month_total``, summed exactly as the ingest sums
them): each app is used at a --pair-share of the schools (drawn per pair); for each such pair its plan's meter on
one to three days of the month, for a fifth of them another meter that the app is not billed by (recorded, never
billed), for 2% late September usage billed in October (adjustment lines), for 1% held usage (not billed). The
usage ledger itself (``usage_event``) stays empty: statements never read it; the ranking's active users do.

Timed, each --repeat times in a transaction rolled back afterwards (min and median printed):

  (a) statements: ``issue_statements`` — every vendor's lines computed from the monthly aggregates, the lines
      written with the driver's executemany, the statements and their events written;
  (b) ``rank_period`` — the benefit ranking of the period;

then once, (c) the whole ``close_period`` in one transaction, commit included.

Side by side, two baselines on the same data: the previous implementation (HEAD before the monthly table: one
grouped query over the daily rows, the caps in Python per line object, the lines inserted through SQLAlchemy's
executemany; its closing measured 61.5 s on SQLite and 52.9 s on PostgreSQL for 100% of the pairs), compute and
write, rolled back; and the naive one, a query per (app, school) pair over a sample of --sample-apps apps,
extrapolated to every app (indexed on app_id, school_id so each query is a lookup). Before reporting, every
stored line is checked equal (key, quantity, price, gross, cap, reduction, district, order) to the previous
implementation's, and the sample's naive lines to the stored ones.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from machine import describe_machine
from sqlmodel import Session, col, select

from kit.db import Database, insert_rows
from kit.testing import scratch_postgres_database
from metering import periods
from metering.benefit.service import rank_period
from metering.config import MeteringSettings
from metering.main import migrate
from metering.projections.models import MeteredApp, MeteredOrganisation, MeteredVendor, PricePlan
from metering.statements import service
from metering.statements.models import Statement, StatementLine
from metering.usage.models import UsageMonthTotal, UsageTotal

PERIOD = "2026-10"
NOW = datetime(2026, 11, 10, tzinfo=UTC)
METERS = ("launch", "api_call", "monthly_active_user", "minute", "reported_unit")
PREVIOUS_SECONDS = {"sqlite": 61.5, "postgresql": 52.9}  # close_period before the monthly table, 100% of pairs
TOTAL_COLUMNS = ("billing_period", "usage_day", "app_id", "school_id", "meter", "plan_id", "status", "quantity",
                 "events")  # fmt: skip
MONTH_COLUMNS = ("billing_period", "usage_period", "app_id", "school_id", "meter", "plan_id", "status", "quantity",
                 "events")  # fmt: skip


@contextlib.contextmanager
def database_url(postgres: str | None) -> Iterator[str]:
    if postgres:
        with scratch_postgres_database(postgres, prefix="bench_metering") as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'metering.db'}"


def build(
    database: Database, *, apps: int, schools: int, vendors: int, pair_share: float, seed: int
) -> tuple[int, int, list[str]]:
    """The reference data and a month of aggregates; returns the daily and monthly row counts and the app ids."""
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
    daily: dict[tuple[str, date, str, str, str, int, str], int] = defaultdict(int)

    def use(day: date, app_id: str, school_id: str, meter: str, plan: int, status: str = "billable") -> None:
        daily[(PERIOD, day, app_id, school_id, meter, plan, status)] += rng.randint(1, 400)

    for app_id in app_ids:
        unit, first_plan = unit_of[app_id], plans_of[app_id][0]
        for school_id in school_ids:
            if rng.random() >= pair_share:
                continue
            for day in rng.sample(range(1, 32), rng.randint(1, 3)):
                use(date(2026, 10, day), app_id, school_id, unit, plans_of[app_id][-1] if day >= 16 else first_plan)
            if rng.random() < 0.2:
                other = rng.choice([meter for meter in METERS if meter != unit])
                use(date(2026, 10, rng.randint(1, 31)), app_id, school_id, other, first_plan)
            if rng.random() < 0.02:
                use(date(2026, 9, rng.randint(1, 30)), app_id, school_id, unit, first_plan)
            if rng.random() < 0.01:
                use(date(2026, 10, rng.randint(1, 31)), app_id, school_id, unit, first_plan, "held")
    monthly: dict[tuple[str, str, str, str, str, int, str], int] = defaultdict(int)
    for (billing, day, app_id, school_id, meter, plan, status), quantity in daily.items():
        monthly[(billing, periods.period_of_day(day), app_id, school_id, meter, plan, status)] += quantity
    with database.session() as session:
        session.execute(sa.insert(MeteredVendor.__table__), [{"vendor_id": v, "name": f"企业{v}"} for v in vendor_ids])  # type: ignore[arg-type]
        session.execute(sa.insert(MeteredApp.__table__), [  # type: ignore[arg-type]
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
        session.execute(sa.insert(MeteredOrganisation.__table__), orgs)  # type: ignore[arg-type]
        session.execute(sa.insert(PricePlan.__table__), plans)  # type: ignore[arg-type]
        # Rows as the events count them: quantity and events alike (one unit an event).
        insert_rows(session, UsageTotal.__table__, TOTAL_COLUMNS, [(*k, q, q) for k, q in sorted(daily.items())])  # type: ignore[arg-type]
        insert_rows(session, UsageMonthTotal.__table__, MONTH_COLUMNS, [(*k, q, q) for k, q in sorted(monthly.items())])  # type: ignore[arg-type]
    with database.engine.connect() as connection:
        connection.execute(sa.text("ANALYZE"))  # as autovacuum would have by month end
        connection.commit()
    return len(daily), len(monthly), app_ids


def timed_and_rolled_back(database: Database, work: Callable[[Session], object], repeat: int) -> list[float]:
    """Seconds of ``work`` (flushed) in a transaction rolled back afterwards, ``repeat`` times."""
    seconds = []
    for _ in range(repeat):
        session = database.session_factory()
        try:
            started = time.perf_counter()
            work(session)
            session.flush()
            seconds.append(time.perf_counter() - started)
        finally:
            session.rollback()
            session.close()
    return seconds


def figures(seconds: list[float]) -> str:
    return f"min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s ({len(seconds)} runs)"


LineKey = tuple[str, str, str, str, int]


def previous_statement_lines(session: Session) -> list[service.LineDraft]:
    """The previous implementation's lines (HEAD before the monthly table), in the order it stored them."""
    total, plan, app = UsageTotal.__table__.c, PricePlan.__table__.c, MeteredApp.__table__.c
    day = total.usage_day
    if session.get_bind().dialect.name == "postgresql":
        usage_period = sa.func.to_char(day, sa.literal_column("'YYYY-MM'")).label("usage_period")
    else:
        usage_period = sa.func.substr(day, 1, 7).label("usage_period")
    query = (
        sa.select(
            total.app_id, app.vendor_id, total.school_id, total.meter, usage_period, total.plan_id,
            plan.unit_price_fen, sa.func.sum(total.quantity).label("quantity"),
        )
        .join(PricePlan.__table__, sa.and_(plan.id == total.plan_id, plan.unit == total.meter))
        .join(MeteredApp.__table__, app.app_id == total.app_id)
        .where(total.billing_period == PERIOD, total.status == "billable")
        .group_by(total.app_id, app.vendor_id, total.school_id, total.meter, usage_period, total.plan_id,
                  plan.unit_price_fen)
    )  # fmt: skip
    lines = [
        service.LineDraft(app_id=app_id, vendor_id=vendor, school_id=school_id, meter=meter, usage_period=month,
                          plan_id=plan_id, unit_price_fen=price, quantity=int(quantity),
                          gross_fen=int(quantity) * price)
        for app_id, vendor, school_id, meter, month, plan_id, price, quantity in session.execute(query)
        if quantity
    ]  # fmt: skip
    lines.sort(key=lambda line: (line.app_id, line.school_id, line.meter, line.usage_period, line.plan_id))
    service.apply_caps(lines, period=PERIOD, caps=service.caps_at_period_end(session, period=PERIOD))
    districts = dict(
        session.exec(
            select(MeteredOrganisation.org_id, MeteredOrganisation.district_id).where(
                MeteredOrganisation.kind == "school"
            )
        ).all()
    )
    for line in lines:
        line.district_id = districts.get(line.school_id)
    lines.sort(key=lambda line: line.vendor_id)  # stable: by vendor, then line order, as it stored them
    return lines


def previous_statements(session: Session) -> None:
    """The previous implementation's statements path: compute, then insert the lines as dicts (SQLAlchemy)."""
    lines = previous_statement_lines(session)
    rows = [
        {
            "statement_id": line.vendor_id, "app_id": line.app_id, "school_id": line.school_id,
            "district_id": line.district_id, "meter": line.meter, "usage_period": line.usage_period,
            "plan_id": line.plan_id, "unit_price_fen": line.unit_price_fen, "quantity": line.quantity,
            "gross_fen": line.gross_fen, "cap_fen": line.cap_fen, "cap_reduction_fen": line.cap_reduction_fen,
            "amount_fen": line.amount_fen, "adjustment_fen": 0, "final_fen": line.amount_fen,
        }
        for line in lines
    ]  # fmt: skip
    for start in range(0, len(rows), 20_000):
        session.execute(sa.insert(StatementLine.__table__), rows[start : start + 20_000])


def naive_lines(session: Session, app_ids: list[str]) -> dict[LineKey, tuple[int, int, int]]:
    """The naive baseline: one query per (app, school) pair over the daily rows; same pricing and cap rules."""
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


def stored_lines(session: Session) -> list[tuple[Any, ...]]:
    """Every stored line in id order, with its statement's vendor."""
    line, statement = StatementLine.__table__.c, Statement.__table__.c
    return list(
        session.execute(
            sa.select(
                statement.vendor_id, line.app_id, line.school_id, line.meter, line.usage_period, line.plan_id,
                line.unit_price_fen, line.quantity, line.gross_fen, line.cap_fen, line.cap_reduction_fen,
                line.amount_fen, line.final_fen, line.district_id,
            )
            .join(Statement.__table__, statement.id == line.statement_id)
            .order_by(line.id)
        )
    )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    with database_url(args.postgres) as url:
        settings = MeteringSettings(environment="test", database_url=url, log_json=False)
        migrate(settings)
        database = Database(url)
        started = time.perf_counter()
        daily, monthly, app_ids = build(
            database, apps=args.apps, schools=args.schools, vendors=args.vendors, pair_share=args.pair_share,
            seed=args.seed,
        )  # fmt: skip
        print(describe_machine())
        print(f"database: {database.dialect}; {args.apps} apps x {args.schools} schools ({args.vendors} vendors), "
              f"{args.pair_share:.0%} of the pairs used: {daily:,} usage_total rows, {monthly:,} usage_month_total "
              f"rows, built in {time.perf_counter() - started:.1f} s")  # fmt: skip

        statements = timed_and_rolled_back(
            database, lambda session: service.issue_statements(session, period=PERIOD, now=NOW), args.repeat
        )
        print(f"(a) statements (compute + write lines + statements): {figures(statements)}  (target < 10 s)")
        ranking = timed_and_rolled_back(
            database, lambda session: rank_period(session, period=PERIOD, settings=settings, now=NOW), args.repeat
        )
        print(f"(b) rank_period: {figures(ranking)}")
        started = time.perf_counter()
        with database.session() as session:
            record = service.close_period(session, period=PERIOD, settings=settings, now=NOW)
        close_seconds = time.perf_counter() - started
        with database.read_session() as session:
            stored = stored_lines(session)
            total_fen = session.exec(select(sa.func.sum(Statement.total_fen))).one()
        late = sum(1 for row in stored if row[4] != PERIOD)
        capped = sum(1 for row in stored if row[10] > 0)
        print(f"(c) close_period {PERIOD}, commit included: {close_seconds:.2f} s; {record.statements} statements, "
              f"{len(stored):,} lines ({late:,} late-usage adjustment lines, {capped:,} capped), total "
              f"{total_fen / 100:,.2f} yuan")  # fmt: skip

        if not args.skip_previous:
            previous = timed_and_rolled_back(database, previous_statements, 1)
            with database.read_session() as session:
                expected = [
                    (line.vendor_id, line.app_id, line.school_id, line.meter, line.usage_period, line.plan_id,
                     line.unit_price_fen, line.quantity, line.gross_fen, line.cap_fen, line.cap_reduction_fen,
                     line.amount_fen, line.amount_fen, line.district_id)
                    for line in previous_statement_lines(session)
                ]  # fmt: skip
            assert stored == expected, "the stored lines differ from the previous implementation's"
            print(f"baseline, previous implementation (daily rows, line objects, SQLAlchemy inserts) on the same "
                  f"data: {previous[0]:.2f} s for the statements (compute + write lines) vs. (a) "
                  f"{min(statements):.2f} s: {previous[0] / min(statements):.1f}x; all {len(expected):,} lines "
                  f"equal to the stored ones, in the same order")  # fmt: skip
        print(f"baseline, previous close_period as measured before (100% of the pairs, 531,630 lines): "
              f"{PREVIOUS_SECONDS[database.dialect]:.1f} s")  # fmt: skip

        sample = app_ids[: args.sample_apps]
        with database.session() as session:
            session.execute(sa.text("CREATE INDEX ix_bench_usage_total_app_school ON usage_total (app_id, school_id)"))
        started = time.perf_counter()
        with database.read_session() as session:
            naive = naive_lines(session, sample)
        naive_seconds = time.perf_counter() - started
        extrapolated = naive_seconds * len(app_ids) / len(sample)
        in_sample = {
            (row[1], row[2], row[3], row[4], row[5]): (row[7], row[8], row[11]) for row in stored if row[1] in sample
        }
        assert in_sample == naive, "the naive baseline's lines differ from the statement lines"
        print(f"baseline, naive (a query per app+school pair, indexed): {len(sample)} apps x {args.schools} schools "
              f"in {naive_seconds:.2f} s -> {extrapolated:.1f} s extrapolated to {len(app_ids)} apps (compute "
              f"only); {len(naive):,} sample lines equal to the stored ones")  # fmt: skip
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--schools", type=int, default=1000)
    parser.add_argument("--vendors", type=int, default=50)
    parser.add_argument("--pair-share", type=float, default=0.4, help="share of app+school pairs with usage")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b), each rolled back")
    parser.add_argument("--sample-apps", type=int, default=20)
    parser.add_argument("--skip-previous", action="store_true", help="skip the previous implementation's run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=None, help="Admin URL of a PostgreSQL server: run on a scratch database "
                        "there (default: a fresh SQLite file in a temporary directory)")  # fmt: skip
    run(parser.parse_args())


if __name__ == "__main__":
    main()
