"""HTTP routes of vendors' usage reports (the public batch API) and of the city's review of usage held back."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import TypeAdapter

from contracts.api.metering import (
    CLOUDEVENTS_BATCH_MEDIA_TYPE,
    MAX_REPORT_BATCH,
    ReportBatchResult,
    UsageReportEvent,
)
from kit.db import ReadSessionDep, SessionDep
from kit.errors import FieldError, Forbidden, InvalidInput, MalformedRequest, UnsupportedMediaType
from metering import periods
from metering.deps import REPORT_SCOPE, Caller, CallerDep, SettingsDep
from metering.usage import held, reports

router = APIRouter()

_MEDIA_TYPES = (CLOUDEVENTS_BATCH_MEDIA_TYPE, "application/json")


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """The schema with its local ``$defs`` references replaced by the definitions (self-contained for OpenAPI)."""
    if isinstance(schema, dict):
        reference = schema.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            return _inlined(definitions[reference.removeprefix("#/$defs/")], definitions)
        return {key: _inlined(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inlined(value, definitions) for value in schema]
    return schema


_RAW_BATCH_SCHEMA = TypeAdapter(list[UsageReportEvent]).json_schema()
_BATCH_SCHEMA = {
    **_inlined(_RAW_BATCH_SCHEMA, _RAW_BATCH_SCHEMA.get("$defs", {})),
    "minItems": 1,
    "maxItems": MAX_REPORT_BATCH,
}


def reporting_app(caller: CallerDep) -> Caller:
    """A vendor's app, with its client-credentials token and ``metering.report``."""
    if not caller.is_app:
        raise Forbidden(
            "用量只能由应用以其客户端凭证令牌上报，个人令牌不能上报；"
            "Usage is reported by an app with its client-credentials token, not by a person's token.",
        )
    caller.require_scope(REPORT_SCOPE)
    return caller


ReportingAppDep = Annotated[Caller, Depends(reporting_app)]


async def report_batch(request: Request, caller: ReportingAppDep) -> list[Any]:
    """The request's JSON array of events (each still unchecked: they are checked one by one)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"请以 {CLOUDEVENTS_BATCH_MEDIA_TYPE} 或 application/json 发送事件数组；"
            f"Send a JSON array of events as {CLOUDEVENTS_BATCH_MEDIA_TYPE} or application/json, "
            f"not {media_type or 'without a content type'}.",
        )
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("请求体不是有效的 JSON；The request body is not valid JSON.") from None
    if not isinstance(body, list):
        raise InvalidInput(
            "请求体必须是 CloudEvents 事件数组（批量格式）；"
            "The body must be a JSON array of CloudEvents (batch format).",
            errors=[FieldError(field="body", message="must be a JSON array of events", code="list_type")],
        )
    if not 1 <= len(body) <= MAX_REPORT_BATCH:
        raise InvalidInput(
            f"每批须包含 1 到 {MAX_REPORT_BATCH} 个事件，收到 {len(body)} 个；"
            f"A batch holds 1 to {MAX_REPORT_BATCH} events, not {len(body)}.",
            errors=[FieldError(field="body", message=f"must hold 1 to {MAX_REPORT_BATCH} events", code="batch_size")],
        )
    return body


@router.post(
    "/usage-reports",
    tags=["Usage reports"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media_type: {"schema": _BATCH_SCHEMA} for media_type in _MEDIA_TYPES},
        }
    },
)
def report_usage(
    caller: ReportingAppDep, events: Annotated[list[Any], Depends(report_batch)], session: SessionDep,
    settings: SettingsDep,
) -> ReportBatchResult:  # fmt: skip
    """Report units of use the app counted (a CloudEvents batch): each event is accepted, held, duplicate or
    rejected with a problem pointing into it; the valid ones are recorded together."""
    token_app_id = caller.principal.claims.app_id
    assert token_app_id is not None  # reporting_app checked it
    return reports.receive_reports(session, events, token_app_id=token_app_id, settings=settings)


def _period(period: str | None) -> str | None:
    if period is not None:
        try:
            periods.parse_period(period)
        except ValueError:
            raise InvalidInput(
                f"period 应为 YYYY-MM 格式，例如 2026-10；period must be YYYY-MM, e.g. 2026-10, not {period[:20]!r}.",
                errors=[FieldError(field="period", message="must be YYYY-MM", code="pattern")],
            ) from None
    return period


@router.get("/usage/held", tags=["Held usage"])
def list_held_usage(
    caller: CallerDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    status: Annotated[list[held.HeldStatus] | None, Query(description="held, not_installed, unknown")] = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    period: Annotated[str | None, Query(description="Billing period, YYYY-MM")] = None,
    cursor: Annotated[int, Query(ge=0, description="next_cursor of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> held.HeldUsagePage:
    """Usage held for review or not billable (not installed, unknown), with the reason, within the caller's reach."""
    reach = caller.reach(session)
    rows, next_cursor = held.list_held(
        session, reach, statuses=tuple(status or held.HELD_STATUSES), app_id=app_id, period=_period(period),
        cursor=cursor, limit=min(limit, settings.max_page_size),
    )  # fmt: skip
    return held.HeldUsagePage(items=[held.read(row) for row in rows], next_cursor=next_cursor)


@router.post("/usage/held/{usage_id}/decision", tags=["Held usage"])
def decide_held_usage(
    usage_id: Annotated[int, Path(ge=1)], decision: held.HeldDecisionCreate, caller: CallerDep, session: SessionDep
) -> held.HeldUsageRead:
    """Accept (pay) or reject (never pay) usage held for review, with a reason (city finance; audited)."""
    caller.require_finance()
    return held.read(held.decide(session, caller, usage_id, decision))
