"""Apps and their manifest versions: create, edit drafts, attach the security self-assessment, submit for review.

Also the stable lookups other parts of the store use: :func:`get_app`, :func:`published_manifest`, :func:`manifest_of`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from sqlmodel import Session, col, select

from appstore.apps.errors import (
    NoAttachment,
    SubmissionIncomplete,
    UnknownVersion,
    VersionImmutable,
    VersionNotIncreasing,
    VersionStateConflict,
)
from appstore.apps.manifests import parse_manifest
from appstore.apps.models import App, AppVersion, VersionAttachment
from appstore.apps.schemas import PriceChange, PriceTerms, ScopeChange, VersionChanges
from appstore.apps.semver import SemVer
from appstore.errors import UnknownApp
from appstore.vendors.errors import VendorSuspended
from appstore.vendors.models import Vendor
from contracts.events.appstore import AppVersionSubmittedV1
from contracts.manifest import PRICING_UNIT_LABELS, AppManifestV1
from contracts.scopes import scope as catalogue_scope
from kit import outbox
from kit.errors import FieldError, PayloadTooLarge, UnsupportedMediaType
from kit.outbox import utcnow

PDF_MAGIC = b"%PDF-"
EDITABLE = ("draft",)


# ------------------------------------------------------------------------------------------ lookups


def get_app(session: Session, app_id: str) -> App:
    """The app; a typed 404 when there is none."""
    app = session.get(App, app_id)
    if app is None:
        raise UnknownApp(app_id)
    return app


def manifest_of(version: AppVersion) -> AppManifestV1:
    """The version's manifest, as stored (it was validated when written)."""
    return AppManifestV1.model_validate_json(version.manifest)


def published_manifest(session: Session, app: App) -> AppManifestV1 | None:
    """The manifest of the app's published version, None while it has none."""
    if app.published_version_id is None:
        return None
    version = session.get(AppVersion, app.published_version_id)
    return manifest_of(version) if version is not None else None


def get_version(session: Session, app: App, version_id: str) -> AppVersion:
    version = session.get(AppVersion, version_id)
    if version is None or version.app_id != app.id:
        raise UnknownVersion(version_id)
    return version


def versions_of(session: Session, app_id: str) -> list[AppVersion]:
    return list(
        session.exec(select(AppVersion).where(AppVersion.app_id == app_id).order_by(col(AppVersion.created_at))).all()
    )


def apps_of_vendor(session: Session, vendor_id: str) -> list[App]:
    return list(session.exec(select(App).where(App.vendor_id == vendor_id).order_by(col(App.created_at))).all())


def display_name(session: Session, app: App) -> str:
    """The published version's Chinese name, else the newest version's."""
    version = session.get(AppVersion, app.published_version_id) if app.published_version_id else None
    if version is None:
        version = session.exec(
            select(AppVersion).where(AppVersion.app_id == app.id).order_by(col(AppVersion.created_at).desc()).limit(1)
        ).first()
    return manifest_of(version).name.zh_cn if version is not None else ""


# ------------------------------------------------------------------------------------------ writing


def _fill(version: AppVersion, manifest: AppManifestV1) -> None:
    version.version = manifest.version
    version.manifest = manifest.model_dump_json(by_alias=True, exclude_none=True)
    version.scopes = " ".join(manifest.scope_ids)
    version.pricing_unit = manifest.pricing.unit
    version.unit_price_fen = manifest.pricing.unit_price_fen
    version.monthly_cap_fen_per_school = manifest.pricing.monthly_cap_fen_per_school


def _require_increasing(session: Session, app_id: str, version: str, *, except_id: str | None = None) -> None:
    new = SemVer(version)
    for other in versions_of(session, app_id):
        if other.id != except_id and SemVer(other.version) >= new:
            raise VersionNotIncreasing(
                f"版本号 {version} 必须大于已有的版本 {other.version}；The version {version} must be greater than the "
                f"existing version {other.version} (semantic versioning).",
                errors=[FieldError(field="/version", message=f"must be greater than {other.version}", code="order")],
            )


def _require_active_vendor(session: Session, vendor_id: str) -> None:
    vendor = session.get(Vendor, vendor_id)
    if vendor is not None and vendor.status != "active":
        raise VendorSuspended("开发企业已被暂停，不能提交应用；The vendor is suspended and cannot submit apps.")


def create_app(
    session: Session, *, vendor_id: str, document: Any, created_by: str, environment: str, resolve_hosts: bool = True
) -> tuple[App, AppVersion]:
    """A new draft app with its first manifest version."""
    _require_active_vendor(session, vendor_id)
    manifest = parse_manifest(document, environment=environment, resolve_hosts=resolve_hosts)
    app = App(vendor_id=vendor_id, client_id="app-" + secrets.token_hex(6), created_by=created_by)
    session.add(app)
    session.flush()
    version = AppVersion(app_id=app.id, version="", manifest="", scopes="", pricing_unit="", unit_price_fen=0,
                         created_by=created_by)  # fmt: skip
    _fill(version, manifest)
    session.add(version)
    session.flush()
    return app, version


def add_version(
    session: Session, *, app: App, document: Any, created_by: str, environment: str, resolve_hosts: bool = True
) -> AppVersion:
    """A new draft version; its version number must be greater than every earlier one."""
    _require_active_vendor(session, app.vendor_id)
    if app.status == "retired":
        raise VersionStateConflict("应用已被淘汰，不能再提交新版本；The app is retired and takes no new versions.")
    manifest = parse_manifest(document, environment=environment, resolve_hosts=resolve_hosts)
    _require_increasing(session, app.id, manifest.version)
    version = AppVersion(app_id=app.id, version="", manifest="", scopes="", pricing_unit="", unit_price_fen=0,
                         created_by=created_by)  # fmt: skip
    _fill(version, manifest)
    session.add(version)
    app.updated_at = utcnow()
    session.add(app)
    session.flush()
    return version


def _require_editable(version: AppVersion) -> None:
    if version.status not in EDITABLE:
        raise VersionImmutable(
            f"版本 {version.version} 已{_STATUS_ZH.get(version.status, version.status)}，不能再修改；"
            "请新建一个更高的版本。"
            f"Version {version.version} is {version.status} and never changes again: add a new, higher version.",
            version_status=version.status,
        )


_STATUS_ZH = {
    "submitted": "提交审核",
    "changes_requested": "被要求修改",
    "rejected": "被驳回",
    "approved": "通过审核",
    "published": "发布",
    "superseded": "被新版本取代",
}


def edit_version(
    session: Session, *, app: App, version: AppVersion, document: Any, environment: str, resolve_hosts: bool = True
) -> AppVersion:
    """Replace a draft's manifest."""
    _require_editable(version)
    manifest = parse_manifest(document, environment=environment, resolve_hosts=resolve_hosts)
    if manifest.version != version.version:
        _require_increasing(session, app.id, manifest.version, except_id=version.id)
    _fill(version, manifest)
    session.add(version)
    session.flush()
    return version


def attach_security_assessment(
    session: Session, *, version: AppVersion, filename: str, content_type: str, content: bytes, uploaded_by: str,
    max_bytes: int,
) -> VersionAttachment:  # fmt: skip
    """Attach (or replace) the draft's security self-assessment: a PDF within the size limit."""
    _require_editable(version)
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"安全自评估报告不能超过 {max_bytes // (1024 * 1024)} MB；The security self-assessment may be at most "
            f"{max_bytes} bytes, this one has {len(content)}.",
            max_bytes=max_bytes,
        )
    if not content.startswith(PDF_MAGIC):
        raise UnsupportedMediaType(
            "安全自评估报告必须是 PDF 文件；The security self-assessment must be a PDF file (it starts with %PDF-).",
            errors=[FieldError(field="file", message="not a PDF document", code="not_pdf")],
        )
    existing = session.get(VersionAttachment, (version.id, "security_assessment"))
    attachment = existing or VersionAttachment(
        version_id=version.id, filename="", content_type="", size_bytes=0, sha256="", content=b"", uploaded_by=""
    )
    attachment.filename = (filename or "security-assessment.pdf")[-200:]
    attachment.content_type = "application/pdf"
    attachment.size_bytes = len(content)
    attachment.sha256 = hashlib.sha256(content).hexdigest()
    attachment.content = content
    attachment.uploaded_by = uploaded_by
    attachment.uploaded_at = utcnow()
    session.add(attachment)
    session.flush()
    return attachment


def security_assessment(session: Session, version: AppVersion) -> VersionAttachment:
    attachment = session.get(VersionAttachment, (version.id, "security_assessment"))
    if attachment is None:
        raise NoAttachment(f"版本 {version.version} 尚未上传安全自评估报告；Version {version.version} has no security "
                           "self-assessment yet.")  # fmt: skip
    return attachment


def attachment_info(session: Session, version_id: str) -> VersionAttachment | None:
    return session.get(VersionAttachment, (version_id, "security_assessment"))


# ---------------------------------------------------------------------------------- comparing versions


def _terms(manifest: AppManifestV1) -> PriceTerms:
    pricing = manifest.pricing
    return PriceTerms(
        unit=pricing.unit, unit_label=PRICING_UNIT_LABELS[pricing.unit], unit_price_fen=pricing.unit_price_fen,
        monthly_cap_fen_per_school=pricing.monthly_cap_fen_per_school,
    )  # fmt: skip


def compare(manifest: AppManifestV1, published: AppManifestV1 | None, published_version: str | None) -> VersionChanges:
    """What ``manifest`` changes against the published manifest: scopes added and removed (with purposes), price."""
    if published is None:
        return VersionChanges(published_version=None, needs_regrant=False, price_changed=False)
    before = {request.scope: request for request in published.scopes}
    after = {request.scope: request for request in manifest.scopes}
    added = [
        ScopeChange(scope=scope, purpose_zh=after[scope].purpose.zh_cn,
                    description_zh=catalogue_scope(scope).description_zh)
        for scope in sorted(set(after) - set(before))
    ]  # fmt: skip
    removed = [
        ScopeChange(scope=scope, purpose_zh=before[scope].purpose.zh_cn,
                    description_zh=catalogue_scope(scope).description_zh)
        for scope in sorted(set(before) - set(after))
    ]  # fmt: skip
    price_changed = manifest.pricing != published.pricing
    return VersionChanges(
        published_version=published_version, added_scopes=added, removed_scopes=removed, needs_regrant=bool(added),
        price_changed=price_changed,
        price_change=PriceChange(before=_terms(published), after=_terms(manifest)) if price_changed else None,
    )  # fmt: skip


def changes_of(session: Session, app: App, version: AppVersion) -> VersionChanges:
    """The version against the app's currently published version (itself, once published: no changes)."""
    if app.published_version_id == version.id or version.status in ("published", "superseded"):
        recorded = VersionChanges(
            published_version=None, needs_regrant=version.needs_regrant, price_changed=version.price_changed
        )
        return recorded
    published_row = session.get(AppVersion, app.published_version_id) if app.published_version_id else None
    published = manifest_of(published_row) if published_row is not None else None
    return compare(manifest_of(version), published, published_row.version if published_row else None)


def submit(session: Session, *, app: App, version: AppVersion, submitted_by: str) -> AppVersion:
    """Send a draft to the city's review; it is immutable from now on. Emits AppVersionSubmittedV1."""
    _require_active_vendor(session, app.vendor_id)
    if version.status != "draft":
        raise VersionImmutable(
            f"版本 {version.version} 已{_STATUS_ZH.get(version.status, version.status)}，不能再次提交；"
            f"Version {version.version} is {version.status}; only a draft can be submitted.",
            version_status=version.status,
        )
    if app.status == "retired":
        raise VersionStateConflict("应用已被淘汰，不能再提交审核；The app is retired and cannot be submitted.")
    in_review = session.exec(
        select(AppVersion).where(AppVersion.app_id == app.id, AppVersion.status == "submitted")
    ).first()
    if in_review is not None:
        raise VersionStateConflict(
            f"版本 {in_review.version} 正在审核中，请等待审核结果后再提交；Version {in_review.version} is already "
            "under review: wait for its decision before submitting another.",
            version_id=in_review.id,
        )
    if attachment_info(session, version.id) is None:
        raise SubmissionIncomplete(
            "提交审核前请先上传安全自评估报告（PDF）；Upload the security self-assessment (PDF) before submitting.",
            errors=[FieldError(field="security_assessment", message="required before submitting", code="required")],
        )
    changes = changes_of(session, app, version)
    version.needs_regrant = changes.needs_regrant
    version.price_changed = changes.price_changed
    version.status = "submitted"
    version.submitted_at = utcnow()
    version.submitted_by = submitted_by
    session.add(version)
    outbox.emit(
        session,
        AppVersionSubmittedV1(
            app_id=app.id, version_id=version.id, app_version=version.version, vendor_id=app.vendor_id,
            needs_regrant=version.needs_regrant,
        ),
        subject_id=app.id,
    )  # fmt: skip
    session.flush()
    return version


def manifest_document(version: AppVersion) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(version.manifest)
    return document
