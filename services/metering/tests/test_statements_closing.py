"""Closing a period: lines from the aggregates, prices by the plan of the time, caps per school, events, and the
worker that closes periods on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from kit.outbox import OutboxEvent
from kit.testing import TestCity
from metering.config import MeteringSettings
from metering.statements import service
from metering.statements.errors import PeriodAlreadyClosed, PeriodNotEnded
from metering.statements.models import BillingPeriod, Statement, StatementLine
from metering.statements.worker import PeriodCloser
from metering.testing import add_app, add_vendor, install, publish_plan
from metering.usage.service import UsageInput, record_usage

OCT_3 = datetime(2026, 10, 3, 2, 0, tzinfo=UTC)
NOV_10 = datetime(2026, 11, 10, tzinfo=UTC)


def _use(app: FastAPI, app_id: str, school_id: str, count: int, *, at: datetime, meter: str = "launch") -> None:
    with app.state.database.session() as session:
        record_usage(session, [
            UsageInput(source="gateway" if meter == "api_call" else "appstore",
                       source_event_id=f"{app_id}-{school_id}-{meter}-{at.isoformat()}-{i}", app_id=app_id,
                       school_id=school_id, meter=meter, quantity=1, occurred_at=at + timedelta(minutes=i))
            for i in range(count)
        ], max_reported_units_per_launch=100)  # fmt: skip


def test_the_cap_reduction_is_split_by_largest_remainder_and_adds_up_exactly() -> None:
    assert service.split_reduction(45, [70, 75]) == [22, 23]
    assert service.split_reduction(10, [1, 1, 1]) == [4, 3, 3]
    assert service.split_reduction(0, [5, 5]) == [0, 0]
    shares = service.split_reduction(999, [333, 334, 335, 1])
    assert sum(shares) == 999 and all(0 <= s <= w for s, w in zip(shares, [333, 334, 335, 1], strict=True))


def test_closing_issues_one_statement_per_vendor_priced_by_plan_and_capped_per_school(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    other_vendor = add_vendor(database, settings, name="别家科技")
    metered = add_app(database, settings, vendor_id=vendor, price_fen=10, effective_at=datetime(2026, 1, 1, tzinfo=UTC))
    # From 15 October a new plan: 15 fen per launch, at most 100 fen per school and month.
    publish_plan(database, settings, app_id=metered.app_id, vendor_id=vendor, unit="launch", price_fen=15,
                 cap_fen=100, effective_at=datetime(2026, 10, 15, tzinfo=UTC))  # fmt: skip
    other = add_app(database, settings, vendor_id=other_vendor, unit="api_call", price_fen=2)
    for school in (city.school_a1, city.school_a2):
        install(
            database, settings, app_id=metered.app_id, school_id=school, granted_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    install(
        database, settings, app_id=other.app_id, school_id=city.school_b1, granted_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    _use(app, metered.app_id, city.school_a1, 7, at=OCT_3)  # 7 x 10 = 70
    _use(app, metered.app_id, city.school_a1, 5, at=datetime(2026, 10, 20, tzinfo=UTC))  # 5 x 15 = 75
    _use(app, metered.app_id, city.school_a2, 3, at=OCT_3)  # 30, under the cap
    _use(app, metered.app_id, city.school_a1, 4, at=OCT_3, meter="api_call")  # not its plan's unit: not billed
    _use(app, other.app_id, city.school_b1, 9, at=OCT_3, meter="api_call")  # 18

    with database.session() as session, pytest.raises(PeriodNotEnded):
        service.close_period(session, period="2026-10", settings=settings, now=datetime(2026, 10, 31, tzinfo=UTC))
    with database.session() as session:
        record = service.close_period(session, period="2026-10", settings=settings, now=NOV_10)
        assert record.statements == 2
    with database.session() as session, pytest.raises(PeriodAlreadyClosed):
        service.close_period(session, period="2026-10", settings=settings, now=NOV_10)

    with database.session() as session:
        statements = {s.vendor_id: s for s in session.exec(select(Statement))}
        lines = list(
            session.exec(select(StatementLine).where(StatementLine.statement_id == statements[vendor].id)
                         .order_by(col(StatementLine.school_id), col(StatementLine.unit_price_fen)))
        )  # fmt: skip
        events = [e.event_type for e in session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id)))]
    a1 = [line for line in lines if line.school_id == city.school_a1]
    assert [(line.meter, line.quantity, line.unit_price_fen, line.gross_fen) for line in a1] == [
        ("launch", 7, 10, 70), ("launch", 5, 15, 75),
    ]  # fmt: skip
    # 145 fen capped to 100: 45 split 70:75 -> 21.7 and 23.3 -> 22 and 23 (largest remainder).
    assert [(line.cap_fen, line.cap_reduction_fen, line.amount_fen) for line in a1] == [(100, 22, 48), (100, 23, 52)]
    a2 = [line for line in lines if line.school_id == city.school_a2]
    assert [(line.gross_fen, line.cap_reduction_fen, line.final_fen, line.district_id) for line in a2] == [
        (30, 0, 30, city.district_a)
    ]
    mine = statements[vendor]
    assert (mine.state, mine.gross_fen, mine.cap_reduction_fen, mine.total_fen, mine.lines) == (
        "issued", 175, 45, 130, 3,
    )  # fmt: skip
    assert statements[other_vendor].total_fen == 18
    assert events.count("edu.metering.statement.issued.v1") == 2
    assert events.count("edu.metering.period.closed.v1") == 1


def test_usage_arriving_after_its_month_closed_bills_next_month_as_an_uncapped_adjustment(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor, price_fen=10, cap_fen=50)
    install(
        database, settings, app_id=metered.app_id, school_id=city.school_a1, granted_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    _use(app, metered.app_id, city.school_a1, 6, at=OCT_3)
    with database.session() as session:
        service.close_period(session, period="2026-10", settings=settings, now=NOV_10)
    _use(
        app, metered.app_id, city.school_a1, 8, at=OCT_3 + timedelta(days=1)
    )  # late: October usage, now billed in November
    _use(app, metered.app_id, city.school_a1, 2, at=NOV_10)

    with database.session() as session:
        lines = service.compute_statement_lines(session, period="2026-11")[vendor]
    assert [(line.usage_period, line.quantity, line.gross_fen, line.cap_fen, line.amount_fen) for line in lines] == [
        ("2026-10", 8, 80, None, 80),  # October's cap applied when October closed
        ("2026-11", 2, 20, 50, 20),
    ]


def test_the_worker_closes_periods_whose_grace_passed_once_and_only_once(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor)
    install(
        database, settings, app_id=metered.app_id, school_id=city.school_a1, granted_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    _use(app, metered.app_id, city.school_a1, 3, at=OCT_3)
    closer = PeriodCloser(database, settings)

    # 3 November: October's grace (5 days) is still running.
    assert closer.run_once(datetime(2026, 11, 3, tzinfo=UTC)) == ["2026-08", "2026-09"]
    assert closer.run_once(datetime(2026, 11, 6, tzinfo=UTC)) == ["2026-10"]
    restarted = PeriodCloser(database, settings)
    assert restarted.run_once(datetime(2026, 11, 7, tzinfo=UTC)) == []
    with database.session() as session:
        assert session.get(BillingPeriod, "2026-10") is not None
        assert [s.total_fen for s in session.exec(select(Statement).where(Statement.period == "2026-10"))] == [30]
