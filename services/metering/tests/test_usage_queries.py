"""Usage over time: what the city, districts, schools and vendors see on their charts, and nothing beyond reach."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from kit.testing import TestCity
from metering.config import MeteringSettings
from metering.testing import MeteredTestApp, add_app, add_vendor, feed_appstore, install, launched

SEP_1 = datetime(2026, 9, 1, tzinfo=UTC)
OCT_10 = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)
OCTOBER = {"from": "2026-10-01", "to": "2026-10-31"}


@dataclass
class Usage:
    homework: MeteredTestApp  # vendor A (the "developer"): 10 fen a launch, capped at 15 fen per school and month
    reading: MeteredTestApp  # vendor B (the "other_developer"): 20 fen a launch


def _usage(app: FastAPI, settings: MeteringSettings, city: TestCity) -> Usage:
    """Homework at A1 (3 launches, 2 users, 10 Oct) and B1 (1 launch, 11 Oct); reading at A2 (2 in Oct, 1 in Nov)."""
    database = app.state.database
    vendor_a = add_vendor(database, settings, developer_id=city.people["developer"].id)
    vendor_b = add_vendor(database, settings, name="书香科技", developer_id=city.people["other_developer"].id)
    homework = add_app(database, settings, vendor_id=vendor_a, price_fen=10, cap_fen=15, name="课后作业小助手")
    reading = add_app(database, settings, vendor_id=vendor_b, price_fen=20, name="阅读打卡")
    for school in (city.school_a1, city.school_b1):
        install(database, settings, app_id=homework.app_id, school_id=school, granted_at=SEP_1)
    install(database, settings, app_id=reading.app_id, school_id=city.school_a2, granted_at=SEP_1)
    hw = {"app_id": homework.app_id, "vendor_id": vendor_a}
    rd = {"app_id": reading.app_id, "vendor_id": vendor_b}
    feed_appstore(
        database, settings,
        launched(**hw, school_id=city.school_a1, at=OCT_10, user="u1"),
        launched(**hw, school_id=city.school_a1, at=OCT_10 + timedelta(hours=1), user="u1"),
        launched(**hw, school_id=city.school_a1, at=OCT_10 + timedelta(hours=2), user="u2"),
        launched(**hw, school_id=city.school_b1, at=OCT_10 + timedelta(days=1), user="u3"),
        launched(**rd, school_id=city.school_a2, at=OCT_10, user="r1"),
        launched(**rd, school_id=city.school_a2, at=OCT_10 + timedelta(days=3), user="r1"),
        launched(**rd, school_id=city.school_a2, at=datetime(2026, 11, 2, 3, tzinfo=UTC), user="r1"),
        # Not installed at the school: kept, never billable.
        launched(**rd, school_id=city.school_b1, at=OCT_10, user="r9"),
    )  # fmt: skip
    return Usage(homework=homework, reading=reading)


def _points(response: httpx.Response, *keys: str) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    assert response.status_code == 200, response.text
    return {
        (point["bucket"], *(point[key] for key in keys)): (point["quantity"], point["events"], point["amount_fen"])
        for point in response.json()["points"]
    }


async def test_anonymous(client: httpx.AsyncClient, city: TestCity) -> None:
    for path in ("/usage", f"/schools/{city.school_a1}/usage"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_city_sees_every_app_and_school_per_day_with_names_and_amounts_before_caps(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    usage = _usage(app, settings, city)
    response = await client.get(
        "/usage", params={**OCTOBER, "group_by": "app,school", "meter": "launch"}, headers=city.token("city_admin")
    )
    hw, rd = usage.homework.app_id, usage.reading.app_id
    # The homework app's cap (15 fen per school and month) is not applied here: statements apply it.
    assert _points(response, "app_id", "school_id") == {
        ("2026-10-10", hw, city.school_a1): (3, 3, 30),
        ("2026-10-11", hw, city.school_b1): (1, 1, 10),
        ("2026-10-10", rd, city.school_a2): (1, 1, 20),
        ("2026-10-13", rd, city.school_a2): (1, 1, 20),
    }
    body = response.json()
    first = body["points"][0]
    assert first["bucket"] == "2026-10-10"
    names = {(point["app_name"], point["school_name"]) for point in body["points"]}
    assert ("课后作业小助手", "春晓第一小学") in names and ("阅读打卡", "春晓第二小学") in names
    assert body["totals"] == {"quantity": 6, "events": 6, "amount_fen": 80}
    assert body["truncated"] is False


async def test_months_by_district_and_meter(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    _usage(app, settings, city)
    response = await client.get(
        "/usage",
        params={"from": "2026-10-01", "to": "2026-11-30", "granularity": "month", "group_by": "district,meter"},
        headers=city.token("city_admin"),
    )
    # Active users are recorded for every app, but billed only for apps priced by them (these are per launch).
    assert _points(response, "district_id", "meter") == {
        ("2026-10", city.district_a, "launch"): (5, 5, 70),
        ("2026-10", city.district_a, "monthly_active_user"): (3, 3, 0),
        ("2026-10", city.district_b, "launch"): (1, 1, 10),
        ("2026-10", city.district_b, "monthly_active_user"): (1, 1, 0),
        ("2026-11", city.district_a, "launch"): (1, 1, 20),
        ("2026-11", city.district_a, "monthly_active_user"): (1, 1, 0),
    }
    assert {point["district_name"] for point in response.json()["points"]} == {"春晓区", "秋实区"}


async def test_usage_not_billable_is_read_with_its_status(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    usage = _usage(app, settings, city)
    response = await client.get(
        "/usage", params={**OCTOBER, "status": "not_installed", "group_by": "app,school"},
        headers=city.token("city_admin"),
    )  # fmt: skip
    assert _points(response, "app_id", "school_id") == {
        ("2026-10-10", usage.reading.app_id, city.school_b1): (1, 1, 20),
    }


async def test_a_school_administrator_sees_their_school_only(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    _usage(app, settings, city)
    headers = city.token("a1_admin")
    response = await client.get("/usage", params={**OCTOBER, "group_by": "school", "meter": "launch"}, headers=headers)
    assert _points(response, "school_id") == {("2026-10-10", city.school_a1): (3, 3, 30)}

    for params in ({"school_id": city.school_b1}, {"district_id": city.district_b}):
        refused = await client.get("/usage", params={**OCTOBER, **params}, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("metering/outside-reach")


async def test_a_district_administrator_sees_the_district_schools(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    _usage(app, settings, city)
    headers = city.token("district_a_admin")
    response = await client.get(
        "/usage", params={**OCTOBER, "group_by": "school", "meter": "launch", "granularity": "month"}, headers=headers
    )
    assert _points(response, "school_id") == {
        ("2026-10", city.school_a1): (3, 3, 30),
        ("2026-10", city.school_a2): (2, 2, 40),
    }
    refused = await client.get("/usage", params={**OCTOBER, "school_id": city.school_b1}, headers=headers)
    assert refused.status_code == 403


async def test_a_vendor_developer_sees_their_apps_at_every_school_and_no_other_vendor(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    usage = _usage(app, settings, city)
    headers = city.token("developer")
    response = await client.get(
        "/usage", params={**OCTOBER, "group_by": "vendor,school", "meter": "launch", "granularity": "month"},
        headers=headers,
    )  # fmt: skip
    assert _points(response, "vendor_id", "school_id") == {
        ("2026-10", usage.homework.vendor_id, city.school_a1): (3, 3, 30),
        ("2026-10", usage.homework.vendor_id, city.school_b1): (1, 1, 10),
    }
    assert {point["vendor_name"] for point in response.json()["points"]} == {"星火教育科技有限公司"}
    for params in ({"vendor_id": usage.reading.vendor_id}, {"app_id": usage.reading.app_id}):
        refused = await client.get("/usage", params={**OCTOBER, **params}, headers=headers)
        assert refused.status_code == 403
    # At a school, a developer still sees their own apps only.
    school = await client.get(f"/schools/{city.school_a2}/usage", params=OCTOBER, headers=headers)
    assert school.status_code == 200
    assert school.json()["points"] == []


async def test_a_school_reads_its_own_usage_route_and_not_another_school(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    usage = _usage(app, settings, city)
    headers = city.token("a1_admin")
    response = await client.get(
        f"/schools/{city.school_a1}/usage", params={**OCTOBER, "group_by": "app", "meter": "launch"}, headers=headers
    )
    assert _points(response, "app_id") == {("2026-10-10", usage.homework.app_id): (3, 3, 30)}
    assert response.json()["school_id"] == city.school_a1

    other = await client.get(f"/schools/{city.school_b1}/usage", params=OCTOBER, headers=headers)
    assert other.status_code == 403
    unknown = await client.get("/schools/no-such-school/usage", params=OCTOBER, headers=city.token("city_admin"))
    assert unknown.status_code == 404


async def test_someone_with_no_reach_is_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    response = await client.get("/usage", headers=city.token("a1_teacher"))
    assert response.status_code == 403


async def test_the_default_is_the_current_month(client: httpx.AsyncClient, city: TestCity) -> None:
    response = await client.get("/usage", headers=city.token("city_admin"))
    assert response.status_code == 200
    body = response.json()
    assert body["from_day"].endswith("-01")
    assert body["from_day"][:7] == body["to_day"][:7]
    assert body["status"] == "billable"


async def test_bad_input(client: httpx.AsyncClient, city: TestCity) -> None:
    headers = city.token("city_admin")
    cases = [
        ({"group_by": "app,pupil"}, "query.group_by"),
        ({"from": "2026-10-31", "to": "2026-10-01"}, "query.from"),
        ({"from": "2025-01-01", "to": "2026-10-01"}, "query.to"),
        ({"from": "2026-10-32"}, "query.from"),
        ({"granularity": "week"}, "query.granularity"),
        ({"status": "paid"}, "query.status"),
        ({"meter": "clicks"}, "query.meter"),
        ({"limit": "0"}, "query.limit"),
    ]
    for params, field in cases:
        response = await client.get("/usage", params=params, headers=headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [error["field"] for error in response.json()["errors"]], (params, response.json())


async def test_too_many_points_are_truncated_but_totals_are_whole(
    app: FastAPI, settings: MeteringSettings, client: httpx.AsyncClient, city: TestCity
) -> None:
    _usage(app, settings, city)
    response = await client.get(
        "/usage", params={**OCTOBER, "meter": "launch", "limit": "2"}, headers=city.token("city_admin")
    )
    body = response.json()
    assert [point["bucket"] for point in body["points"]] == ["2026-10-10", "2026-10-11"]
    assert body["truncated"] is True
    assert body["totals"]["quantity"] == 6
