"""The benefit ranking (绩效): active users among installed schools' pupils and teachers, cost per active user,
trend, and apps proposed for retirement after consecutive periods below the city's thresholds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlmodel import select

from contracts.events.metering import AppBenefitFlaggedV1, AppBenefitRecoveredV1
from kit.outbox import OutboxEvent
from kit.testing import TestCity
from metering.benefit.models import AppBenefit, BenefitFlag
from metering.benefit.service import rank_period
from metering.config import MeteringSettings
from metering.statements.models import BillingPeriod
from metering.testing import MeteredTestApp, add_app, add_vendor, feed_appstore, install, launched

SEP_1 = datetime(2026, 9, 1, tzinfo=UTC)
SEP_10 = datetime(2026, 9, 10, 2, tzinfo=UTC)
OCT_10 = datetime(2026, 10, 10, 2, tzinfo=UTC)
NOV_3 = datetime(2026, 11, 3, 2, tzinfo=UTC)
NOW = datetime(2026, 11, 6, tzinfo=UTC)


@dataclass
class Ranked:
    homework: MeteredTestApp  # vendor A: at A1 (2 teachers + 8 pupils), used by 1 user in Sep, 3 in Oct
    idle: MeteredTestApp  # vendor B: at B1 (1 teacher + 1 pupil), never used, 500 fen a month per active user
    shelved: MeteredTestApp  # vendor A: a plan, never installed


def _city_of_apps(app: FastAPI, settings: MeteringSettings, city: TestCity) -> Ranked:
    database = app.state.database
    for number in range(8):
        city.add_person(f"a1_pupil{number}", kind="student", name=f"学生{number}", org_id=city.school_a1)
    city.add_person("b1_pupil", kind="student", name="学生", org_id=city.school_b1)
    vendor_a = add_vendor(database, settings, developer_id=city.people["developer"].id)
    vendor_b = add_vendor(database, settings, name="书香科技", developer_id=city.people["other_developer"].id)
    homework = add_app(database, settings, vendor_id=vendor_a, price_fen=10, cap_fen=40, name="课后作业小助手")
    idle = add_app(database, settings, vendor_id=vendor_b, unit="monthly_active_user", price_fen=500, name="阅读打卡")
    shelved = add_app(database, settings, vendor_id=vendor_a, name="未安装的应用")
    install(database, settings, app_id=homework.app_id, school_id=city.school_a1, granted_at=SEP_1)
    install(database, settings, app_id=idle.app_id, school_id=city.school_b1, granted_at=SEP_1)
    hw = {"app_id": homework.app_id, "vendor_id": vendor_a, "school_id": city.school_a1}
    feed_appstore(
        database, settings,
        launched(**hw, at=SEP_10, user="u1"),
        *(launched(**hw, at=OCT_10 + timedelta(hours=hour), user=user)
          for hour, user in enumerate(["u1", "u1", "u2", "u3", "u3"])),
        # A parent's launch is billed but is not a pupil or teacher of the school.
        launched(**hw, at=OCT_10, user="p1", role="parent"),
    )  # fmt: skip
    return Ranked(homework=homework, idle=idle, shelved=shelved)


def _rank(app: FastAPI, settings: MeteringSettings, *periods: str) -> None:
    for period in periods:
        with app.state.database.session() as session:
            rank_period(session, period=period, settings=settings, now=NOW)


def test_figures_of_a_period(app: FastAPI, settings: MeteringSettings, city: TestCity) -> None:
    apps = _city_of_apps(app, settings, city)
    _rank(app, settings, "2026-09", "2026-10")
    with app.state.database.session() as session:
        rows = {row.app_id: row for row in session.exec(select(AppBenefit).where(AppBenefit.period == "2026-10"))}
    homework = rows[apps.homework.app_id]
    assert (homework.installed_schools, homework.population, homework.active_users) == (1, 10, 3)
    assert homework.active_rate == 0.3
    # 6 launches at 10 fen = 60, capped at 40 fen for the school this month; 40 / 3 users = 13.33 -> 13.
    assert (homework.amount_fen, homework.cost_per_active_user_fen) == (40, 13)
    assert homework.previous_active_rate == 0.1
    assert homework.trend is not None and abs(homework.trend - 0.2) < 1e-9
    assert not homework.below_threshold

    idle = rows[apps.idle.app_id]
    assert (idle.installed_schools, idle.population, idle.active_users, idle.active_rate) == (1, 2, 0, 0.0)
    assert (idle.amount_fen, idle.cost_per_active_user_fen) == (0, None)
    assert idle.below_threshold and idle.reasons == "low_active_rate"

    shelved = rows[apps.shelved.app_id]
    assert (shelved.installed_schools, shelved.population, shelved.active_rate) == (0, 0, None)
    assert not shelved.below_threshold


def test_an_app_below_the_thresholds_for_two_periods_is_flagged_once(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    _rank(app, settings, "2026-09")
    with app.state.database.session() as session:
        assert session.exec(select(BenefitFlag)).all() == []  # one period below is not yet enough
    _rank(app, settings, "2026-10", "2026-10")  # ranking again changes nothing

    with app.state.database.session() as session:
        flags = session.exec(select(BenefitFlag)).all()
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == AppBenefitFlaggedV1.event_type())
        ).all()
    assert [(flag.app_id, flag.period, flag.periods, flag.reasons) for flag in flags] == [
        (apps.idle.app_id, "2026-10", "2026-09,2026-10", "low_active_rate")
    ]
    assert len(events) == 1
    assert apps.idle.app_id in events[0].envelope
    assert '"periods":["2026-09","2026-10"]' in events[0].envelope


async def test_a_flagged_app_that_ranks_within_the_thresholds_again_is_withdrawn_once(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    _rank(app, settings, "2026-09", "2026-10")
    idle = {"app_id": apps.idle.app_id, "vendor_id": apps.idle.vendor_id, "school_id": city.school_b1}
    feed_appstore(app.state.database, settings, launched(**idle, at=NOV_3, user="b1_reader"))
    _rank(app, settings, "2026-11", "2026-11")  # ranking again withdraws nothing more

    with app.state.database.session() as session:
        november = session.exec(
            select(AppBenefit).where(AppBenefit.period == "2026-11", AppBenefit.app_id == apps.idle.app_id)
        ).one()
        flag = session.exec(select(BenefitFlag).where(BenefitFlag.app_id == apps.idle.app_id)).one()
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == AppBenefitRecoveredV1.event_type())
        ).all()
    assert (november.active_rate, november.below_threshold) == (0.5, False)  # 1 of B1's 2 people, 500 fen each
    assert (flag.period, flag.state, flag.recovered_period) == ("2026-10", "recovered", "2026-11")
    assert len(events) == 1
    recovered = AppBenefitRecoveredV1.model_validate(json.loads(events[0].envelope)["data"])
    assert (recovered.app_id, recovered.flagged_period, recovered.period) == (apps.idle.app_id, "2026-10", "2026-11")
    assert (recovered.active_rate, recovered.cost_per_active_user_fen) == (0.5, 500)

    open_flags = await client.get("/benefit/flags", headers=city.token("city_admin"))
    assert open_flags.json()["items"] == []
    withdrawn = await client.get("/benefit/flags", params={"state": "recovered"}, headers=city.token("city_admin"))
    assert [(item["app_id"], item["state"], item["recovered_period"]) for item in withdrawn.json()["items"]] == [
        (apps.idle.app_id, "recovered", "2026-11")
    ]
    wrong = await client.get("/benefit/flags", params={"state": "dismissed"}, headers=city.token("city_admin"))
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")


async def test_anonymous(client: httpx.AsyncClient) -> None:
    for path in ("/benefit", "/benefit/flags"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_city_reads_the_stored_ranking_of_the_last_closed_period(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    _rank(app, settings, "2026-09", "2026-10")
    with app.state.database.session() as session:
        session.add(BillingPeriod(period="2026-10", closed_at=NOW))

    response = await client.get("/benefit", headers=city.token("city_admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["period"], body["stored"]) == ("2026-10", True)
    assert body["thresholds"] == {
        "min_active_rate": settings.benefit_min_active_rate,
        "max_cost_per_active_user_fen": settings.benefit_max_cost_per_active_user_fen,
        "flag_after_periods": settings.benefit_flag_after_periods,
    }
    ranking = [(item["rank"], item["app_id"], item["active_rate"]) for item in body["items"]]
    assert ranking == [(1, apps.homework.app_id, 0.3), (2, apps.idle.app_id, 0.0), (3, apps.shelved.app_id, None)]
    first = body["items"][0]
    assert (first["app_name"], first["vendor_name"]) == ("课后作业小助手", "星火教育科技有限公司")
    assert (first["amount_fen"], first["cost_per_active_user_fen"], first["reasons"]) == (40, 13, [])
    assert body["items"][1]["reasons"] == ["low_active_rate"]

    flags = await client.get("/benefit/flags", headers=city.token("city_admin"))
    assert flags.status_code == 200
    assert [(item["app_id"], item["periods"], item["state"], item["app_name"]) for item in flags.json()["items"]] == [
        (apps.idle.app_id, ["2026-09", "2026-10"], "open", "阅读打卡")
    ]


async def test_a_period_not_ranked_yet_is_computed_live_and_not_stored(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    response = await client.get("/benefit", params={"period": "2026-10"}, headers=city.token("city_admin"))
    assert response.status_code == 200
    body = response.json()
    assert body["stored"] is False
    assert body["items"][0]["app_id"] == apps.homework.app_id
    assert body["items"][0]["active_users"] == 3
    with app.state.database.session() as session:
        assert session.exec(select(AppBenefit)).all() == []


async def test_a_vendor_developer_sees_their_own_apps_only(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    _rank(app, settings, "2026-09", "2026-10")

    mine = await client.get("/benefit", params={"period": "2026-10"}, headers=city.token("developer"))
    assert [(item["rank"], item["app_id"]) for item in mine.json()["items"]] == [
        (1, apps.homework.app_id), (3, apps.shelved.app_id),
    ]  # fmt: skip
    no_flags = await client.get("/benefit/flags", headers=city.token("developer"))
    assert no_flags.json()["items"] == []

    other = await client.get("/benefit/flags", headers=city.token("other_developer"))
    assert [item["app_id"] for item in other.json()["items"]] == [apps.idle.app_id]


async def test_school_and_district_administrators_are_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    for person in ("a1_admin", "district_a_admin"):
        for path in ("/benefit", "/benefit/flags"):
            response = await client.get(path, headers=city.token(person))
            assert response.status_code == 403, (person, path)


async def test_bad_input(client: httpx.AsyncClient, city: TestCity) -> None:
    headers = city.token("city_admin")
    for period in ("2026-13", "October", "2999-01"):
        response = await client.get("/benefit", params={"period": period}, headers=headers)
        assert response.status_code == 422, period
        assert "query.period" in [error["field"] for error in response.json()["errors"]]
    response = await client.get("/benefit/flags", params={"limit": "0"}, headers=headers)
    assert response.status_code == 422


def test_a_cost_per_active_user_above_the_threshold_is_a_reason(
    app: FastAPI, settings: MeteringSettings, city: TestCity
) -> None:
    apps = _city_of_apps(app, settings, city)
    strict = settings.model_copy(update={"benefit_max_cost_per_active_user_fen": 12, "benefit_flag_after_periods": 1})
    _rank(app, strict, "2026-10")
    with app.state.database.session() as session:
        homework = session.get(AppBenefit, ("2026-10", apps.homework.app_id))
        flag = session.exec(select(BenefitFlag).where(BenefitFlag.app_id == apps.homework.app_id)).one()
    assert homework is not None and homework.reasons == "high_cost_per_active_user"
    assert (flag.periods, flag.cost_per_active_user_fen) == ("2026-10", 13)


def test_the_amount_is_capped_like_the_statement_and_late_usage_is_added_uncapped(
    app: FastAPI, settings: MeteringSettings
) -> None:
    from metering.benefit.service import compute_period

    database = app.state.database
    vendor = add_vendor(database, settings)
    capped = add_app(database, settings, vendor_id=vendor, price_fen=10, cap_fen=100)
    start = datetime(2026, 8, 1, tzinfo=UTC)
    install(database, settings, app_id=capped.app_id, school_id="school-x", granted_at=start)
    with database.session() as session:
        session.add(BillingPeriod(period="2026-09", closed_at=datetime(2026, 10, 6, tzinfo=UTC)))
    october = datetime(2026, 10, 15, 2, tzinfo=UTC)
    september = datetime(2026, 9, 20, 2, tzinfo=UTC)
    feed_appstore(
        database, settings,
        *[launched(app_id=capped.app_id, vendor_id=vendor, school_id="school-x", at=october + timedelta(minutes=i))
          for i in range(15)],  # 150 fen, capped to 100
        *[launched(app_id=capped.app_id, vendor_id=vendor, school_id="school-x", at=september + timedelta(minutes=i))
          for i in range(3)],  # September closed: billed in October as late usage, 30 fen, not capped again
    )  # fmt: skip
    with database.session() as session:
        figures = {row.app_id: row for row in compute_period(session, period="2026-10", settings=settings, now=october)}
    assert figures[capped.app_id].amount_fen == 130
