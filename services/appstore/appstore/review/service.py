"""The city's review (审核准入) of submitted versions, publication, and suspension / retirement (淘汰) of apps."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlmodel import Session, col, select

from appstore.apps import service as apps
from appstore.apps.errors import UnknownVersion, VersionStateConflict
from appstore.apps.models import App, AppVersion
from appstore.catalog.service import refresh_entry
from appstore.installations.models import Installation
from appstore.review.models import AppStatusChange, ReviewDecision, SchoolNotice
from appstore.review.schemas import DecisionCreate, StatusChangeCreate
from appstore.vendors.models import Vendor, as_utc
from contracts.events.appstore import AppPublishedV1, AppStatusChangedV1, AppVersionReviewedV1, RemovalReason
from contracts.manifest import AppManifestV1
from kit import audit, outbox
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.outbox import utcnow

logger = logging.getLogger("appstore.review")

CHECKLIST_ZH = {
    "filings_valid": "备案信息有效",
    "privacy_purposes_adequate": "数据使用目的充分且必要",
    "content_appropriate": "内容适宜",
    "security_assessment_attached": "已附安全自评估报告",
}
STATUS_ZH = {"suspended": "暂停", "listed": "恢复上架", "retired": "淘汰（永久下架）"}
NOTICE_KIND = {"suspended": "app_suspended", "listed": "app_reinstated", "retired": "app_retired"}
#: Schools read times in Beijing time (no daylight saving: a fixed offset is exact).
CHINA_TIME = timezone(timedelta(hours=8), "CST")
# Where each change may start from.
ALLOWED_FROM = {"suspended": ("listed",), "listed": ("suspended",), "retired": ("draft", "listed", "suspended")}


class InvalidDecision(InvalidInput):
    slug = "appstore/invalid-review-decision"
    title_zh = "审核结论不完整"
    title_en = "Incomplete review decision"


class StatusChangeConflict(Conflict):
    slug = "appstore/status-change-conflict"
    title_zh = "应用状态不允许此变更"
    title_en = "The app's status does not allow this change"


class UnknownStatusChange(NotFound):
    slug = "appstore/status-change-not-found"
    title_zh = "状态变更不存在"
    title_en = "Status change not found"


# ------------------------------------------------------------------------------------------ the queue


def queue(session: Session, *, limit: int, offset: int) -> tuple[list[tuple[AppVersion, App, Vendor]], int]:
    """Submitted versions, oldest first."""
    base = (
        select(AppVersion, App, Vendor)
        .join(App, col(App.id) == col(AppVersion.app_id))
        .join(Vendor, col(Vendor.id) == col(App.vendor_id))
        .where(AppVersion.status == "submitted")
    )
    total = session.exec(select(sa.func.count()).select_from(AppVersion).where(AppVersion.status == "submitted")).one()
    rows = session.exec(
        base.order_by(col(AppVersion.submitted_at), col(AppVersion.id)).limit(limit).offset(offset)
    ).all()
    return [(version, app, vendor) for version, app, vendor in rows], int(total)


def get_version(session: Session, version_id: str) -> tuple[AppVersion, App, Vendor]:
    version = session.get(AppVersion, version_id)
    if version is None or version.status == "draft":  # a vendor's draft is not the city's business yet
        raise UnknownVersion(version_id)
    app = apps.get_app(session, version.app_id)
    vendor = session.get(Vendor, app.vendor_id)
    assert vendor is not None
    return version, app, vendor


# ---------------------------------------------------------------------------------------- deciding


def _validate_decision(data: DecisionCreate) -> list[str]:
    reasons = [reason.strip()[:500] for reason in data.reasons if reason.strip()]
    if data.decision == "approved":
        unticked = [name for name, value in data.checklist.model_dump().items() if not value]
        if unticked:
            raise InvalidDecision(
                "通过审核需要核对清单全部勾选：" + "、".join(CHECKLIST_ZH[name] for name in unticked)
                + f"；Approving needs every checklist item true: {', '.join(unticked)}.",
                errors=[
                    FieldError(field=f"checklist.{name}", message=f"须为 true：{CHECKLIST_ZH[name]}；must be true",
                               code="unticked")
                    for name in unticked
                ],
            )  # fmt: skip
    elif not reasons:
        raise InvalidDecision(
            "驳回或要求修改时请至少写明一条理由，开发企业会看到；Rejecting or requesting changes needs at least one "
            "reason (the vendor sees it).",
            errors=[FieldError(field="reasons", message="至少一条理由；at least one reason", code="required")],
        )
    return reasons


def decide(
    session: Session, *, version: AppVersion, app: App, reviewer_id: str, data: DecisionCreate,
    now: datetime | None = None,
) -> ReviewDecision:  # fmt: skip
    """Record a reviewer's decision on a submitted version; approving publishes it. Emits AppVersionReviewedV1."""
    reasons = _validate_decision(data)
    if version.status != "submitted":
        raise VersionStateConflict(
            f"版本 {version.version} 不在待审核状态（当前：{version.status}）；"
            f"Version {version.version} is not awaiting review (it is {version.status}).",
            version_status=version.status,
        )
    moment = now or utcnow()
    decision = ReviewDecision(
        version_id=version.id, app_id=app.id, decision=data.decision, reviewer_id=reviewer_id,
        checklist=json.dumps(data.checklist.model_dump(), sort_keys=True), reasons=json.dumps(reasons,
        ensure_ascii=False), decided_at=moment,
    )  # fmt: skip
    session.add(decision)
    version.status = data.decision
    version.reviewed_at = moment
    session.add(version)
    outbox.emit(
        session,
        AppVersionReviewedV1(
            app_id=app.id, version_id=version.id, vendor_id=app.vendor_id, decision=data.decision, reasons=reasons,
            reviewed_at=moment,
        ),
        subject_id=app.id,
    )  # fmt: skip
    if data.decision == "approved":
        publish(session, app=app, version=version, now=moment)
    session.flush()
    return decision


def publish(session: Session, *, app: App, version: AppVersion, now: datetime) -> None:
    """Make an approved version the app's current one; the previous one is superseded. Emits AppPublishedV1."""
    if app.published_version_id and app.published_version_id != version.id:
        previous = session.get(AppVersion, app.published_version_id)
        if previous is not None:
            previous.status = "superseded"
            session.add(previous)
    version.status = "published"
    version.published_at = now
    session.add(version)
    app.published_version_id = version.id
    if app.status in ("draft", "listed"):
        app.status = "listed"
    app.updated_at = now
    session.add(app)
    session.flush()
    manifest = AppManifestV1.model_validate_json(version.manifest)
    outbox.emit(
        session,
        AppPublishedV1(
            app_id=app.id, vendor_id=app.vendor_id, version_id=version.id, app_version=version.version,
            client_id=app.client_id, scopes=version.scopes.split(), pricing_unit=version.pricing_unit,
            unit_price_fen=version.unit_price_fen, monthly_cap_fen_per_school=version.monthly_cap_fen_per_school,
            effective_at=now, app_name=manifest.name.zh_cn, reported_unit_name=(
                manifest.pricing.reported_unit_name.zh_cn if manifest.pricing.reported_unit_name else None
            ),
        ),
        subject_id=app.id,
    )  # fmt: skip
    refresh_entry(session, app)


# ------------------------------------------------------------------------------- suspension, retirement


def pending_change(session: Session, app_id: str) -> AppStatusChange | None:
    return session.exec(
        select(AppStatusChange).where(AppStatusChange.app_id == app_id, col(AppStatusChange.applied_at).is_(None))
    ).first()


def _check_transition(app: App, status: str) -> None:
    if app.status == "retired":
        raise StatusChangeConflict("应用已被淘汰，不能恢复或再变更；A retired app cannot be reinstated or changed.",
                                   app_status=app.status)  # fmt: skip
    if app.status not in ALLOWED_FROM[status]:
        raise StatusChangeConflict(
            f"应用当前状态为 {app.status}，不能{STATUS_ZH[status]}；The app is {app.status}: it cannot become {status} "
            f"(only from {', '.join(ALLOWED_FROM[status])}).",
            app_status=app.status,
        )


def _notify_schools(session: Session, *, app: App, change: AppStatusChange) -> int:
    """Tell the schools concerned: those using the app, or (on reinstatement) those that lost it by suspension."""
    if change.status == "listed":
        query = select(Installation.school_id).where(
            Installation.app_id == app.id, Installation.status == "removed",
            Installation.removal_reason == "app_suspended",
        )  # fmt: skip
    else:
        query = select(Installation.school_id).where(Installation.app_id == app.id, Installation.status == "active")
    school_ids = sorted(set(session.exec(query).all()))
    name = apps.display_name(session, app)
    when = as_utc(change.effective_at).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M（北京时间）")
    messages = {
        "suspended": f"应用“{name}”将于 {when} 起被暂停使用，届时本校的安装将被移除、授权将被收回。"
        f"原因：{change.reason}",
        "retired": f"应用“{name}”将于 {when} 起被淘汰（永久下架），届时本校的安装将被移除、授权将被收回，"
        f"开发企业须按承诺删除本校数据。原因：{change.reason}",
        "listed": f"应用“{name}”已于 {when} 恢复上架，如需继续使用请重新安装。说明：{change.reason}",
    }
    for school_id in school_ids:
        session.add(
            SchoolNotice(
                school_id=school_id, app_id=app.id, kind=NOTICE_KIND[change.status],
                message=messages[change.status], effective_at=change.effective_at, change_id=change.id,
            )
        )  # fmt: skip
    session.flush()
    return len(school_ids)


def schedule_status_change(
    session: Session, *, app: App, data: StatusChangeCreate, requested_by: str, now: datetime | None = None
) -> tuple[AppStatusChange, int]:
    """Order a suspension, reinstatement or retirement; applied at once when due. Returns it and schools notified."""
    moment = now or utcnow()
    _check_transition(app, data.status)
    pending = pending_change(session, app.id)
    if pending is not None:
        raise StatusChangeConflict(
            f"该应用已有一项待生效的变更（{STATUS_ZH[pending.status]}，{as_utc(pending.effective_at).isoformat()}），"
            f"请先撤销；The app already has a pending change ({pending.status}): cancel it first.",
            pending_change_id=pending.id,
        )
    effective_at = max(as_utc(data.effective_at), moment) if data.effective_at else moment
    change = AppStatusChange(
        app_id=app.id, status=data.status, reason=data.reason.strip(), effective_at=effective_at,
        requested_by=requested_by, created_at=moment,
    )  # fmt: skip
    session.add(change)
    session.flush()
    notified = _notify_schools(session, app=app, change=change)
    if effective_at <= moment:
        apply_change(session, change, now=moment)
    return change, notified


def cancel_status_change(session: Session, *, app: App, change_id: str) -> AppStatusChange:
    change = session.get(AppStatusChange, change_id)
    if change is None or change.app_id != app.id:
        raise UnknownStatusChange(f"没有编号为 {change_id[:64]} 的状态变更；No status change {change_id[:64]!r}.")
    if change.applied_at is not None:
        raise StatusChangeConflict("该变更已生效，不能撤销；The change has already taken effect.")
    change.applied_at = utcnow()
    change.outcome = "cancelled"
    session.add(change)
    # The schools told about the change are told it is withdrawn.
    announced = session.exec(select(SchoolNotice).where(SchoolNotice.change_id == change.id)).all()
    for notice in announced:
        session.add(
            SchoolNotice(
                school_id=notice.school_id, app_id=app.id, kind="change_withdrawn", change_id=change.id,
                message=f"此前通知的“{STATUS_ZH[change.status]}”已撤销，应用“{apps.display_name(session, app)}”"
                "可继续正常使用。",
                effective_at=change.applied_at,
            )
        )  # fmt: skip
    session.flush()
    return change


def _remove_installations(session: Session, *, app_id: str, reason: RemovalReason, at: datetime) -> int:
    try:
        from appstore.installations.service import remove_all_for_app
    except ImportError:  # the installations service is written in parallel; without it there is nothing to remove
        logger.warning("appstore.installations.service.remove_all_for_app is missing; installations of %s kept", app_id)
        return 0
    return int(remove_all_for_app(session, app_id=app_id, reason=reason, at=at))


def apply_change(session: Session, change: AppStatusChange, *, now: datetime | None = None) -> AppStatusChange:
    """Apply a due change once: the app's status, the event, its installations removed, the catalog entry."""
    if change.applied_at is not None:
        return change
    moment = now or utcnow()
    app = apps.get_app(session, change.app_id)
    change.applied_at = moment
    try:
        _check_transition(app, change.status)
    except StatusChangeConflict:
        change.outcome = "skipped"  # e.g. retired meanwhile; the order no longer fits
        session.add(change)
        session.flush()
        return change
    app.status = change.status
    app.status_reason = change.reason
    app.status_effective_at = change.effective_at
    app.updated_at = moment
    session.add(app)
    change.outcome = "applied"
    outbox.emit(
        session,
        AppStatusChangedV1(
            app_id=app.id, vendor_id=app.vendor_id, client_id=app.client_id, status=change.status,
            reason=change.reason, effective_at=as_utc(change.effective_at),
        ),
        subject_id=app.id,
    )  # fmt: skip
    if change.status in ("suspended", "retired"):
        reason: RemovalReason = "app_suspended" if change.status == "suspended" else "app_retired"
        change.installations_removed = _remove_installations(session, app_id=app.id, reason=reason, at=moment)
    session.add(change)
    session.flush()
    refresh_entry(session, app)
    audit.append(
        session, action=f"app.status_{change.status}", actor_id=change.requested_by, actor_client="appstore",
        target_type="app", target_id=app.id,
        detail={"change_id": change.id, "reason": change.reason, "installations_removed": change.installations_removed,
                "effective_at": as_utc(change.effective_at).isoformat()},
    )  # fmt: skip
    return change


def apply_due_changes(session: Session, *, now: datetime | None = None, limit: int = 100) -> int:
    """Apply every change whose time has come, oldest first; safe to run from several workers at once."""
    moment = now or utcnow()
    query = (
        select(AppStatusChange)
        .where(col(AppStatusChange.applied_at).is_(None), col(AppStatusChange.effective_at) <= moment)
        .order_by(col(AppStatusChange.effective_at))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    applied = 0
    for change in session.exec(query).all():
        apply_change(session, change, now=moment)
        applied += 1
    return applied


def changes_of_app(session: Session, app_id: str) -> list[AppStatusChange]:
    return list(
        session.exec(
            select(AppStatusChange).where(AppStatusChange.app_id == app_id).order_by(col(AppStatusChange.created_at))
        ).all()
    )


def notices_for(session: Session, school_id: str, *, limit: int, offset: int) -> list[SchoolNotice]:
    return list(
        session.exec(
            select(SchoolNotice)
            .where(SchoolNotice.school_id == school_id)
            .order_by(col(SchoolNotice.created_at).desc(), col(SchoolNotice.id))
            .limit(limit)
            .offset(offset)
        ).all()
    )
