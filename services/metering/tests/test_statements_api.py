"""Statements as vendors and city finance use them: previews, periods, lines, disputes, adjustments, approval and
exports, each with who may and may not."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import openpyxl
from fastapi import FastAPI
from sqlmodel import select

from kit.audit import AuditEntry
from kit.testing import TestCity
from metering.config import MeteringSettings
from metering.testing import add_app, add_vendor, install
from metering.usage.service import UsageInput, record_usage

FINANCE = "metering.read metering.approve"
OCT_3 = datetime(2026, 10, 3, 2, 0, tzinfo=UTC)
NOV_2 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # the current month (the tests run after it began)


@dataclass
class Setup:
    vendor: str
    other_vendor: str
    app_id: str


def _use(app: FastAPI, app_id: str, school_id: str, count: int, *, at: datetime) -> None:
    with app.state.database.session() as session:
        record_usage(session, [
            UsageInput(source="appstore", source_event_id=f"{app_id}-{school_id}-{at.isoformat()}-{i}", app_id=app_id,
                       school_id=school_id, meter="launch", quantity=1, occurred_at=at + timedelta(minutes=i))
            for i in range(count)
        ], max_reported_units_per_launch=100)  # fmt: skip


def _setup(app: FastAPI, settings: MeteringSettings, city: TestCity) -> Setup:
    database = app.state.database
    vendor = add_vendor(database, settings, developer_id=city.people["developer"].id)
    other_vendor = add_vendor(database, settings, name="别家科技", developer_id=city.people["other_developer"].id)
    metered = add_app(database, settings, vendor_id=vendor, price_fen=10, cap_fen=100, name="口算小达人")
    for school in (city.school_a1, city.school_b1):
        install(
            database, settings, app_id=metered.app_id, school_id=school, granted_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    _use(app, metered.app_id, city.school_a1, 15, at=OCT_3)  # 150 fen, capped to 100
    _use(app, metered.app_id, city.school_b1, 4, at=OCT_3)  # 40 fen
    _use(app, metered.app_id, city.school_a1, 3, at=NOV_2)  # 30 fen, this month
    return Setup(vendor=vendor, other_vendor=other_vendor, app_id=metered.app_id)


async def _close_october(client: httpx.AsyncClient, city: TestCity) -> str:
    response = await client.post("/periods/2026-10/close", headers=city.token("city_admin", FINANCE))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "closed" and response.json()["statements"] == 1
    listed = await client.get("/statements", headers=city.token("city_admin", FINANCE))
    return str(listed.json()["items"][0]["id"])


async def test_periods_and_closing(
    app: FastAPI, settings: MeteringSettings, city: TestCity, client: httpx.AsyncClient
) -> None:
    _setup(app, settings, city)
    assert (await client.get("/periods")).status_code == 401
    assert (await client.post("/periods/2026-10/close")).status_code == 401
    assert (await client.post("/periods/2026-10/close", headers=city.token("developer"))).status_code == 403
    assert (await client.post("/periods/2026-10/close", headers=city.token("city_admin"))).status_code == 403
    bad = await client.post("/periods/2026-13/close", headers=city.token("city_admin", FINANCE))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "path.period"
    running = await client.post("/periods/2026-11/close", headers=city.token("city_admin", FINANCE))
    assert running.status_code == 409 and "尚未结束" in running.json()["detail"]

    await _close_october(client, city)
    again = await client.post("/periods/2026-10/close", headers=city.token("city_admin", FINANCE))
    assert again.status_code == 409
    listed = await client.get("/periods", headers=city.token("a1_admin"))
    assert listed.status_code == 200
    states = {item["period"]: item["state"] for item in listed.json()}
    assert states["2026-10"] == "closed" and states["2026-11"] == "open"
    with app.state.database.session() as session:
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "metering.period_closed")).first()


async def test_statement_preview(
    app: FastAPI, settings: MeteringSettings, city: TestCity, client: httpx.AsyncClient
) -> None:
    setup = _setup(app, settings, city)
    path = f"/vendors/{setup.vendor}/statement-preview"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=city.token("other_developer"))).status_code == 404
    assert (await client.get(path, headers=city.token("a1_admin"))).status_code == 403
    bad = await client.get(path, params={"period": "2026-1"}, headers=city.token("developer"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.period"

    october = await client.get(path, params={"period": "2026-10", "limit": 1}, headers=city.token("developer"))
    assert october.status_code == 200, october.text
    body = october.json()
    assert body["state"] == "preview" and body["vendor_name"] == "星火教育科技有限公司"
    assert body["totals"] == {"gross_fen": 190, "cap_reduction_fen": 50, "adjustment_fen": 0, "total_fen": 140,
                              "lines": 2}  # fmt: skip
    assert {d["district_name"]: d["total_fen"] for d in body["districts"]} == {"春晓区": 100, "秋实区": 40}
    assert body["lines"]["total"] == 2 and len(body["lines"]["items"]) == 1
    assert body["lines"]["items"][0]["app_name"] == "口算小达人"
    current = await client.get(path, headers=city.token("city_admin"))
    assert current.json()["period"] == "2026-11" and current.json()["totals"]["total_fen"] == 30

    await _close_october(client, city)
    closed = await client.get(path, params={"period": "2026-10"}, headers=city.token("developer"))
    assert closed.status_code == 409


async def test_reading_statements_and_lines(
    app: FastAPI, settings: MeteringSettings, city: TestCity, client: httpx.AsyncClient
) -> None:
    setup = _setup(app, settings, city)
    statement_id = await _close_october(client, city)
    assert (await client.get("/statements")).status_code == 401
    assert (await client.get("/statements", headers=city.token("a1_admin"))).status_code == 403
    assert (await client.get("/statements", headers=city.token("district_a_admin"))).status_code == 403
    assert (
        await client.get("/statements", params={"state": "paid"}, headers=city.token("city_admin"))
    ).status_code == 422
    others = await client.get("/statements", headers=city.token("other_developer"))
    assert others.status_code == 200 and others.json()["total"] == 0
    assert (await client.get(f"/statements/{statement_id}", headers=city.token("other_developer"))).status_code == 404
    assert (await client.get(f"/statements/{statement_id}/lines", headers=city.token("a1_admin"))).status_code == 403

    mine = await client.get("/statements", params={"period": "2026-10"}, headers=city.token("developer"))
    assert [item["vendor_id"] for item in mine.json()["items"]] == [setup.vendor]
    detail = (await client.get(f"/statements/{statement_id}", headers=city.token("developer"))).json()
    assert detail["state"] == "issued" and detail["totals"]["total_fen"] == 140 and detail["open_disputes"] == 0
    assert [(d["district_name"], d["total_fen"]) for d in detail["districts"]] == [("春晓区", 100), ("秋实区", 40)]
    lines = await client.get(f"/statements/{statement_id}/lines", params={"school_id": city.school_a1},
                             headers=city.token("developer"))  # fmt: skip
    [line] = lines.json()["items"]
    assert (line["school_name"], line["app_name"], line["usage_period"], line["late_usage_adjustment"]) == (
        "春晓第一小学", "口算小达人", "2026-10", False,
    )  # fmt: skip
    assert (line["gross_fen"], line["cap_fen"], line["cap_reduction_fen"], line["final_fen"]) == (150, 100, 50, 100)

    # Late October usage now bills in November, marked as an adjustment line in November's preview.
    _use(app, setup.app_id, city.school_b1, 2, at=OCT_3 + timedelta(days=2))
    preview = await client.get(f"/vendors/{setup.vendor}/statement-preview", headers=city.token("developer"))
    late = [item for item in preview.json()["lines"]["items"] if item["late_usage_adjustment"]]
    assert [(item["usage_period"], item["quantity"], item["final_fen"]) for item in late] == [("2026-10", 2, 20)]


async def test_disputes_adjustments_and_approval(
    app: FastAPI, settings: MeteringSettings, city: TestCity, client: httpx.AsyncClient
) -> None:
    _setup(app, settings, city)
    statement_id = await _close_october(client, city)
    lines = (await client.get(f"/statements/{statement_id}/lines", headers=city.token("developer"))).json()["items"]
    a1_line = next(line for line in lines if line["school_id"] == city.school_a1)
    b1_line = next(line for line in lines if line["school_id"] == city.school_b1)
    disputes = f"/statements/{statement_id}/lines/{a1_line['id']}/disputes"
    reason = {"reason": "春晓一小十月停课一周，启动次数偏多"}

    assert (await client.post(disputes, json=reason)).status_code == 401
    assert (await client.post(disputes, json=reason, headers=city.token("city_admin", FINANCE))).status_code == 403
    assert (await client.post(disputes, json=reason, headers=city.token("other_developer"))).status_code == 404
    short = await client.post(disputes, json={"reason": "太多"}, headers=city.token("developer"))
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "reason"
    raised = await client.post(disputes, json=reason, headers=city.token("developer"))
    assert raised.status_code == 201 and raised.json()["state"] == "open"
    dispute_id = raised.json()["id"]
    assert (await client.post(disputes, json=reason, headers=city.token("developer"))).status_code == 409

    approve = f"/statements/{statement_id}/approve"
    blocked = await client.post(approve, json={}, headers=city.token("city_admin", FINANCE))
    assert blocked.status_code == 409 and blocked.json()["open_disputes"] == 1
    listed = await client.get(f"/statements/{statement_id}/disputes", headers=city.token("developer"))
    assert [d["id"] for d in listed.json()] == [dispute_id]
    assert (
        await client.get(f"/statements/{statement_id}/disputes", headers=city.token("other_developer"))
    ).status_code == 404

    resolution = f"/statements/{statement_id}/disputes/{dispute_id}/resolution"
    decision = {"decision": "adjust", "amount_fen": 80, "reason": "核实停课，按80分结算"}
    assert (await client.post(resolution, json=decision)).status_code == 401
    assert (await client.post(resolution, json=decision, headers=city.token("developer"))).status_code == 403
    missing = await client.post(resolution, json={"decision": "adjust", "reason": "核实"},
                                headers=city.token("city_admin", FINANCE))  # fmt: skip
    assert missing.status_code == 422
    resolved = await client.post(resolution, json=decision, headers=city.token("city_admin", FINANCE))
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["dispute"]["state"] == "adjusted"
    assert resolved.json()["adjustment"]["amount_fen"] == -20
    assert resolved.json()["statement"]["totals"]["total_fen"] == 120

    adjustments = f"/statements/{statement_id}/adjustments"
    below = {"line_id": b1_line["id"], "amount_fen": -41, "reason": "多计"}
    assert (await client.post(adjustments, json=below)).status_code == 401
    assert (await client.post(adjustments, json=below, headers=city.token("developer"))).status_code == 403
    refused = await client.post(adjustments, json=below, headers=city.token("city_admin", FINANCE))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "amount_fen"
    added = await client.post(adjustments, json={"line_id": b1_line["id"], "amount_fen": 5, "reason": "补发漏计"},
                              headers=city.token("city_admin", FINANCE))  # fmt: skip
    assert added.status_code == 201 and added.json()["line"]["final_fen"] == 45
    assert added.json()["statement"]["totals"] == {"gross_fen": 190, "cap_reduction_fen": 50, "adjustment_fen": -15,
                                                   "total_fen": 125, "lines": 2}  # fmt: skip

    assert (await client.post(approve, json={})).status_code == 401
    assert (await client.post(approve, json={}, headers=city.token("developer"))).status_code == 403
    approved = await client.post(approve, json={"note": "十月结算"}, headers=city.token("city_admin", FINANCE))
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    for path, body in ((approve, {}), (adjustments, {"line_id": b1_line["id"], "amount_fen": 1, "reason": "再改"})):
        late = await client.post(path, json=body, headers=city.token("city_admin", FINANCE))
        assert late.status_code == 409 and late.json()["detail"].startswith("已审核的结算单不可更改")
    again = await client.post(f"/statements/{statement_id}/lines/{b1_line['id']}/disputes", json=reason,
                              headers=city.token("developer"))  # fmt: skip
    assert again.status_code == 409

    with app.state.database.session() as session:
        actions = [entry.action for entry in session.exec(select(AuditEntry))]
    for action in ("metering.statement_line_disputed", "metering.dispute_adjusted", "metering.statement_adjusted",
                   "metering.statement_approved"):  # fmt: skip
        assert action in actions
    from kit.outbox import OutboxEvent

    with app.state.database.session() as session:
        types = [event.event_type for event in session.exec(select(OutboxEvent))]
    assert "edu.metering.statement.approved.v1" in types


async def test_exports(app: FastAPI, settings: MeteringSettings, city: TestCity, client: httpx.AsyncClient) -> None:
    _setup(app, settings, city)
    statement_id = await _close_october(client, city)
    for extension in ("csv", "xlsx"):
        path = f"/statements/{statement_id}/export.{extension}"
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=city.token("other_developer"))).status_code == 404
        assert (await client.get(path, headers=city.token("a1_admin"))).status_code == 403

    response = await client.get(f"/statements/{statement_id}/export.csv", headers=city.token("developer"))
    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert 'filename="statement-2026-10-' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[3] == ["状态 State", "草稿（待审核）Draft, awaiting approval"]
    header = rows.index(next(row for row in rows if row and row[0] == "明细编号 Line"))
    lines = rows[header + 1 : rows.index([], header)]
    by_school = {row[3]: row for row in lines}
    assert set(by_school) == {"春晓第一小学", "秋实小学"}
    assert by_school["春晓第一小学"][1] == "口算小达人"
    assert by_school["春晓第一小学"][-2:] == ["1.00", "100"]
    totals = rows[rows.index([], header) + 2 :]
    assert [(row[0], row[-1]) for row in totals] == [
        ("春晓区", "100"),
        ("秋实区", "40"),
        ("全市合计 City total", "140"),
    ]

    await client.post(f"/statements/{statement_id}/approve", json={}, headers=city.token("city_admin", FINANCE))
    response = await client.get(f"/statements/{statement_id}/export.xlsx", headers=city.token("city_admin"))
    assert response.status_code == 200
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames == ["明细 Lines", "区县合计 District totals"]
    sheet_rows = list(workbook["明细 Lines"].iter_rows(values_only=True))
    assert sheet_rows[3][:2] == ("状态 State", "已审核 Approved")
    data = [row for row in sheet_rows[7:] if row and row[0] is not None]
    a1 = next(row for row in data if row[3] == "春晓第一小学")
    assert a1[9] == 15 and a1[-2] == 1.0 and a1[-1] == 100 and a1[12] == 1.5
    totals_rows = list(workbook["区县合计 District totals"].iter_rows(values_only=True))
    assert totals_rows[-1][0] == "全市合计 City total" and totals_rows[-1][-1] == 140 and totals_rows[-1][-2] == 1.4
