"""Vendors report units their apps counted, in CloudEvents batches: each event is judged on its own, the valid
ones are counted once, the bad ones are rejected with a problem pointing into the event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from kit.testing import TestCity
from metering import periods
from metering.config import MeteringSettings
from metering.statements.models import BillingPeriod
from metering.testing import MeteredTestApp, add_app, add_vendor, feed_appstore, install, launched
from metering.usage.models import UsageEvent, UsageTotal

NOW = datetime.now(UTC)
RECENT = NOW - timedelta(hours=2)
URL = "/usage-reports"
PROBLEMS = "https://errors.edu-platform.cn/metering/"


@dataclass
class Setting:
    vendor_id: str
    app: MeteredTestApp  # priced per reported unit, installed at school A1 and B1
    launch_app: MeteredTestApp  # the same vendor's app priced per launch
    other_app: MeteredTestApp  # another vendor's reported-unit app
    headers: dict[str, str]


@pytest.fixture
def setting(app: FastAPI, settings: MeteringSettings, city: TestCity) -> Setting:
    database = app.state.database
    vendor = add_vendor(database, settings, developer_id=city.people["developer"].id)
    other_vendor = add_vendor(database, settings, name="别家科技有限公司")
    reporting = add_app(database, settings, vendor_id=vendor, unit="reported_unit", price_fen=50)
    launch_priced = add_app(database, settings, vendor_id=vendor, unit="launch", name="口算练习")
    other = add_app(database, settings, vendor_id=other_vendor, unit="reported_unit", name="别家作文批改")
    for school in (city.school_a1, city.school_b1):
        install(database, settings, app_id=reporting.app_id, school_id=school, granted_at=NOW - timedelta(days=600))
    headers = city.app_token(scopes="metering.report", schools=[], app_id=reporting.app_id)
    return Setting(vendor_id=vendor, app=reporting, launch_app=launch_priced, other_app=other, headers=headers)


def report(
    event_id: str, *, school_id: str, quantity: Any = 3, at: datetime = RECENT, launch_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:  # fmt: skip
    """One usage-report event as a vendor's app sends it."""
    body: dict[str, Any] = {"school_id": school_id, "quantity": quantity, **data}
    if launch_id is not None:
        body["launch_id"] = launch_id
    return {
        "specversion": "1.0", "id": event_id, "source": "/apps/homework-helper",
        "type": "edu.metering.unit.reported.v1", "time": at.isoformat(), "datacontenttype": "application/json",
        "data": body,
    }  # fmt: skip


def see_launch(
    app: FastAPI, settings: MeteringSettings, setting: Setting, school_id: str, at: datetime = RECENT
) -> str:
    launch_id = str(uuid.uuid4())
    feed_appstore(
        app.state.database, settings,
        launched(app_id=setting.app.app_id, vendor_id=setting.vendor_id, school_id=school_id, at=at,
                 launch_id=launch_id),
    )  # fmt: skip
    return launch_id


async def send(client: httpx.AsyncClient, setting: Setting, events: list[Any]) -> dict[str, Any]:
    response = await client.post(
        URL, json=events, headers={**setting.headers, "Content-Type": "application/cloudevents-batch+json"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def vendor_rows(app: FastAPI, app_id: str | None = None) -> list[UsageEvent]:
    with app.state.database.session() as session:
        query = select(UsageEvent).where(UsageEvent.source == "vendor")
        if app_id is not None:
            query = query.where(UsageEvent.app_id == app_id)
        return list(session.exec(query.order_by(col(UsageEvent.id))))


def reported_total(app: FastAPI, app_id: str) -> dict[str, int]:
    with app.state.database.session() as session:
        rows = session.exec(
            select(UsageTotal).where(UsageTotal.app_id == app_id, UsageTotal.meter == "reported_unit")
        ).all()
    found: dict[str, int] = {}
    for row in rows:
        found[row.status] = found.get(row.status, 0) + row.quantity
    return {status: quantity for status, quantity in found.items() if quantity}


# ------------------------------------------------------------------------------------------------ who may report


async def test_anonymous(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=[report("e1", school_id="s")])
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_persons_token_cannot_report(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    for person in ("developer", "city_admin"):
        response = await client.post(
            URL, json=[report("e1", school_id=city.school_a1)], headers=city.token(person, "metering.report")
        )
        assert response.status_code == 403, person
        assert "个人令牌" in response.json()["detail"]
    assert vendor_rows(app) == []


async def test_an_app_token_without_the_report_scope_is_refused(
    client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    headers = city.app_token(scopes="metering.read", schools=[], app_id=setting.app.app_id)
    response = await client.post(URL, json=[report("e1", school_id=city.school_a1)], headers=headers)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "metering.report"


async def test_reporting_for_another_vendors_app_is_rejected(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    # Through the app_id in the data, and through a token of the other vendor's app reporting for ours.
    body = await send(client, setting, [report("e1", school_id=city.school_a1, app_id=setting.other_app.app_id)])
    assert body["rejected"] == 1
    assert body["results"][0]["problem"]["type"] == PROBLEMS + "report-app-of-other-vendor"
    assert body["results"][0]["problem"]["pointer"] == "/0/data/app_id"

    other_headers = city.app_token(scopes="metering.report", schools=[], app_id=setting.other_app.app_id)
    response = await client.post(
        URL, json=[report("e2", school_id=city.school_a1, app_id=setting.app.app_id)], headers=other_headers
    )
    assert response.json()["results"][0]["outcome"] == "rejected"
    assert vendor_rows(app) == []


# ---------------------------------------------------------------------------------------------- the whole request


async def test_a_body_that_is_not_a_batch_is_refused_whole(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    one = report("e1", school_id=city.school_a1)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"json": one}, 422),  # a single event, not an array
        ({"json": []}, 422),
        ({"json": [one] * 1001}, 422),
        ({"content": b"[{", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b"e1,3", "headers": {"Content-Type": "text/csv"}}, 415),
    ]
    for kwargs, status in cases:
        headers = {**setting.headers, **kwargs.pop("headers", {})}
        response = await client.post(URL, headers=headers, **kwargs)
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert "；" in problem["detail"]  # Chinese first, then English
        if status == 422:
            assert problem["errors"][0]["field"] == "body"
    assert vendor_rows(app) == []


# ------------------------------------------------------------------------------------------ event by event


async def test_bad_events_are_rejected_with_pointers_and_the_valid_ones_counted(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    closed = periods.previous_period(periods.previous_period(periods.period_of(NOW)))
    with app.state.database.session() as session:
        session.add(BillingPeriod(period=closed, closed_at=NOW))
    launch_id = see_launch(app, settings, setting, city.school_a1)
    a1 = city.school_a1
    missing = {name: {k: v for k, v in report(f"m-{name}", school_id=a1).items() if k != name}
               for name in ("id", "specversion", "type", "time")}  # fmt: skip
    batch: list[Any] = [
        report("ok-launch", school_id=a1, quantity=4, launch_id=launch_id, unit="一份批改的作业"),  # 0
        report("ok-no-launch", school_id=city.school_b1, quantity=2),  # 1
        missing["id"],  # 2
        missing["specversion"],  # 3
        missing["type"],  # 4
        missing["time"],  # 5
        {**report("wrong-type", school_id=a1), "type": "com.example.thing"},  # 6
        report("zero", school_id=a1, quantity=0),  # 7
        report("negative", school_id=a1, quantity=-5),  # 8
        report("absurd", school_id=a1, quantity=1_000_001),  # 9
        "not an event",  # 10
        report("unknown-app", school_id=a1, app_id=str(uuid.uuid4())),  # 11
        report("other-vendor", school_id=a1, app_id=setting.other_app.app_id),  # 12
        report("launch-priced", school_id=a1, app_id=setting.launch_app.app_id),  # 13
        report("wrong-unit", school_id=a1, unit="一次点击"),  # 14
        report("unknown-school", school_id=str(uuid.uuid4())),  # 15
        report("district-not-school", school_id=city.district_a),  # 16
        report("future", school_id=a1, at=NOW + timedelta(hours=1)),  # 17
        report("closed", school_id=a1, at=periods.period_start(closed) + timedelta(days=3)),  # 18
        report("too-old", school_id=a1, at=NOW - timedelta(days=420)),  # 19
        {**report("no-source", school_id=a1), "source": ""},  # 20
        {**report("bad-time", school_id=a1), "time": "yesterday"},  # 21
        report("naive-time", school_id=a1, at=RECENT.replace(tzinfo=None)),  # 22
        report("extra-field", school_id=a1, price_fen=1),  # 23
    ]
    expected: dict[int, tuple[str, str]] = {
        2: ("report-invalid-event", "/2/id"),
        3: ("report-invalid-event", "/3/specversion"),
        4: ("report-invalid-event", "/4/type"),
        5: ("report-invalid-event", "/5/time"),
        6: ("report-invalid-event", "/6/type"),
        7: ("report-invalid-event", "/7/data/quantity"),
        8: ("report-invalid-event", "/8/data/quantity"),
        9: ("report-invalid-event", "/9/data/quantity"),
        10: ("report-invalid-event", "/10"),
        11: ("report-unknown-app", "/11/data/app_id"),
        12: ("report-app-of-other-vendor", "/12/data/app_id"),
        13: ("report-app-not-priced-in-reported-units", "/13/data/app_id"),
        14: ("report-unit-mismatch", "/14/data/unit"),
        15: ("report-unknown-school", "/15/data/school_id"),
        16: ("report-unknown-school", "/16/data/school_id"),
        17: ("report-time-in-future", "/17/time"),
        18: ("report-period-closed", "/18/time"),
        19: ("report-time-too-old", "/19/time"),
        20: ("report-invalid-event", "/20/source"),
        21: ("report-invalid-event", "/21/time"),
        22: ("report-invalid-event", "/22/time"),
        23: ("report-invalid-event", "/23/data/price_fen"),
    }

    body = await send(client, setting, batch)

    assert (body["accepted"], body["held"], body["duplicates"], body["rejected"]) == (1, 1, 0, len(expected))
    results = body["results"]
    assert [result["index"] for result in results] == list(range(len(batch)))
    assert results[0]["outcome"] == "accepted" and results[0]["usage_period"] == periods.period_of(RECENT)
    assert results[1]["outcome"] == "held"
    assert results[1]["reason"] == "no_launch_given"
    for index, (slug, pointer) in expected.items():
        result = results[index]
        assert result["outcome"] == "rejected", (index, result)
        problem = result["problem"]
        assert (problem["type"], problem["pointer"]) == (PROBLEMS + slug, pointer), (index, problem)
        assert problem["title"] and "；" in problem["detail"], problem
    assert results[2]["id"] is None and results[7]["id"] == "zero"
    assert "quantity" in results[9]["problem"]["detail"] and "1,000,000" in results[9]["problem"]["detail"]
    assert results[18]["problem"]["detail"] == f"{closed} 月已结算，不能再上报；period {closed} is closed."
    assert "reported_unit" in results[13]["problem"]["detail"]
    assert "一份批改的作业" in results[14]["problem"]["detail"]

    rows = vendor_rows(app)
    assert [(row.source_event_id, row.quantity, row.status) for row in rows] == [
        (f"{setting.app.app_id}:ok-launch", 4, "billable"),
        (f"{setting.app.app_id}:ok-no-launch", 2, "held"),
    ]
    assert reported_total(app, setting.app.app_id) == {"billable": 4, "held": 2}


async def test_a_re_sent_event_is_a_duplicate_and_counts_once(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    launch_id = see_launch(app, settings, setting, city.school_a1)
    first = await send(client, setting, [
        report("r1", school_id=city.school_a1, quantity=5, launch_id=launch_id),
        report("r2", school_id=city.school_a1, quantity=7),
        report("r2", school_id=city.school_a1, quantity=7),  # the same id twice in one batch
    ])  # fmt: skip
    assert [result["outcome"] for result in first["results"]] == ["accepted", "held", "duplicate"]

    again = await send(client, setting, [
        report("r1", school_id=city.school_a1, quantity=5, launch_id=launch_id),
        report("r2", school_id=city.school_a1, quantity=70),  # a different quantity does not make it new
        report("r3", school_id=city.school_a1, quantity=1, launch_id=launch_id),
    ])  # fmt: skip
    assert [result["outcome"] for result in again["results"]] == ["duplicate", "duplicate", "accepted"]
    assert (again["accepted"], again["duplicates"]) == (1, 2)
    assert again["results"][0]["usage_period"] == periods.period_of(RECENT)
    assert reported_total(app, setting.app.app_id) == {"billable": 6, "held": 7}


async def test_event_ids_are_unique_per_app_not_across_apps(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    second = add_app(app.state.database, settings, vendor_id=setting.vendor_id, unit="reported_unit", name="阅读打卡")
    install(app.state.database, settings, app_id=second.app_id, school_id=city.school_a1,
            granted_at=NOW - timedelta(days=30))  # fmt: skip
    body = await send(client, setting, [
        report("same-id", school_id=city.school_a1), report("same-id", school_id=city.school_a1, app_id=second.app_id),
    ])  # fmt: skip
    assert [result["outcome"] for result in body["results"]] == ["held", "held"]
    assert len(vendor_rows(app)) == 2


# ------------------------------------------------------------------------------------------ reconciliation


async def test_a_report_for_a_launch_the_platform_saw_is_paid(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    launch_id = see_launch(app, settings, setting, city.school_a1)
    body = await send(client, setting, [report("a", school_id=city.school_a1, quantity=3, launch_id=launch_id)])
    assert body["results"][0]["outcome"] == "accepted"
    [row] = vendor_rows(app)
    assert (row.status, row.reason, row.launch_id) == ("billable", None, launch_id)


async def test_reports_without_a_matching_launch_are_held(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    at_b1 = see_launch(app, settings, setting, city.school_b1)
    body = await send(client, setting, [
        report("no-launch", school_id=city.school_a1),
        report("launch-at-another-school", school_id=city.school_a1, launch_id=at_b1),
    ])  # fmt: skip
    assert [result["outcome"] for result in body["results"]] == ["held", "held"]
    assert [(row.status, row.reason) for row in vendor_rows(app)] == [
        ("held", "no_launch_given"), ("held", "launch_of_other_app_or_school"),
    ]  # fmt: skip


async def test_a_report_that_arrives_before_its_launch_is_paid_once_the_launch_arrives(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    launch_id = str(uuid.uuid4())
    body = await send(client, setting, [report("early", school_id=city.school_a1, quantity=6, launch_id=launch_id)])
    assert body["results"][0]["outcome"] == "held"
    assert [(row.status, row.reason) for row in vendor_rows(app)] == [("held", "launch_not_observed")]

    feed_appstore(
        app.state.database, settings,
        launched(app_id=setting.app.app_id, vendor_id=setting.vendor_id, school_id=city.school_a1,
                 at=RECENT - timedelta(minutes=5), launch_id=launch_id),
    )  # fmt: skip

    assert [(row.status, row.reason) for row in vendor_rows(app)] == [("billable", None)]
    assert reported_total(app, setting.app.app_id) == {"billable": 6}


async def test_units_far_above_what_a_launch_allows_are_held(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: MeteringSettings, setting: Setting
) -> None:
    limit = settings.max_reported_units_per_launch
    launch_id = see_launch(app, settings, setting, city.school_a1)
    body = await send(client, setting, [
        report("within", school_id=city.school_a1, quantity=limit - 10, launch_id=launch_id),
        report("beyond", school_id=city.school_a1, quantity=11, launch_id=launch_id),
    ])  # fmt: skip
    assert [result["outcome"] for result in body["results"]] == ["accepted", "held"]
    assert vendor_rows(app)[1].reason == "above_observed_activity"
    assert reported_total(app, setting.app.app_id) == {"billable": limit - 10, "held": 11}


async def test_use_where_the_app_was_not_installed_is_kept_not_paid(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    body = await send(client, setting, [report("a2", school_id=city.school_a2, quantity=2)])
    assert body["results"][0]["outcome"] == "held"
    assert [(row.status, row.reason) for row in vendor_rows(app)] == [("not_installed", "not_installed_at_time")]


async def test_a_full_batch_of_a_thousand_events_is_counted_whole(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, setting: Setting
) -> None:
    events = [report(f"bulk-{i}", school_id=city.school_a1, quantity=1) for i in range(1000)]
    body = await send(client, setting, events)
    assert (body["held"], body["rejected"]) == (1000, 0)
    assert reported_total(app, setting.app.app_id) == {"held": 1000}


async def test_the_batch_format_is_documented(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/usage-reports"]["post"]
    schema = operation["requestBody"]["content"]["application/cloudevents-batch+json"]["schema"]
    assert schema["type"] == "array" and schema["maxItems"] == 1000
    assert "quantity" in schema["items"]["properties"]["data"]["properties"]
