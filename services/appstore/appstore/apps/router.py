"""HTTP routes of apps and manifest versions, for the vendor's developers (vendor_developer, apps.develop).

The request body of creating an app, adding a version and editing a draft is the manifest itself (AppManifestV1), so
the JSON pointers in a 422's ``errors[]`` point into the document the vendor sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, File, Response, UploadFile, status
from sqlmodel import Session, col, select

from appstore.apps import service
from appstore.apps.models import App, AppVersion
from appstore.apps.schemas import AppRead, AttachmentRead, DecisionRead, VersionRead, VersionSummary
from appstore.deps import Caller, CallerDep, SettingsDep
from appstore.review.models import ReviewDecision
from appstore.vendors.access import require_developer, require_member
from kit.db import ReadSessionDep, SessionDep

router = APIRouter(tags=["Apps"])

ManifestBody = Annotated[dict[str, Any], Body(description="The app manifest (AppManifestV1, app-manifest.v1.json)")]


def _member_app(session: Session, caller: Caller, app_id: str) -> App:
    require_developer(caller)
    app = service.get_app(session, app_id)
    require_member(session, caller, app.vendor_id)
    return app


def summary(version: AppVersion) -> VersionSummary:
    return VersionSummary(
        id=version.id, version=version.version, status=version.status, needs_regrant=version.needs_regrant,
        price_changed=version.price_changed, created_at=version.created_at, submitted_at=version.submitted_at,
        reviewed_at=version.reviewed_at, published_at=version.published_at,
    )  # fmt: skip


def decisions_of(session: Session, version_id: str) -> list[DecisionRead]:
    rows = session.exec(
        select(ReviewDecision).where(ReviewDecision.version_id == version_id).order_by(col(ReviewDecision.decided_at))
    ).all()
    return [
        DecisionRead(id=row.id, decision=row.decision, checklist=json.loads(row.checklist),
                     reasons=json.loads(row.reasons), decided_at=row.decided_at)
        for row in rows
    ]  # fmt: skip


def read_version_model(session: Session, app: App, version: AppVersion) -> VersionRead:
    attachment = service.attachment_info(session, version.id)
    return VersionRead(
        **summary(version).model_dump(), app_id=app.id, manifest=service.manifest_document(version),
        security_assessment=AttachmentRead(
            filename=attachment.filename, content_type=attachment.content_type, size_bytes=attachment.size_bytes,
            sha256=attachment.sha256, uploaded_at=attachment.uploaded_at,
        ) if attachment else None,
        changes=service.changes_of(session, app, version), decisions=decisions_of(session, version.id),
    )  # fmt: skip


def read_app_model(session: Session, app: App) -> AppRead:
    return AppRead(
        id=app.id, vendor_id=app.vendor_id, client_id=app.client_id, name=service.display_name(session, app),
        status=app.status, status_reason=app.status_reason, status_effective_at=app.status_effective_at,
        published_version_id=app.published_version_id, created_at=app.created_at,
        versions=[summary(version) for version in service.versions_of(session, app.id)],
    )  # fmt: skip


def attachment_response(session: Session, version: AppVersion) -> Response:
    attachment = service.security_assessment(session, version)
    return Response(
        content=attachment.content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.post("/vendors/{vendor_id}/apps", status_code=status.HTTP_201_CREATED)
def create_app(
    vendor_id: str, manifest: ManifestBody, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> AppRead:
    """Create an app (a draft) under the vendor, with its first manifest version."""
    require_member(session, caller, vendor_id)
    app, _ = service.create_app(
        session, vendor_id=vendor_id, document=manifest, created_by=caller.person_id, environment=settings.environment
    )
    return read_app_model(session, app)


@router.get("/vendors/{vendor_id}/apps")
def list_vendor_apps(vendor_id: str, caller: CallerDep, session: ReadSessionDep) -> list[AppRead]:
    """The vendor's apps with their versions."""
    require_member(session, caller, vendor_id)
    return [read_app_model(session, app) for app in service.apps_of_vendor(session, vendor_id)]


@router.get("/apps/{app_id}")
def read_app(app_id: str, caller: CallerDep, session: ReadSessionDep) -> AppRead:
    """One of the vendor's apps, with its versions."""
    return read_app_model(session, _member_app(session, caller, app_id))


@router.post("/apps/{app_id}/versions", status_code=status.HTTP_201_CREATED)
def add_version(
    app_id: str, manifest: ManifestBody, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> VersionRead:
    """Add a draft version; its version must be greater than every earlier one (semantic versioning)."""
    app = _member_app(session, caller, app_id)
    version = service.add_version(
        session, app=app, document=manifest, created_by=caller.person_id, environment=settings.environment
    )
    return read_version_model(session, app, version)


@router.get("/apps/{app_id}/versions/{version_id}")
def read_version(app_id: str, version_id: str, caller: CallerDep, session: ReadSessionDep) -> VersionRead:
    """A version: its manifest, what it changes against the published one, and the review decisions with reasons."""
    app = _member_app(session, caller, app_id)
    return read_version_model(session, app, service.get_version(session, app, version_id))


@router.put("/apps/{app_id}/versions/{version_id}")
def edit_version(
    app_id: str, version_id: str, manifest: ManifestBody, caller: CallerDep, session: SessionDep,
    settings: SettingsDep,
) -> VersionRead:  # fmt: skip
    """Replace a draft version's manifest (409 once submitted: submitted and published versions never change)."""
    app = _member_app(session, caller, app_id)
    version = service.get_version(session, app, version_id)
    service.edit_version(session, app=app, version=version, document=manifest, environment=settings.environment)
    return read_version_model(session, app, version)


@router.put("/apps/{app_id}/versions/{version_id}/security-assessment")
def upload_security_assessment(
    app_id: str,
    version_id: str,
    file: Annotated[UploadFile, File(description="The security self-assessment report (安全自评估报告), PDF")],
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> AttachmentRead:
    """Attach the security self-assessment (a PDF) to a draft version; required before submitting."""
    app = _member_app(session, caller, app_id)
    version = service.get_version(session, app, version_id)
    content = file.file.read(settings.attachment_max_bytes + 1)
    attachment = service.attach_security_assessment(
        session, version=version, filename=file.filename or "", content_type=file.content_type or "",
        content=content, uploaded_by=caller.person_id, max_bytes=settings.attachment_max_bytes,
    )  # fmt: skip
    return AttachmentRead(
        filename=attachment.filename, content_type=attachment.content_type, size_bytes=attachment.size_bytes,
        sha256=attachment.sha256, uploaded_at=attachment.uploaded_at,
    )  # fmt: skip


@router.get("/apps/{app_id}/versions/{version_id}/security-assessment", response_class=Response)
def download_security_assessment(app_id: str, version_id: str, caller: CallerDep, session: ReadSessionDep) -> Response:
    """Download the version's security self-assessment."""
    app = _member_app(session, caller, app_id)
    return attachment_response(session, service.get_version(session, app, version_id))


@router.post("/apps/{app_id}/versions/{version_id}/submit")
def submit_version(app_id: str, version_id: str, caller: CallerDep, session: SessionDep) -> VersionRead:
    """Submit a draft for the city's review (审核准入); from now on it never changes."""
    app = _member_app(session, caller, app_id)
    version = service.get_version(session, app, version_id)
    service.submit(session, app=app, version=version, submitted_by=caller.person_id)
    return read_version_model(session, app, version)
