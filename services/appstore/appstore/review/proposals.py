"""Retirement proposals (淘汰建议): metering's benefit flags open them; a city reviewer retires the app or dismisses.

Metering flags an app that stayed below the city's benefit thresholds for consecutive periods
(``AppBenefitFlaggedV1``); the flag becomes one open proposal per app, refreshed by later flags, until a reviewer
decides it. When the app ranks within the thresholds again before anyone decided (``AppBenefitRecoveredV1``), the
open proposal is withdrawn. Retiring goes through the same status-change order as
``POST /apps/{app_id}/status-changes``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from appstore.apps import service as apps
from appstore.apps.models import App
from appstore.review import service as review
from appstore.review.models import AppStatusChange, RetirementProposal
from appstore.review.schemas import RetirementProposalDecisionCreate, StatusChangeCreate
from appstore.vendors.models import Vendor, as_utc
from contracts.envelope import EventEnvelope
from contracts.events.metering import AppBenefitFlaggedV1, AppBenefitRecoveredV1
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.outbox import utcnow

logger = logging.getLogger("appstore.review.proposals")

BENEFIT_SUBJECTS = [AppBenefitFlaggedV1.subject(), AppBenefitRecoveredV1.subject()]
SOURCE_METERING_BENEFIT = "metering_benefit"
REASONS_ZH = {"low_active_rate": "低活跃率", "high_cost_per_active_user": "人均成本过高"}
STATE_ZH = {"open": "待决定", "retirement_ordered": "已决定淘汰", "dismissed": "已驳回", "withdrawn": "因绩效回升撤回"}
#: A retirement ordered on a proposal takes effect this long after the decision unless the reviewer says otherwise,
#: so schools have time to move to another app.
DEFAULT_RETIREMENT_NOTICE = timedelta(days=30)


class UnknownRetirementProposal(NotFound):
    slug = "appstore/retirement-proposal-not-found"
    title_zh = "淘汰建议不存在"
    title_en = "Retirement proposal not found"

    def __init__(self, proposal_id: str) -> None:
        super().__init__(
            f"没有编号为 {proposal_id[:64]} 的淘汰建议；No retirement proposal has the id {proposal_id[:64]!r}.",
            proposal_id=proposal_id[:64],
        )


class RetirementProposalDecided(Conflict):
    slug = "appstore/retirement-proposal-decided"
    title_zh = "淘汰建议已有决定"
    title_en = "The retirement proposal is already decided"


class InvalidProposalDecision(InvalidInput):
    slug = "appstore/invalid-retirement-proposal-decision"
    title_zh = "淘汰建议的决定有误"
    title_en = "Invalid decision on a retirement proposal"


# --------------------------------------------------------------------------------------- the consumer


def _open_proposal(session: Session, app_id: str) -> RetirementProposal | None:
    return session.exec(
        select(RetirementProposal).where(RetirementProposal.app_id == app_id, RetirementProposal.state == "open")
    ).first()


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def apply_benefit_event(session: Session, envelope: EventEnvelope) -> None:
    """The consumer's handler of metering's benefit flags and recoveries (one consumer, so in their order)."""
    if envelope.type == AppBenefitFlaggedV1.event_type():
        _apply_flag(session, envelope)
    elif envelope.type == AppBenefitRecoveredV1.event_type():
        _apply_recovery(session, envelope)


def _apply_recovery(session: Session, envelope: EventEnvelope) -> None:
    """Withdraw the app's open proposal when the app ranked within the thresholds after the flags it rests on."""
    recovery = AppBenefitRecoveredV1.model_validate(envelope.data)
    proposal = _open_proposal(session, recovery.app_id)
    if proposal is None:
        logger.info("benefit recovery %s: app %s has no open proposal (decided already, or none); nothing to withdraw",
                    envelope.id, recovery.app_id)  # fmt: skip
        return
    if max(periods_of(proposal)) >= recovery.period:
        logger.info("benefit recovery %s: the open proposal %s rests on a flag of %s or later; kept",
                    envelope.id, proposal.id, recovery.period)  # fmt: skip
        return
    proposal.state = "withdrawn"
    proposal.decided_at = as_utc(recovery.recovered_at)
    proposal.note = (
        f"绩效回升：{recovery.period} 活跃率 {recovery.active_rate:.1%} 达到全市标准，淘汰建议自动撤回；"
        f"Ranked within the city's thresholds in {recovery.period} (active rate {recovery.active_rate:.1%}): withdrawn."
    )
    session.add(proposal)
    session.flush()


def _apply_flag(session: Session, envelope: EventEnvelope) -> None:
    """Open a retirement proposal for a flagged app, or refresh its open one."""
    if session.exec(select(RetirementProposal.id).where(RetirementProposal.event_id == envelope.id)).first():
        return  # this very flag was applied already
    flag = AppBenefitFlaggedV1.model_validate(envelope.data)
    app = session.get(App, flag.app_id)
    if app is None:
        logger.warning("benefit flag %s names unknown app %s; ignored", envelope.id, flag.app_id)
        return
    if app.status == "retired":
        logger.info("benefit flag %s: app %s is already retired; ignored", envelope.id, app.id)
        return
    pending = review.pending_change(session, app.id)
    if pending is not None and pending.status == "retired":
        logger.info("benefit flag %s: app %s is already being retired (%s); ignored", envelope.id, app.id, pending.id)
        return
    if flag.vendor_id != app.vendor_id:
        logger.warning("benefit flag %s names vendor %s but app %s belongs to vendor %s; the app's vendor is kept",
                       envelope.id, flag.vendor_id, app.id, app.vendor_id)  # fmt: skip
    flagged_at = as_utc(flag.flagged_at)
    proposal = _open_proposal(session, app.id)
    if proposal is None:
        proposal = RetirementProposal(
            app_id=app.id, vendor_id=app.vendor_id, source=SOURCE_METERING_BENEFIT, periods=json.dumps(flag.periods),
            reasons=json.dumps(_unique(list(flag.reasons))), active_rate=flag.active_rate,
            cost_per_active_user_fen=flag.cost_per_active_user_fen, flagged_at=flagged_at, event_id=envelope.id,
        )  # fmt: skip
    elif flagged_at <= as_utc(proposal.flagged_at):
        logger.info("benefit flag %s is older than the open proposal %s of app %s; ignored",
                    envelope.id, proposal.id, app.id)  # fmt: skip
        return
    else:
        # The newer flag's figures and reasons replace the older ones; its periods add to them.
        proposal.periods = json.dumps(sorted(set(json.loads(proposal.periods)) | set(flag.periods)))
        proposal.reasons = json.dumps(_unique(list(flag.reasons)))
        proposal.active_rate = flag.active_rate
        proposal.cost_per_active_user_fen = flag.cost_per_active_user_fen
        proposal.flagged_at = flagged_at
        proposal.event_id = envelope.id
    session.add(proposal)
    session.flush()


# --------------------------------------------------------------------------------------- reviewing


def proposals(
    session: Session, *, state: str | None, limit: int, offset: int
) -> tuple[list[tuple[RetirementProposal, App, Vendor]], int]:
    """Proposals with their app and vendor: open ones first, then the newest flagged."""
    where = [RetirementProposal.state == state] if state else []
    total = session.exec(select(sa.func.count()).select_from(RetirementProposal).where(*where)).one()
    rows = session.exec(
        select(RetirementProposal, App, Vendor)
        .join(App, col(App.id) == col(RetirementProposal.app_id))
        .join(Vendor, col(Vendor.id) == col(App.vendor_id))
        .where(*where)
        .order_by(
            sa.case((col(RetirementProposal.state) == "open", 0), else_=1),
            col(RetirementProposal.flagged_at).desc(),
            col(RetirementProposal.id),
        )
        .limit(limit)
        .offset(offset)
    ).all()
    return [(proposal, app, vendor) for proposal, app, vendor in rows], int(total)


def get_proposal(session: Session, proposal_id: str, *, for_update: bool = False) -> RetirementProposal:
    query = select(RetirementProposal).where(RetirementProposal.id == proposal_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two reviewers deciding at once: the second sees the first's decision
    proposal = session.exec(query).first()
    if proposal is None:
        raise UnknownRetirementProposal(proposal_id)
    return proposal


def decide(
    session: Session, *, proposal_id: str, data: RetirementProposalDecisionCreate, reviewer_id: str,
    now: datetime | None = None,
) -> tuple[RetirementProposal, AppStatusChange | None, int | None]:  # fmt: skip
    """Retire the app (schedules its retirement, default in 30 days) or dismiss the proposal, once.

    Returns the proposal, the status change ordered (retire) and how many schools were notified of it.
    """
    moment = now or utcnow()
    if data.decision == "dismiss" and data.effective_at is not None:
        raise InvalidProposalDecision(
            "驳回淘汰建议时不能填写生效时间；effective_at applies only to retire.",
            errors=[
                FieldError(field="effective_at", message="仅用于淘汰；only with decision retire", code="unexpected")
            ],
        )
    proposal = get_proposal(session, proposal_id, for_update=True)
    if proposal.state != "open":
        raise RetirementProposalDecided(
            f"该淘汰建议已{STATE_ZH.get(proposal.state, proposal.state)}，不能再次决定；"
            f"The proposal is already decided ({proposal.state}).",
            state=proposal.state,
        )
    change: AppStatusChange | None = None
    notified: int | None = None
    if data.decision == "retire":
        app = apps.get_app(session, proposal.app_id)
        order = StatusChangeCreate(
            status="retired", reason=data.reason, effective_at=data.effective_at or moment + DEFAULT_RETIREMENT_NOTICE
        )
        change, notified = review.schedule_status_change(
            session, app=app, data=order, requested_by=reviewer_id, now=moment
        )
        proposal.state = "retirement_ordered"
        proposal.status_change_id = change.id
    else:
        proposal.state = "dismissed"
    proposal.decided_by = reviewer_id
    proposal.decided_at = moment
    proposal.note = data.reason
    session.add(proposal)
    session.flush()
    return proposal, change, notified


def periods_of(proposal: RetirementProposal) -> list[str]:
    return list(json.loads(proposal.periods))


def reasons_of(proposal: RetirementProposal) -> list[str]:
    return list(json.loads(proposal.reasons))
