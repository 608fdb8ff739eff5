"""Usage that is not paid automatically: held for the city's review, or kept but never billed, with the reason.

Readers see it within their reach (the city all of it, a district or school its schools, a vendor's developers
their vendor's apps). City finance decides what was held: accepted usage becomes billable in the period it counts
in (the next open one when its own has closed since), rejected usage is kept and never paid. Each decision is
audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, or_, select

from kit import audit
from kit.errors import Conflict, NotFound
from metering.deps import Caller, Reach
from metering.usage import service
from metering.usage.models import UsageEvent
from metering.usage.service import NOT_BILLABLE, change_status

#: The statuses this list shows: not paid now, but perhaps later (an installation or a launch that arrives late,
#: or the city's decision).
HELD_STATUSES = ("held", "not_installed", "unknown")
HeldStatus = Literal["held", "not_installed", "unknown"]
DecisionKind = Literal["accept", "reject"]

STATUS_LABELS = {
    "held": "待市级审核",
    "not_installed": "使用时未安装，不计费",
    "unknown": "无法识别，不计费",
    "billable": "计费",
    "rejected": "已驳回，不计费",
}
REASON_LABELS = {
    service.REASON_NOT_INSTALLED: "使用时该校未安装此应用",
    service.REASON_UNKNOWN_APP: "平台上没有此应用",
    service.REASON_NO_PLAN: "使用时没有生效的价格方案",
    service.REASON_NO_LAUNCH: "上报未注明所属的启动记录",
    service.REASON_LAUNCH_NOT_SEEN: "平台未观察到上报所注明的启动",
    service.REASON_LAUNCH_MISMATCH: "所注明的启动属于其他应用或学校",
    service.REASON_ABOVE_OBSERVED: "上报数量明显高于平台观察到的使用",
    service.REASON_ACCEPTED: "市级审核通过",
}


class HeldUsageRead(BaseModel):
    """One ledger row that is not paid automatically, and why."""

    id: int
    status: str
    status_label: str = Field(description="The status in Chinese")
    reason: str | None
    reason_label: str | None = Field(description="The reason in Chinese")
    source: str = Field(description="gateway | appstore | vendor | classroom")
    source_event_id: str = Field(description="The source's id of the event (for vendors: <app id>:<your event id>)")
    app_id: str
    vendor_id: str | None
    school_id: str
    meter: str
    quantity: int
    launch_id: str | None
    occurred_at: datetime
    usage_period: str = Field(description="The month of use")
    billing_period: str = Field(description="The month it counts in if it is paid")
    received_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None


class HeldUsagePage(BaseModel):
    items: list[HeldUsageRead]
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page")


class HeldDecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: DecisionKind = Field(description="accept: pay it; reject: keep it, never pay it")
    reason: str = Field(min_length=2, max_length=500, description="Why; kept with the usage and shown to the vendor")


class NotHeld(Conflict):
    slug = "metering/usage-not-held"
    title_zh = "该用量不在待审核状态"
    title_en = "Usage is not held for review"


class UnknownUsage(NotFound):
    slug = "metering/usage-not-found"
    title_zh = "用量记录不存在"
    title_en = "Usage not found"

    def __init__(self, usage_id: int) -> None:
        super().__init__(f"没有编号为 {usage_id} 的用量记录；No usage has the id {usage_id}.", usage_id=usage_id)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored moment is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read(event: UsageEvent) -> HeldUsageRead:
    return HeldUsageRead(
        id=int(event.id or 0), status=event.status, status_label=STATUS_LABELS.get(event.status, event.status),
        reason=event.reason, reason_label=REASON_LABELS.get(event.reason or "") if event.reason else None,
        source=event.source, source_event_id=event.source_event_id, app_id=event.app_id, vendor_id=event.vendor_id,
        school_id=event.school_id, meter=event.meter, quantity=event.quantity, launch_id=event.launch_id,
        occurred_at=_aware(event.occurred_at), usage_period=event.usage_period,
        billing_period=event.billing_period, received_at=_aware(event.received_at),
        decided_by=event.decided_by, decided_at=_aware(event.decided_at) if event.decided_at else None,
        decision_reason=event.decision_reason,
    )  # fmt: skip


def list_held(
    session: Session,
    reach: Reach,
    *,
    statuses: tuple[str, ...] = HELD_STATUSES,
    app_id: str | None = None,
    period: str | None = None,
    cursor: int = 0,
    limit: int = 100,
) -> tuple[list[UsageEvent], int | None]:
    """Usage not paid automatically, within the reader's reach, oldest first, after ``cursor``; and the next cursor."""
    query = select(UsageEvent).where(NOT_BILLABLE, col(UsageEvent.status).in_(statuses), col(UsageEvent.id) > cursor)
    if not reach.every_school:
        query = query.where(
            or_(
                col(UsageEvent.school_id).in_(sorted(reach.school_ids)),
                col(UsageEvent.vendor_id).in_(sorted(reach.vendor_ids)),
            )
        )
    if app_id is not None:
        query = query.where(UsageEvent.app_id == app_id)
    if period is not None:
        query = query.where(UsageEvent.billing_period == period)
    rows = list(session.exec(query.order_by(col(UsageEvent.id)).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def decide(session: Session, caller: Caller, usage_id: int, decision: HeldDecisionCreate) -> UsageEvent:
    """City finance accepts (pays) or rejects (never pays) usage held for review; audited."""
    event = session.exec(select(UsageEvent).where(UsageEvent.id == usage_id).with_for_update()).first()
    if event is None or event.source == "derived":
        raise UnknownUsage(usage_id)
    if event.status != "held":
        label = STATUS_LABELS.get(event.status, event.status)
        raise NotHeld(
            f"用量 {usage_id} 的状态是“{label}”，只有待审核的用量可以裁决；"
            f"Usage {usage_id} is {event.status}: only usage held for review can be decided.",
            status_now=event.status,
        )
    held_reason = event.reason
    if decision.decision == "accept":
        change_status(
            session, [event], status="billable", reason=service.REASON_ACCEPTED, decided_by=caller.person_id,
            decision_reason=decision.reason,
        )  # fmt: skip
    else:
        # The reason it was held stays: the decision's own words are in decision_reason.
        change_status(
            session, [event], status="rejected", reason=held_reason, decided_by=caller.person_id,
            decision_reason=decision.reason,
        )  # fmt: skip
    audit.append(
        session, action=f"usage.held_{'accepted' if decision.decision == 'accept' else 'rejected'}",
        actor_id=caller.person_id, actor_client=caller.principal.client_id, source_ip=caller.source_ip,
        request_id=caller.request_id, target_type="usage_event", target_id=str(usage_id),
        detail={
            "decision": decision.decision, "reason": decision.reason, "held_reason": held_reason,
            "app_id": event.app_id, "vendor_id": event.vendor_id, "school_id": event.school_id,
            "meter": event.meter, "quantity": event.quantity, "billing_period": event.billing_period,
        },
    )  # fmt: skip
    return event
