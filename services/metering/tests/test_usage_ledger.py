"""The usage ledger: each event counted once, priced by the plan of its time, billable only where installed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlmodel import func, select

from metering.config import MeteringSettings
from metering.testing import add_app, add_vendor, feed_appstore, install, launched, publish_plan, uninstall
from metering.usage.models import UsageEvent, UsageMonthTotal, UsageTotal
from metering.usage.service import UsageInput, record_usage

OCT_10 = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)


def _totals(app: FastAPI, app_id: str) -> dict[tuple[str, str, int], int]:
    with app.state.database.session() as session:
        rows = session.exec(select(UsageTotal).where(UsageTotal.app_id == app_id)).all()
    found: dict[tuple[str, str, int], int] = {}
    for row in rows:
        key = (row.meter, row.status, row.plan_id)
        found[key] = found.get(key, 0) + row.quantity
    return {key: value for key, value in found.items() if value}


def test_a_launch_sent_twice_counts_once_and_makes_one_active_user(app: FastAPI, settings: MeteringSettings) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor)
    school = "school-1"
    install(database, settings, app_id=metered.app_id, school_id=school, granted_at=OCT_10 - timedelta(days=1))
    first = launched(app_id=metered.app_id, vendor_id=vendor, school_id=school, at=OCT_10, user="u1")
    again = launched(app_id=metered.app_id, vendor_id=vendor, school_id=school, at=OCT_10 + timedelta(hours=1),
                     user="u1")  # fmt: skip
    feed_appstore(database, settings, first, again)
    feed_appstore(database, settings, first)  # re-sent later: already counted

    totals = _totals(app, metered.app_id)
    assert {(meter, status): quantity for (meter, status, _plan), quantity in totals.items()} == {
        ("launch", "billable"): 2,
        ("monthly_active_user", "billable"): 1,
    }


def test_use_where_the_app_was_not_installed_at_the_time_is_kept_but_not_billable(
    app: FastAPI, settings: MeteringSettings
) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor)
    installation = install(database, settings, app_id=metered.app_id, school_id="s1", granted_at=OCT_10)
    uninstall(database, settings, installation_id=installation, app_id=metered.app_id, school_id="s1",
              removed_at=OCT_10 + timedelta(days=1))  # fmt: skip
    feed_appstore(
        database, settings,
        launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10 - timedelta(minutes=1)),
        launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10 + timedelta(hours=3)),
        launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10 + timedelta(days=2)),
    )  # fmt: skip
    with database.session() as session:
        statuses = sorted(
            (e.status, e.reason) for e in session.exec(select(UsageEvent).where(UsageEvent.meter == "launch"))
        )
    assert statuses == [("billable", None), ("not_installed", "not_installed_at_time"),
                        ("not_installed", "not_installed_at_time")]  # fmt: skip


def test_the_price_is_the_plan_in_force_when_the_app_was_used(app: FastAPI, settings: MeteringSettings) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor, price_fen=10, effective_at=datetime(2026, 1, 1, tzinfo=UTC))
    publish_plan(database, settings, app_id=metered.app_id, vendor_id=vendor, unit="launch", price_fen=15,
                 effective_at=OCT_10 + timedelta(days=5))  # fmt: skip
    install(database, settings, app_id=metered.app_id, school_id="s1", granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    with database.session() as session:
        record_usage(session, [
            UsageInput(source="appstore", source_event_id=f"l{i}", app_id=metered.app_id, school_id="s1",
                       meter="launch", quantity=1, occurred_at=OCT_10 + timedelta(days=i)) for i in range(10)
        ], max_reported_units_per_launch=100)  # fmt: skip
    with database.session() as session:
        plans = sorted(e.plan_id for e in session.exec(select(UsageEvent)))
    assert len(set(plans)) == 2
    assert plans.count(min(plans)) == 5


def test_usage_before_its_installation_event_arrived_is_released_when_it_does(
    app: FastAPI, settings: MeteringSettings
) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor)
    feed_appstore(database, settings, launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10))
    assert _totals(app, metered.app_id) == {("launch", "not_installed", 1): 1} or all(
        status == "not_installed" for (_m, status, _p) in _totals(app, metered.app_id)
    )
    install(database, settings, app_id=metered.app_id, school_id="s1", granted_at=OCT_10 - timedelta(days=1))
    totals = _totals(app, metered.app_id)
    assert {(meter, status) for (meter, status, _plan) in totals} == {
        ("launch", "billable"), ("monthly_active_user", "billable"),
    }  # fmt: skip


def test_the_monthly_rollup_always_equals_the_daily_totals(app: FastAPI, settings: MeteringSettings) -> None:
    database = app.state.database
    vendor = add_vendor(database, settings)
    metered = add_app(database, settings, vendor_id=vendor)
    feed_appstore(database, settings, launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10))
    install(database, settings, app_id=metered.app_id, school_id="s1", granted_at=OCT_10 - timedelta(days=1))
    feed_appstore(
        database, settings,
        *[launched(app_id=metered.app_id, vendor_id=vendor, school_id="s1", at=OCT_10 + timedelta(days=day, hours=20),
                   user=f"u{day % 4}") for day in range(30)],
    )  # fmt: skip
    with database.session() as session:
        daily = session.exec(
            select(UsageTotal.meter, UsageTotal.status, func.sum(UsageTotal.quantity), func.sum(UsageTotal.events))
            .group_by(UsageTotal.meter, UsageTotal.status)
        ).all()  # fmt: skip
        monthly = session.exec(
            select(UsageMonthTotal.meter, UsageMonthTotal.status, func.sum(UsageMonthTotal.quantity),
                   func.sum(UsageMonthTotal.events))
            .group_by(UsageMonthTotal.meter, UsageMonthTotal.status)
        ).all()  # fmt: skip
        months = set(session.exec(select(UsageMonthTotal.usage_period)))
    assert sorted(daily) == sorted(monthly)
    assert ("launch", "billable", 31, 31) in [tuple(row) for row in monthly]
    assert months == {"2026-10", "2026-11"}  # the 22nd day on: November in China (UTC+8)
