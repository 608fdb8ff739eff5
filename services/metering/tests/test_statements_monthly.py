"""Statement lines come from the aggregates by month of use: the same lines, amounts, caps and order as summing the
daily aggregates would give, in the preview and in the stored statements alike."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlmodel import Session, col, select

from kit.testing import TestCity
from metering import periods
from metering.config import MeteringSettings
from metering.projections.models import MeteredApp, MeteredOrganisation, PricePlan
from metering.statements import service
from metering.statements.models import Statement, StatementLine
from metering.testing import add_app, add_vendor, install, publish_plan
from metering.usage.models import UsageTotal
from metering.usage.service import UsageInput, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
NOV_10 = datetime(2026, 11, 10, tzinfo=UTC)


def _use(app: FastAPI, app_id: str, school_id: str, quantities: list[int], *, start: datetime, meter: str) -> None:
    """One use of each quantity, a day and some hours apart from ``start`` (so across days and month ends)."""
    with app.state.database.session() as session:
        record_usage(session, [
            UsageInput(source="gateway" if meter == "api_call" else "appstore",
                       source_event_id=f"{app_id}-{school_id}-{meter}-{start.isoformat()}-{i}", app_id=app_id,
                       school_id=school_id, meter=meter, quantity=quantity,
                       occurred_at=start + timedelta(days=i, hours=5 * i))
            for i, quantity in enumerate(quantities)
        ], max_reported_units_per_launch=1000)  # fmt: skip


def _from_daily_rows(session: Session, period: str) -> list[tuple[object, ...]]:
    """The lines as summing the daily aggregates gives them (the rules of the module's docstring, line by line)."""
    plans = {plan.id: plan for plan in session.exec(select(PricePlan))}
    vendor_of = dict(session.exec(select(MeteredApp.app_id, MeteredApp.vendor_id)).all())
    district_of = dict(
        session.exec(
            select(MeteredOrganisation.org_id, MeteredOrganisation.district_id).where(
                MeteredOrganisation.kind == "school"
            )
        ).all()
    )
    quantities: dict[tuple[str, str, str, str, int], int] = defaultdict(int)
    for row in session.exec(
        select(UsageTotal).where(UsageTotal.billing_period == period, UsageTotal.status == "billable")
    ):
        plan = plans.get(row.plan_id)
        if plan is not None and plan.unit == row.meter:
            key = (row.app_id, row.school_id, row.meter, periods.period_of_day(row.usage_day), row.plan_id)
            quantities[key] += row.quantity
    drafts = [
        service.LineDraft(app_id=app_id, vendor_id=vendor_of[app_id], school_id=school_id, meter=meter,
                          usage_period=month, plan_id=plan_id, unit_price_fen=plans[plan_id].unit_price_fen,
                          quantity=quantity, gross_fen=quantity * plans[plan_id].unit_price_fen,
                          district_id=district_of.get(school_id))
        for (app_id, school_id, meter, month, plan_id), quantity in sorted(quantities.items())
        if quantity
    ]  # fmt: skip
    service.apply_caps(drafts, period=period, caps=service.caps_at_period_end(session, period=period))
    drafts.sort(key=lambda line: line.vendor_id)  # stable: per vendor, in line order
    return [_figures(line) for line in drafts]


def _figures(line: service.LineDraft | StatementLine) -> tuple[object, ...]:
    return (
        line.app_id, line.school_id, line.district_id, line.meter, line.usage_period, line.plan_id,
        line.unit_price_fen, line.quantity, line.gross_fen, line.cap_fen, line.cap_reduction_fen, line.amount_fen,
    )  # fmt: skip


def test_lines_from_the_monthly_aggregates_equal_the_sum_of_the_days_in_preview_and_statements(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    database = app.state.database
    vendors = [add_vendor(database, settings), add_vendor(database, settings, name="别家科技")]
    capped = add_app(database, settings, vendor_id=vendors[0], price_fen=7, cap_fen=200, effective_at=JAN_1)
    # From 16 October 9 fen a launch, capped at 150 fen per school: October is capped by the new plan's cap.
    publish_plan(database, settings, app_id=capped.app_id, vendor_id=vendors[0], unit="launch", price_fen=9,
                 cap_fen=150, effective_at=datetime(2026, 10, 16, tzinfo=UTC))  # fmt: skip
    calls = add_app(database, settings, vendor_id=vendors[0], unit="api_call", price_fen=2, effective_at=JAN_1)
    other = add_app(database, settings, vendor_id=vendors[1], price_fen=13, cap_fen=100, effective_at=JAN_1)
    schools = (city.school_a1, city.school_a2, city.school_b1)
    for metered in (capped, calls, other):
        for school in schools:
            install(database, settings, app_id=metered.app_id, school_id=school, granted_at=JAN_1)
    for n, school in enumerate(schools):
        # 1 October (China time; 30 September UTC) to mid October, and the end of October into November.
        first = datetime(2026, 9, 30, 17, tzinfo=UTC)
        _use(app, capped.app_id, school, [1 + n, 2, 3, 4, 5, 6, 7, 8, 9, 1], start=first, meter="launch")
        _use(app, capped.app_id, school, [3, 4, 5 + n], start=datetime(2026, 10, 29, 12, tzinfo=UTC), meter="launch")
        _use(
            app, capped.app_id, school, [5, 5], start=datetime(2026, 10, 5, tzinfo=UTC), meter="api_call"
        )  # not billed
        _use(
            app, calls.app_id, school, [40 * (n + 1), 7, 9], start=datetime(2026, 10, 10, tzinfo=UTC), meter="api_call"
        )
    _use(app, other.app_id, city.school_b1, [1, 2, 3], start=datetime(2026, 10, 2, tzinfo=UTC), meter="launch")
    with database.session() as session:
        service.close_period(session, period="2026-09", settings=settings, now=NOV_10)
    # Late September usage arriving after September closed: an uncapped adjustment line in October.
    _use(app, other.app_id, city.school_b1, [4], start=datetime(2026, 9, 20, tzinfo=UTC), meter="launch")

    with database.session() as session:
        expected = _from_daily_rows(session, "2026-10")
        previews = [service.preview(session, vendor_id=vendor, period="2026-10")[1] for vendor in sorted(vendors)]
    assert [_figures(line) for lines in previews for line in lines] == expected
    assert any(line[10] for line in expected), "some lines are capped"
    assert any(line[4] == "2026-09" for line in expected), "an adjustment line"

    with database.session() as session:
        record = service.close_period(session, period="2026-10", settings=settings, now=NOV_10)
    with database.session() as session:
        statements = {s.id: s for s in session.exec(select(Statement).where(Statement.period == "2026-10"))}
        stored = list(
            session.exec(
                select(StatementLine)
                .where(col(StatementLine.statement_id).in_(statements))
                .order_by(col(StatementLine.id))
            )
        )
    assert record.statements == 2
    assert [_figures(line) for line in stored] == expected
    for statement in statements.values():
        mine = [line for line in stored if line.statement_id == statement.id]
        assert (statement.gross_fen, statement.cap_reduction_fen, statement.total_fen, statement.lines) == (
            sum(line.gross_fen for line in mine), sum(line.cap_reduction_fen for line in mine),
            sum(line.final_fen for line in mine), len(mine),
        )  # fmt: skip
