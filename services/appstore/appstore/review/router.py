"""HTTP routes of the city's review (审核准入): the queue, versions, decisions; suspension and retirement (淘汰);
notices to schools. Reviewers are city administrators with the ``apps.review`` scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlmodel import Session

from appstore.apps import service as apps
from appstore.apps.models import App, AppVersion
from appstore.apps.router import attachment_response, decisions_of
from appstore.apps.schemas import AttachmentRead
from appstore.deps import DEVELOPER_ROLE, REVIEWER_ROLES, SCHOOL_ADMIN_ROLES, Caller, CallerDep, school
from appstore.review import proposals, service
from appstore.review.models import AppStatusChange, RetirementProposal
from appstore.review.schemas import (
    DecisionCreate,
    DecisionResult,
    NoticeRead,
    ProposalState,
    QueueItem,
    QueuePage,
    RetirementProposalDecisionCreate,
    RetirementProposalDecisionResult,
    RetirementProposalPage,
    RetirementProposalRead,
    ReviewVersionRead,
    StatusChangeCreate,
    StatusChangeRead,
    VendorSummary,
)
from appstore.vendors.access import require_member
from appstore.vendors.models import Vendor
from kit import audit
from kit.db import ReadSessionDep, SessionDep
from kit.errors import Forbidden
from kit.pagination import PageDep

router = APIRouter(tags=["Review"])

SCOPE_REVIEW = "apps.review"
SCOPE_READ = "apps.read"


def require_reviewer(caller: Caller) -> None:
    """A city administrator with apps.review."""
    caller.require_scope(SCOPE_REVIEW)
    city = caller.city_path()
    if city is None or caller.is_app:
        raise Forbidden("只有市教育局的审核人员可以这样做；Only the city's reviewers (city_admin) may do this.")
    caller.require(roles=REVIEWER_ROLES, org_path=city, scope=SCOPE_REVIEW)


def _is_reviewer(caller: Caller) -> bool:
    city = caller.city_path()
    return (
        city is not None and caller.principal.has_scope(SCOPE_REVIEW)
        and caller.principal.can_act(REVIEWER_ROLES, org_path=city)
    )  # fmt: skip


def _vendor(vendor: Vendor) -> VendorSummary:
    return VendorSummary.model_validate(vendor, from_attributes=True)


def _audit(
    session: Session, caller: Caller, action: str, *, target_type: str, target_id: str, **detail: object
) -> None:
    audit.append(
        session, action=action, actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type=target_type, target_id=target_id,
        detail=dict(detail),
    )  # fmt: skip


@router.get("/review/queue")
def review_queue(caller: CallerDep, session: ReadSessionDep, page: PageDep) -> QueuePage:
    """Versions awaiting review, oldest first, each with what it changes against the published version."""
    require_reviewer(caller)
    rows, total = service.queue(session, limit=page.limit, offset=page.offset)
    return QueuePage(
        items=[
            QueueItem(
                version_id=version.id, app_id=app.id, app_name=apps.manifest_of(version).name.zh_cn,
                version=version.version, vendor=_vendor(vendor),
                submitted_at=version.submitted_at or version.created_at,
                changes=apps.changes_of(session, app, version),
            )
            for version, app, vendor in rows
        ],
        total=total, limit=page.limit, offset=page.offset,
    )  # fmt: skip


def _review_view(session: Session, version: AppVersion, app: App, vendor: Vendor) -> ReviewVersionRead:
    attachment = apps.attachment_info(session, version.id)
    return ReviewVersionRead(
        version_id=version.id, app_id=app.id, app_status=app.status, version=version.version, status=version.status,
        vendor=_vendor(vendor), manifest=apps.manifest_document(version),
        security_assessment=AttachmentRead(
            filename=attachment.filename, content_type=attachment.content_type, size_bytes=attachment.size_bytes,
            sha256=attachment.sha256, uploaded_at=attachment.uploaded_at,
        ) if attachment else None,
        security_assessment_url=f"/review/versions/{version.id}/security-assessment" if attachment else None,
        changes=apps.changes_of(session, app, version), decisions=decisions_of(session, version.id),
        submitted_at=version.submitted_at,
    )  # fmt: skip


@router.get("/review/versions/{version_id}")
def read_for_review(version_id: str, caller: CallerDep, session: SessionDep) -> ReviewVersionRead:
    """A version as the reviewer sees it: manifest, attachment, the vendor's filings, changes, earlier decisions."""
    require_reviewer(caller)
    version, app, vendor = service.get_version(session, version_id)
    _audit(session, caller, "review.version_opened", target_type="app_version", target_id=version.id)
    return _review_view(session, version, app, vendor)


@router.get("/review/versions/{version_id}/security-assessment", response_class=Response)
def download_for_review(version_id: str, caller: CallerDep, session: ReadSessionDep) -> Response:
    """Download the version's security self-assessment (PDF)."""
    require_reviewer(caller)
    version, _, _ = service.get_version(session, version_id)
    return attachment_response(session, version)


@router.post("/review/versions/{version_id}/decisions", status_code=status.HTTP_201_CREATED)
def decide(version_id: str, body: DecisionCreate, caller: CallerDep, session: SessionDep) -> DecisionResult:
    """Approve (every checklist item true; publishes the version), reject or request changes (with reasons)."""
    require_reviewer(caller)
    version, app, _ = service.get_version(session, version_id)
    decision = service.decide(session, version=version, app=app, reviewer_id=caller.person_id, data=body)
    _audit(
        session, caller, f"review.{body.decision}", target_type="app_version", target_id=version.id,
        app_id=app.id, decision_id=decision.id, reasons=body.reasons, checklist=body.checklist.model_dump(),
    )  # fmt: skip
    read = next(item for item in decisions_of(session, version.id) if item.id == decision.id)
    return DecisionResult(decision=read, version_status=version.status, app_status=app.status)


def _change_read(change: AppStatusChange, notified: int | None = None) -> StatusChangeRead:
    return StatusChangeRead(
        id=change.id, app_id=change.app_id, status=change.status, reason=change.reason,
        effective_at=change.effective_at, created_at=change.created_at, applied_at=change.applied_at,
        outcome=change.outcome, installations_removed=change.installations_removed, schools_notified=notified,
    )  # fmt: skip


@router.post("/apps/{app_id}/status-changes", status_code=status.HTTP_201_CREATED)
def order_status_change(
    app_id: str, body: StatusChangeCreate, caller: CallerDep, session: SessionDep
) -> StatusChangeRead:
    """Suspend, reinstate or retire (淘汰) an app, now or at a future time; schools using it are notified."""
    require_reviewer(caller)
    app = apps.get_app(session, app_id)
    change, notified = service.schedule_status_change(session, app=app, data=body, requested_by=caller.person_id)
    _audit(
        session, caller, "app.status_change_ordered", target_type="app", target_id=app.id, change_id=change.id,
        status=change.status, reason=change.reason, effective_at=change.effective_at.isoformat(),
    )  # fmt: skip
    return _change_read(change, notified)


@router.delete("/apps/{app_id}/status-changes/{change_id}")
def cancel_status_change(app_id: str, change_id: str, caller: CallerDep, session: SessionDep) -> StatusChangeRead:
    """Withdraw a change that has not taken effect yet."""
    require_reviewer(caller)
    app = apps.get_app(session, app_id)
    change = service.cancel_status_change(session, app=app, change_id=change_id)
    _audit(session, caller, "app.status_change_cancelled", target_type="app", target_id=app.id, change_id=change.id)
    return _change_read(change)


@router.get("/apps/{app_id}/status-changes")
def list_status_changes(app_id: str, caller: CallerDep, session: ReadSessionDep) -> list[StatusChangeRead]:
    """The city's suspension, reinstatement and retirement orders for an app (reviewers and the vendor's developers)."""
    if _is_reviewer(caller):
        apps.get_app(session, app_id)
    elif caller.principal.roles_named(DEVELOPER_ROLE):
        require_member(session, caller, apps.get_app(session, app_id).vendor_id)
    else:
        require_reviewer(caller)
    return [_change_read(change) for change in service.changes_of_app(session, app_id)]


@router.get("/schools/{school_id}/notices")
def school_notices(
    school_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[NoticeRead]:
    """Notices to the school about apps it installed being suspended, reinstated or retired, newest first."""
    organisation = school(session, school_id)
    caller.require(roles=SCHOOL_ADMIN_ROLES, org_path=organisation.path, scope=SCOPE_READ)
    notices = service.notices_for(session, school_id, limit=limit, offset=offset)
    names: dict[str, str] = {}
    for notice in notices:
        if notice.app_id not in names:
            names[notice.app_id] = apps.display_name(session, apps.get_app(session, notice.app_id))
    return [
        NoticeRead(id=notice.id, app_id=notice.app_id, app_name=names[notice.app_id], kind=notice.kind,
                   message=notice.message, effective_at=notice.effective_at, created_at=notice.created_at)
        for notice in notices
    ]  # fmt: skip


def _proposal_read(session: Session, proposal: RetirementProposal, app: App, vendor: Vendor) -> RetirementProposalRead:
    reasons = proposals.reasons_of(proposal)
    return RetirementProposalRead(
        id=proposal.id, app_id=app.id, app_name=apps.display_name(session, app), app_status=app.status,
        vendor=_vendor(vendor), source=proposal.source, periods=proposals.periods_of(proposal), reasons=reasons,
        reasons_zh=[proposals.REASONS_ZH.get(reason, reason) for reason in reasons], active_rate=proposal.active_rate,
        cost_per_active_user_fen=proposal.cost_per_active_user_fen, flagged_at=proposal.flagged_at,
        state=proposal.state, decided_by=proposal.decided_by, decided_at=proposal.decided_at, note=proposal.note,
        status_change_id=proposal.status_change_id, created_at=proposal.created_at,
    )  # fmt: skip


@router.get("/review/retirement-proposals")
def retirement_proposals(
    caller: CallerDep, session: ReadSessionDep, page: PageDep, state: ProposalState | None = None
) -> RetirementProposalPage:
    """Apps proposed for retirement (淘汰) by metering's benefit ranking, open ones first, with the figures."""
    require_reviewer(caller)
    rows, total = proposals.proposals(session, state=state, limit=page.limit, offset=page.offset)
    return RetirementProposalPage(
        items=[_proposal_read(session, proposal, app, vendor) for proposal, app, vendor in rows],
        total=total, limit=page.limit, offset=page.offset,
    )  # fmt: skip


@router.post("/review/retirement-proposals/{proposal_id}/decision")
def decide_retirement_proposal(
    proposal_id: str, body: RetirementProposalDecisionCreate, caller: CallerDep, session: SessionDep
) -> RetirementProposalDecisionResult:
    """Retire the app (schedules its retirement, by default in 30 days; schools are notified) or dismiss, once."""
    require_reviewer(caller)
    proposal, change, notified = proposals.decide(
        session, proposal_id=proposal_id, data=body, reviewer_id=caller.person_id
    )
    if change is not None:
        _audit(
            session, caller, "app.status_change_ordered", target_type="app", target_id=proposal.app_id,
            change_id=change.id, status=change.status, reason=change.reason,
            effective_at=change.effective_at.isoformat(), retirement_proposal_id=proposal.id,
        )  # fmt: skip
    _audit(
        session, caller, f"review.retirement_proposal_{body.decision}", target_type="retirement_proposal",
        target_id=proposal.id, app_id=proposal.app_id, reason=body.reason, change_id=proposal.status_change_id,
    )  # fmt: skip
    app = apps.get_app(session, proposal.app_id)
    vendor = session.get(Vendor, app.vendor_id)
    assert vendor is not None
    return RetirementProposalDecisionResult(
        proposal=_proposal_read(session, proposal, app, vendor),
        status_change=_change_read(change, notified) if change is not None else None,
    )
