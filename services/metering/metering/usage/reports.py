"""Vendors' usage reports: a batch of CloudEvents, each checked on its own, the valid ones recorded together.

A vendor's app counts some units itself (a corrected homework, a graded essay: plans priced in ``reported_unit``)
and reports them in batches. Each event of a batch is accepted, held for the city's review, a duplicate of one
received before (its id is the vendor's idempotency id, per app), or rejected with an RFC 9457-shaped problem
pointing into the event. The valid events of a batch are recorded in one transaction with :func:`record_usage`,
which reconciles them with the launches the platform saw: nothing of a batch is ever half-counted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlmodel import Session, col, select

from contracts.api.metering import (
    USAGE_REPORT_EVENT_TYPE,
    ReportBatchResult,
    ReportProblem,
    ReportResult,
    UsageReportEvent,
)
from kit.errors import PROBLEM_TYPE_BASE
from metering import periods
from metering.config import MeteringSettings
from metering.projections.models import MeteredApp, MeteredOrganisation, PricePlan
from metering.usage.models import UsageEvent
from metering.usage.service import REPORTED_UNIT, UsageInput, closed_periods, plan_at, record_usage, utcnow

logger = logging.getLogger("metering.reports")

SOURCE = "vendor"
#: Usage older than this many months is refused: its period is long settled and nobody can check it any more.
MAX_AGE_MONTHS = 13


@dataclass(frozen=True)
class _Rejection:
    """One kind of rejection: a stable type URI and a Chinese title."""

    slug: str
    title: str

    def problem(self, detail: str, pointer: str) -> ReportProblem:
        return ReportProblem(type=PROBLEM_TYPE_BASE + self.slug, title=self.title, detail=detail, pointer=pointer)


INVALID_EVENT = _Rejection("metering/report-invalid-event", "事件格式或内容有误")
UNKNOWN_APP = _Rejection("metering/report-unknown-app", "应用不存在")
OTHER_VENDOR = _Rejection("metering/report-app-of-other-vendor", "不能为其他企业的应用上报")
NOT_REPORTED_UNIT = _Rejection("metering/report-app-not-priced-in-reported-units", "该应用不按上报单位计费")
NO_PLAN = _Rejection("metering/report-no-plan-at-time", "使用时没有生效的价格方案")
UNIT_MISMATCH = _Rejection("metering/report-unit-mismatch", "计量单位与价格方案不符")
UNKNOWN_SCHOOL = _Rejection("metering/report-unknown-school", "学校不存在")
IN_FUTURE = _Rejection("metering/report-time-in-future", "使用时间在未来")
TOO_OLD = _Rejection("metering/report-time-too-old", "使用时间过早")
PERIOD_CLOSED = _Rejection("metering/report-period-closed", "该月已结算")


@dataclass(frozen=True)
class _Valid:
    index: int
    event: UsageReportEvent
    app_id: str


@dataclass
class _Context:
    """Reference data for one batch, loaded in a few queries."""

    token_app: MeteredApp | None
    apps: dict[str, MeteredApp]
    plans: dict[str, list[PricePlan]]
    schools: set[str]
    closed: set[str]
    seen: dict[str, str]  # source_event_id -> billing period, of events received before


def months_before(moment: datetime, months: int) -> datetime:
    """The same local day and time ``months`` calendar months earlier (the day clamped to the month's end)."""
    local = moment.astimezone(periods.CHINA_STANDARD_TIME)
    index = local.year * 12 + local.month - 1 - months
    year, month = divmod(index, 12)
    last = periods.last_day(f"{year:04d}-{month + 1:02d}").day
    return local.replace(year=year, month=month + 1, day=min(local.day, last)).astimezone(UTC)


def receive_reports(
    session: Session,
    events: Sequence[Any],
    *,
    token_app_id: str,
    settings: MeteringSettings,
    now: datetime | None = None,
) -> ReportBatchResult:
    """Check each event of a vendor's batch, record the valid ones in the caller's transaction; say what became
    of each."""
    moment = now or utcnow()
    results: dict[int, ReportResult] = {}
    parsed: list[tuple[int, UsageReportEvent]] = []
    for index, raw in enumerate(events):
        event_or_result = _parse(index, raw)
        if isinstance(event_or_result, ReportResult):
            results[index] = event_or_result
        else:
            parsed.append((index, event_or_result))

    context = _load_context(session, parsed, token_app_id=token_app_id)
    valid: list[_Valid] = []
    for index, event in parsed:
        app_id = event.data.app_id or token_app_id
        key = _source_event_id(app_id, event.id)
        problem = _ownership_problem(index, event, app_id, context)
        if problem is None and key in context.seen:
            results[index] = ReportResult(index=index, id=event.id, outcome="duplicate", usage_period=context.seen[key])
            continue
        problem = problem or _content_problem(index, event, app_id, context, settings, moment)
        if problem is not None:
            results[index] = ReportResult(index=index, id=event.id, outcome="rejected", problem=problem)
        else:
            valid.append(_Valid(index=index, event=event, app_id=app_id))

    inputs = [
        UsageInput(
            source=SOURCE, source_event_id=_source_event_id(item.app_id, item.event.id), app_id=item.app_id,
            school_id=item.event.data.school_id, meter=REPORTED_UNIT, quantity=item.event.data.quantity,
            occurred_at=item.event.time, launch_id=item.event.data.launch_id,
        )
        for item in valid
    ]  # fmt: skip
    outcomes = record_usage(
        session, inputs, max_reported_units_per_launch=settings.max_reported_units_per_launch, now=moment
    )
    for item, outcome in zip(valid, outcomes, strict=True):
        if outcome.duplicate:
            result = ReportResult(index=item.index, id=item.event.id, outcome="duplicate")
        else:
            result = ReportResult(
                index=item.index, id=item.event.id, usage_period=outcome.billing_period,
                outcome="accepted" if outcome.status == "billable" else "held", reason=outcome.reason,
            )  # fmt: skip
        results[item.index] = result

    ordered = [results[index] for index in range(len(events))]
    counts: dict[str, int] = defaultdict(int)
    for result in ordered:
        counts[result.outcome] += 1
    logger.info(
        "usage report from app %s: %d accepted, %d held, %d duplicate, %d rejected",
        token_app_id, counts["accepted"], counts["held"], counts["duplicate"], counts["rejected"],
    )  # fmt: skip
    return ReportBatchResult(
        accepted=counts["accepted"], held=counts["held"], duplicates=counts["duplicate"], rejected=counts["rejected"],
        results=ordered, received_at=moment,
    )  # fmt: skip


def _source_event_id(app_id: str, event_id: str) -> str:
    # The vendor's id is unique per app, not across the platform.
    return f"{app_id}:{event_id}"


# ------------------------------------------------------------------------------------------- the event's form


def _parse(index: int, raw: Any) -> UsageReportEvent | ReportResult:
    readable_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    if not isinstance(raw, dict):
        problem = INVALID_EVENT.problem(
            "批次中的每个事件必须是 JSON 对象（CloudEvents 结构化格式）；"
            "Each event of the batch must be a JSON object (CloudEvents structured mode).",
            f"/{index}",
        )
        return ReportResult(index=index, id=None, outcome="rejected", problem=problem)
    try:
        return UsageReportEvent.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        location = [str(part) for part in first["loc"]]
        pointer = "/".join([f"/{index}", *location])
        problem = INVALID_EVENT.problem(_describe(first, location), pointer)
        return ReportResult(index=index, id=readable_id, outcome="rejected", problem=problem)


_FIELD_RULES = {
    "specversion": ("必须为 \"1.0\"", 'must be "1.0"'),
    "id": ("必须是 1 到 100 个字符的字符串（您的幂等编号）",
           "must be a string of 1 to 100 characters (your idempotency id)"),
    "source": ("必须是 1 到 200 个字符的非空字符串", "must be a non-empty string of at most 200 characters"),
    "type": (f"必须为 \"{USAGE_REPORT_EVENT_TYPE}\"", f'must be "{USAGE_REPORT_EVENT_TYPE}"'),
    "time": ("必须是带时区偏移的 RFC 3339 时间，例如 2026-10-10T08:00:00+08:00",
             "must be an RFC 3339 timestamp with an offset, e.g. 2026-10-10T08:00:00+08:00"),
    "data": ("必须是包含 school_id 和 quantity 的对象", "must be an object with school_id and quantity"),
    "data.school_id": ("必须是 1 到 64 个字符的学校编号", "must be a school id of 1 to 64 characters"),
    "data.quantity": ("必须是 1 到 1000000 之间的整数", "must be a whole number from 1 to 1,000,000"),
    "data.unit": ("必须是不超过 60 个字符的字符串", "must be a string of at most 60 characters"),
    "data.launch_id": ("必须是不超过 64 个字符的字符串", "must be a string of at most 64 characters"),
    "data.app_id": ("必须是不超过 64 个字符的应用编号", "must be an app id of at most 64 characters"),
    "datacontenttype": ('若提供，必须为 "application/json"', 'must be "application/json" when given'),
    "subject": ("若提供，必须是字符串", "must be a string when given"),
}  # fmt: skip


def _describe(error: ErrorDetails, location: list[str]) -> str:
    field = ".".join(location)
    if error["type"] == "missing":
        return f"缺少必填字段 {field}；{field} is required."
    if error["type"] == "extra_forbidden":
        return f"不支持字段 {field}；{field} is not a field of the report's data."
    rule = _FIELD_RULES.get(field)
    if rule is not None:
        return f"{field} {rule[0]}；{field} {rule[1]}."
    return f"{field} 有误；{field}: {error['msg']}."


# ------------------------------------------------------------------------------------------ the event's facts


def _load_context(session: Session, parsed: Sequence[tuple[int, UsageReportEvent]], *, token_app_id: str) -> _Context:
    app_ids = sorted({token_app_id} | {event.data.app_id for _, event in parsed if event.data.app_id})
    apps = {app.app_id: app for app in session.exec(select(MeteredApp).where(col(MeteredApp.app_id).in_(app_ids)))}
    plans: dict[str, list[PricePlan]] = defaultdict(list)
    for plan in session.exec(
        select(PricePlan)
        .where(col(PricePlan.app_id).in_(sorted(apps)))
        .order_by(col(PricePlan.app_id), col(PricePlan.effective_at), col(PricePlan.id))
    ):
        plans[plan.app_id].append(plan)
    school_ids = sorted({event.data.school_id for _, event in parsed})
    schools = set(
        session.exec(
            select(MeteredOrganisation.org_id).where(
                MeteredOrganisation.kind == "school", col(MeteredOrganisation.org_id).in_(school_ids)
            )
        )
    )
    keys = sorted({_source_event_id(event.data.app_id or token_app_id, event.id) for _, event in parsed})
    seen: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        for key, period in session.exec(
            select(UsageEvent.source_event_id, UsageEvent.billing_period).where(
                UsageEvent.source == SOURCE, col(UsageEvent.source_event_id).in_(keys[start : start + 500])
            )
        ):
            seen[key] = period
    return _Context(
        token_app=apps.get(token_app_id), apps=apps, plans=plans, schools=schools, closed=closed_periods(session),
        seen=seen,
    )  # fmt: skip


def _app_pointer(index: int, event: UsageReportEvent) -> str:
    return f"/{index}/data/app_id" if event.data.app_id else f"/{index}/data"


def _ownership_problem(index: int, event: UsageReportEvent, app_id: str, context: _Context) -> ReportProblem | None:
    """The app must exist and belong to the vendor whose app sends the report."""
    app = context.apps.get(app_id)
    if app is None:
        return UNKNOWN_APP.problem(
            f"平台上没有编号为 {app_id[:64]} 的应用；No app has the id {app_id[:64]!r} on the platform.",
            _app_pointer(index, event),
        )
    if context.token_app is None or app.vendor_id != context.token_app.vendor_id:
        return OTHER_VENDOR.problem(
            f"应用 {app_id[:64]} 不属于发送上报的应用所在的企业；"
            f"The app {app_id[:64]!r} does not belong to the vendor of the app sending the report.",
            _app_pointer(index, event),
        )
    return None


def _content_problem(
    index: int, event: UsageReportEvent, app_id: str, context: _Context, settings: MeteringSettings, now: datetime
) -> ReportProblem | None:
    at = event.time.astimezone(UTC)
    period = periods.period_of(at)
    time_pointer = f"/{index}/time"
    if at > now + timedelta(minutes=settings.future_tolerance_minutes):
        return IN_FUTURE.problem(
            f"使用时间 {event.time.isoformat()} 晚于当前时间超过 {settings.future_tolerance_minutes} 分钟；"
            f"time {event.time.isoformat()} is more than {settings.future_tolerance_minutes} minutes in the future.",
            time_pointer,
        )
    if at < months_before(now, MAX_AGE_MONTHS):
        return TOO_OLD.problem(
            f"只接受最近 {MAX_AGE_MONTHS} 个月内的使用，{event.time.isoformat()} 过早；"
            f"Only usage of the last {MAX_AGE_MONTHS} months is accepted; {event.time.isoformat()} is older.",
            time_pointer,
        )
    if period in context.closed:
        return PERIOD_CLOSED.problem(f"{period} 月已结算，不能再上报；period {period} is closed.", time_pointer)
    plan = plan_at(context.plans.get(app_id, ()), at)
    if plan is None:
        return NO_PLAN.problem(
            f"应用 {app_id[:64]} 在 {event.time.isoformat()} 没有生效的价格方案；"
            f"The app {app_id[:64]!r} had no price plan in force at {event.time.isoformat()}.",
            time_pointer,
        )
    if plan.unit != REPORTED_UNIT:
        return NOT_REPORTED_UNIT.problem(
            f"应用 {app_id[:64]} 的价格方案按 {plan.unit} 计费，平台自行计量，只有按上报单位（reported_unit）"
            f"计费的应用才能上报用量；The app {app_id[:64]!r} is priced per {plan.unit}, which the platform "
            "meters itself: reports only count for apps priced in reported units (reported_unit).",
            _app_pointer(index, event),
        )
    unit = (event.data.unit or "").strip()
    if unit and plan.reported_unit_name is not None and unit != plan.reported_unit_name.strip():
        return UNIT_MISMATCH.problem(
            f"计量单位应为“{plan.reported_unit_name}”，而不是“{unit}”；"
            f"The unit is {plan.reported_unit_name!r} in the app's plan, not {unit!r}.",
            f"/{index}/data/unit",
        )
    if event.data.school_id not in context.schools:
        return UNKNOWN_SCHOOL.problem(
            f"平台上没有编号为 {event.data.school_id} 的学校；No school has the id {event.data.school_id!r}.",
            f"/{index}/data/school_id",
        )
    return None
