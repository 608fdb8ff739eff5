"""Usage units (e.g. homework marked) counted per launch, and their report to the platform's metering.

The app reports its units to ``POST <platform>/api/metering/usage-reports`` with its own client-credentials token
(scope ``metering.report``): a batch of CloudEvents (``application/cloudevents-batch+json``), one per launch, each
with the vendor's own idempotency id (the CloudEvents ``id``), the launch it belongs to, the school, the quantity
and the time. Metering answers per event: accepted, held for the city's review or a duplicate of an earlier
report (all three counted, once), or rejected with a problem pointing into the event (not counted).
A report that fails, or an event that is rejected, stays open and is sent again with the same id, so the platform
never counts a unit twice. Reporting is on with ``VENDOR_APP_METERING_ENABLED=true``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vendor_app import pages
from vendor_app.context import AppContext, context_of
from vendor_app.stores import LaunchTally, UsageTally

router = APIRouter(prefix="/usage", tags=["Usage"])

USAGE_EVENT_TYPE = "edu.metering.unit.reported.v1"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
#: Outcomes of an event metering counted (held units are paid after the city's review): the report is done.
COUNTED_OUTCOMES = ("accepted", "held", "duplicate")


def build_batch(tallies: list[LaunchTally], *, client_id: str, unit: str) -> list[dict[str, Any]]:
    """The CloudEvents batch of the tallies' open reports: one event per launch, its id the idempotency id, its
    time when the report's latest unit was done (metering bills use at its time: that month's price plan, the
    installation then, that month's statement), not when the report is sent.

    ``unit``, when given, must be the unit's Chinese name in the app's price plan (metering checks it); empty: left
    out, the plan's unit applies."""
    events = []
    for tally in tallies:
        data: dict[str, Any] = {"school_id": tally.school_id, "quantity": tally.open_report_quantity}
        if unit:
            data["unit"] = unit
        if tally.platform_launch:
            data["launch_id"] = tally.launch_id
        events.append({
            "specversion": "1.0", "id": tally.open_report_id, "source": f"/apps/{client_id}", "type": USAGE_EVENT_TYPE,
            "subject": tally.launch_id, "time": _time_of_use(tally).isoformat(),
            "datacontenttype": "application/json", "data": data,
        })  # fmt: skip
    return events


def _time_of_use(tally: LaunchTally) -> datetime:
    return tally.open_report_at or tally.last_unit_at or tally.started_at


def open_reports(usage: UsageTally) -> list[LaunchTally]:
    """Tallies with units metering has not accepted; a report not yet accepted keeps its id and quantity."""
    found = []
    for tally in usage.all():
        if tally.open_report_id is None and tally.units > tally.reported_units and tally.school_id:
            tally.open_report_id = str(uuid.uuid4())
            tally.open_report_quantity = tally.units - tally.reported_units
            tally.open_report_at = tally.last_unit_at
        if tally.open_report_id is not None:
            found.append(tally)
    return found


async def report_usage(context: AppContext) -> str:
    """Send the open reports to metering when reporting is on; returns what happened, for the page."""
    settings = context.settings
    if not settings.metering_enabled:
        return "计量上报未开启（设置 VENDOR_APP_METERING_ENABLED=true 即可向平台上报）。"
    pending = open_reports(context.usage)
    if not pending:
        return "没有待上报的计量。"
    client_id = settings.metering_client_id or settings.oidc_client_id or settings.lti_client_id
    secret = settings.metering_client_secret or settings.oidc_client_secret
    transport = {"transport": context.transport} if context.transport is not None else {}
    async with AsyncOAuth2Client(
        client_id=client_id, client_secret=secret, scope="metering.report", timeout=settings.timeout_seconds,
        **transport,
    ) as oauth:  # fmt: skip
        try:
            metadata = (await context.http.get(settings.discovery_url)).json()
            await oauth.fetch_token(str(metadata["token_endpoint"]), grant_type="client_credentials")
            batch = build_batch(pending, client_id=client_id, unit=settings.reported_unit)
            answer = await oauth.post(
                settings.metering_endpoint, json=batch, headers={"Content-Type": CLOUDEVENTS_BATCH}
            )
        except (httpx.HTTPError, KeyError, ValueError) as error:
            return f"上报失败，稍后将以相同编号重试：{error}"
    if answer.status_code >= 300:
        return f"上报失败（HTTP {answer.status_code}{_problem_detail(answer)}），稍后将以相同编号重试。"
    try:
        results = answer.json()["results"]
        outcomes = {int(result["index"]): result for result in results}
    except (ValueError, KeyError, TypeError):
        return "上报结果无法解析，稍后将以相同编号重试。"
    return _apply_outcomes(pending, outcomes)


def _problem_detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        return ""
    return f"：{detail}" if isinstance(detail, str) and detail else ""


def _apply_outcomes(pending: list[LaunchTally], outcomes: dict[int, dict[str, Any]]) -> str:
    """Close the reports metering counted (accepted, held or duplicate); keep rejected ones open, with the reason."""
    counted, held, problems = 0, 0, []
    for index, tally in enumerate(pending):
        result = outcomes.get(index, {})
        outcome = result.get("outcome")
        if outcome in COUNTED_OUTCOMES:
            counted += tally.open_report_quantity
            held += tally.open_report_quantity if outcome == "held" else 0
            tally.reported_units += tally.open_report_quantity
            tally.report_ids.append(str(tally.open_report_id))
            tally.open_report_id, tally.open_report_quantity, tally.open_report_at = None, 0, None
            tally.last_problem = None
        else:
            problem = result.get("problem") or {}
            tally.last_problem = str(problem.get("detail") or problem.get("title") or "平台未给出此事件的结果")
            problems.append(f"启动 {tally.launch_id}：{tally.last_problem}")
    message = f"已上报 {counted} 个计量单位"
    if held:
        message += f"（其中 {held} 个待市级审核后结算）"
    if problems:
        message += f"；{len(problems)} 条被拒绝，修正后将以相同编号重试：" + "；".join(problems)
    return message + "。"


@router.post("/mark", summary="Count one unit of work (one homework marked) in a launch")
async def mark(request: Request, launch: str = Form(...), back: str = Form("")) -> Response:
    """Add one unit to the launch's tally and go back to where the button was."""
    context = context_of(request)
    if context.usage.add(launch) is None:
        return HTMLResponse(pages.error_page("启动已失效", "找不到这次启动，请回到平台重新打开应用。"), 404)
    target = f"/lti/launches/{back}" if back else "/oidc/home"
    return RedirectResponse(target, status_code=303)


@router.get("", response_class=HTMLResponse, summary="Units counted per launch")
async def tally_page(request: Request) -> HTMLResponse:
    """The local tally, and whether reporting to metering is on."""
    context = context_of(request)
    rows = [
        (tally.launch_id, tally.school_id, tally.started_at.strftime("%Y-%m-%d %H:%M"), tally.units,
         tally.reported_units, tally.last_problem or "")
        for tally in context.usage.all()
    ]  # fmt: skip
    unit = context.settings.reported_unit or "按平台价格方案"
    state = "已开启" if context.settings.metering_enabled else "未开启（VENDOR_APP_METERING_ENABLED=true 开启）"
    return HTMLResponse(
        pages.page(
            "示例应用 · 使用计量",
            pages.paragraph(f"计量单位：{unit}；向平台上报：{state}"),
            pages.table(["启动编号", "学校", "开始时间", "已计量", "已上报", "上次被拒原因"], rows),
            pages.form_button("/usage/report", "立即上报"),
        )
    )


@router.post("/report", response_class=HTMLResponse, summary="Report the open units to metering now")
async def report(request: Request) -> HTMLResponse:
    """Send the units not yet reported (when reporting is on)."""
    outcome = await report_usage(context_of(request))
    return HTMLResponse(pages.page("示例应用 · 使用计量", pages.paragraph(outcome)))
