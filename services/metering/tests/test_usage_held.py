"""Usage not paid automatically, as readers see it within their reach, and city finance's decisions on it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from kit.audit import AuditEntry
from kit.testing import TestCity
from metering import periods
from metering.config import MeteringSettings
from metering.testing import SCOPES_FINANCE, add_app, add_vendor, feed_appstore, install, launched
from metering.usage.models import UsageEvent, UsageTotal

NOW = datetime.now(UTC)
RECENT = NOW - timedelta(hours=2)
HELD = "/usage/held"


@dataclass
class Held:
    """Usage of two vendors at two schools: vendor reports held for review, and launches where not installed."""

    vendor_id: str
    app_id: str
    other_app_id: str
    a1_report: int  # our vendor's report at school A1, held (no launch given)
    b1_report: int  # our vendor's report at school B1, held
    other_a1_report: int  # the other vendor's report at A1, held
    a2_not_installed: int  # a launch of our reporting app at A2, where it is not installed


def _report(event_id: str, school_id: str, quantity: int) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": event_id, "source": "/apps/test", "type": "edu.metering.unit.reported.v1",
        "time": RECENT.isoformat(), "data": {"school_id": school_id, "quantity": quantity},
    }  # fmt: skip


async def _send(client: httpx.AsyncClient, city: TestCity, app_id: str, events: list[dict[str, Any]]) -> None:
    headers = city.app_token(scopes="metering.report", schools=[], app_id=app_id)
    response = await client.post("/usage-reports", json=events, headers=headers)
    assert response.status_code == 200, response.text
    assert all(result["outcome"] == "held" for result in response.json()["results"]), response.text


def _id_of(app: FastAPI, source: str, source_event_id: str) -> int:
    with app.state.database.session() as session:
        event = session.exec(
            select(UsageEvent).where(UsageEvent.source == source, UsageEvent.source_event_id == source_event_id)
        ).one()
    return int(event.id or 0)


@pytest.fixture
async def held(app: FastAPI, client: httpx.AsyncClient, settings: MeteringSettings, city: TestCity) -> Held:
    database = app.state.database
    vendor = add_vendor(database, settings, developer_id=city.people["developer"].id)
    other_vendor = add_vendor(database, settings, name="别家科技有限公司",
                              developer_id=city.people["other_developer"].id)  # fmt: skip
    ours = add_app(database, settings, vendor_id=vendor, unit="reported_unit", price_fen=50)
    theirs = add_app(database, settings, vendor_id=other_vendor, unit="reported_unit", name="别家作文批改")
    granted = NOW - timedelta(days=60)
    install(database, settings, app_id=ours.app_id, school_id=city.school_a1, granted_at=granted)
    install(database, settings, app_id=ours.app_id, school_id=city.school_b1, granted_at=granted)
    install(database, settings, app_id=theirs.app_id, school_id=city.school_a1, granted_at=granted)
    await _send(client, city, ours.app_id, [_report("a1", city.school_a1, 4), _report("b1", city.school_b1, 5)])
    await _send(client, city, theirs.app_id, [_report("a1", city.school_a1, 6)])
    launch_id = str(uuid.uuid4())
    feed_appstore(database, settings, launched(app_id=ours.app_id, vendor_id=vendor, school_id=city.school_a2,
                                               at=RECENT, launch_id=launch_id))  # fmt: skip
    return Held(
        vendor_id=vendor, app_id=ours.app_id, other_app_id=theirs.app_id,
        a1_report=_id_of(app, "vendor", f"{ours.app_id}:a1"), b1_report=_id_of(app, "vendor", f"{ours.app_id}:b1"),
        other_a1_report=_id_of(app, "vendor", f"{theirs.app_id}:a1"),
        a2_not_installed=_id_of(app, "appstore", launch_id),
    )  # fmt: skip


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[int]:
    response = await client.get(HELD, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def _decide(usage_id: int, decision: str = "accept", reason: str = "已核对课堂记录") -> tuple[str, dict[str, str]]:
    return f"{HELD}/{usage_id}/decision", {"decision": decision, "reason": reason}


# ------------------------------------------------------------------------------------------------ the list


async def test_anonymous(client: httpx.AsyncClient) -> None:
    assert (await client.get(HELD)).status_code == 401
    url, body = _decide(1)
    assert (await client.post(url, json=body)).status_code == 401


async def test_the_city_sees_all_with_reasons_in_chinese(client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    response = await client.get(HELD, headers=city.token("city_admin"))
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["items"]}
    assert set(items) == {held.a1_report, held.b1_report, held.other_a1_report, held.a2_not_installed}
    report = items[held.a1_report]
    assert (report["status"], report["status_label"]) == ("held", "待市级审核")
    assert (report["reason"], report["reason_label"]) == ("no_launch_given", "上报未注明所属的启动记录")
    assert (report["quantity"], report["meter"], report["app_id"]) == (4, "reported_unit", held.app_id)
    assert report["usage_period"] == periods.period_of(RECENT)
    launch = items[held.a2_not_installed]
    assert (launch["status"], launch["reason_label"]) == ("not_installed", "使用时该校未安装此应用")
    assert "user_pseudonym" not in launch


async def test_a_school_sees_only_its_own_and_a_district_only_its_schools(
    client: httpx.AsyncClient, city: TestCity, held: Held
) -> None:
    assert await _ids(client, city.token("a1_admin")) == [held.a1_report, held.other_a1_report]
    assert await _ids(client, city.token("b1_admin")) == [held.b1_report]
    assert await _ids(client, city.token("district_a_admin")) == sorted(
        [held.a1_report, held.other_a1_report, held.a2_not_installed]
    )
    # Asking for another school's app does not reveal it either.
    assert await _ids(client, city.token("b1_admin"), app_id=held.other_app_id) == []


async def test_a_vendor_sees_only_its_own_apps(client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    assert await _ids(client, city.token("developer")) == sorted(
        [held.a1_report, held.b1_report, held.a2_not_installed]
    )
    assert await _ids(client, city.token("other_developer")) == [held.other_a1_report]


async def test_readers_without_reach_or_scope_are_refused(
    client: httpx.AsyncClient, city: TestCity, held: Held
) -> None:
    assert (await client.get(HELD, headers=city.token("a1_teacher"))).status_code == 403
    assert (await client.get(HELD, headers=city.token("city_admin", "openid"))).status_code == 403


async def test_filters_and_pages(client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    headers = city.token("city_admin")
    assert await _ids(client, headers, status="not_installed") == [held.a2_not_installed]
    assert await _ids(client, headers, status=["held", "unknown"], app_id=held.app_id) == [
        held.a1_report, held.b1_report,
    ]  # fmt: skip
    assert await _ids(client, headers, period=periods.next_period(periods.period_of(NOW))) == []

    seen: list[int] = []
    cursor: int | None = 0
    while cursor is not None:
        response = await client.get(HELD, headers=headers, params={"limit": 3, "cursor": cursor})
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == sorted([held.a1_report, held.b1_report, held.other_a1_report, held.a2_not_installed])


async def test_bad_input(client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    headers = city.token("city_admin", SCOPES_FINANCE)
    queries: list[tuple[dict[str, str | int], str]] = [
        ({"status": "billable"}, "status"), ({"period": "2026-13"}, "period"), ({"cursor": -1}, "cursor"),
        ({"limit": 0}, "limit"),
    ]  # fmt: skip
    for params, field in queries:
        response = await client.get(HELD, headers=headers, params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")
        assert any(field in error["field"].split(".") for error in response.json()["errors"]), response.json()
    url, _ = _decide(held.a1_report)
    bodies = [
        ({"decision": "maybe", "reason": "再看看"}, "decision"),
        ({"decision": "accept", "reason": "好"}, "reason"),
        ({"decision": "accept"}, "reason"),
    ]
    for body, field in bodies:
        response = await client.post(url, headers=headers, json=body)
        assert response.status_code == 422, body
        assert any(field in error["field"].split(".") for error in response.json()["errors"]), response.json()
    response = await client.post(f"{HELD}/not-a-number/decision", headers=headers, json=_decide(1)[1])
    assert response.status_code == 422


# ------------------------------------------------------------------------------------------------ decisions


def _reported(app: FastAPI, app_id: str) -> dict[str, int]:
    with app.state.database.session() as session:
        rows = session.exec(select(UsageTotal).where(UsageTotal.app_id == app_id, UsageTotal.meter == "reported_unit"))
        found: dict[str, int] = {}
        for row in rows:
            found[row.status] = found.get(row.status, 0) + row.quantity
    return {status: quantity for status, quantity in found.items() if quantity}


async def test_finance_accepts_held_usage_and_it_becomes_billable(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, held: Held
) -> None:
    finance = city.token("city_admin", SCOPES_FINANCE)
    url, body = _decide(held.a1_report, "accept", "已核对课堂记录，确有批改")
    response = await client.post(url, headers=finance, json=body)
    assert response.status_code == 200, response.text
    decided = response.json()
    assert (decided["status"], decided["reason"], decided["reason_label"]) == (
        "billable",
        "accepted_by_city",
        "市级审核通过",
    )
    assert decided["decided_by"] == city.people["city_admin"].id
    assert decided["decision_reason"] == "已核对课堂记录，确有批改" and decided["decided_at"]
    assert _reported(app, held.app_id) == {"billable": 4, "held": 5}
    assert held.a1_report not in await _ids(client, finance)

    with app.state.database.session() as session:
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "usage.held_accepted")).all()
    assert entry.target_id == str(held.a1_report) and entry.actor_id == city.people["city_admin"].id
    assert json.loads(entry.detail)["reason"] == "已核对课堂记录，确有批改"

    again = await client.post(url, headers=finance, json=body)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert "；" in again.json()["detail"]


async def test_finance_rejects_held_usage_and_it_is_never_paid(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, held: Held
) -> None:
    finance = city.token("city_admin", SCOPES_FINANCE)
    url, body = _decide(held.b1_report, "reject", "学校未确认该批改量")
    response = await client.post(url, headers=finance, json=body)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["reason"]) == ("rejected", "no_launch_given")
    assert _reported(app, held.app_id) == {"held": 4, "rejected": 5}
    assert (await client.post(url, headers=finance, json=_decide(held.b1_report, "accept")[1])).status_code == 409
    with app.state.database.session() as session:
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "usage.held_rejected")).all()


async def test_only_held_usage_can_be_decided(client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    finance = city.token("city_admin", SCOPES_FINANCE)
    url, body = _decide(held.a2_not_installed)
    assert (await client.post(url, headers=finance, json=body)).status_code == 409
    url, body = _decide(10_000_000)
    assert (await client.post(url, headers=finance, json=body)).status_code == 404


async def test_only_city_finance_decides(app: FastAPI, client: httpx.AsyncClient, city: TestCity, held: Held) -> None:
    url, body = _decide(held.a1_report)
    for headers in (
        city.token("city_admin"),  # no metering.approve
        city.token("developer", SCOPES_FINANCE),
        city.token("a1_admin", SCOPES_FINANCE),
        city.token("district_a_admin", SCOPES_FINANCE),
        city.app_token(scopes=SCOPES_FINANCE, schools=[], app_id=held.app_id),
    ):
        assert (await client.post(url, headers=headers, json=body)).status_code == 403
    assert _reported(app, held.app_id) == {"held": 9}
