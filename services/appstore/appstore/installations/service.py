"""Installing apps at schools, re-granting, uninstalling, teachers' requests and vendors' app credentials.

Every change writes its row, its event and its audit entry in the caller's transaction; service functions only
flush. The app's OAuth client at identity is registered or updated before the transaction commits, so when
identity is down the request fails and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from appstore.apps.models import App, AppVersion
from appstore.deps import Caller
from appstore.errors import UnknownApp
from appstore.identity_client import IdentityClient
from appstore.installations.errors import (
    AlreadyInstalled,
    AppNotInstallable,
    AppRetired,
    DuplicateRequest,
    InstallationRemoved,
    NoManifestYet,
    RequestDecided,
    UnknownInstallation,
    UnknownRequest,
)
from appstore.installations.models import AppRequest, Installation
from appstore.installations.schemas import (
    AppRequestRead,
    InstallationRead,
    MyAppRead,
    PersonalFieldRead,
    ScopeGrantRead,
)
from appstore.roster.models import RosterClass, RosterMembership, RosterOrganisation, RosterPerson
from contracts.events.appstore import InstallationGrantedV1, InstallationRemovedV1, RemovalReason
from contracts.manifest import AppManifestV1
from contracts.scopes import personal_field_label, personal_fields_for
from contracts.scopes import scope as catalogue_scope
from kit import audit
from kit.errors import FieldError, InvalidInput
from kit.outbox import emit, utcnow

REQUIRED_SCOPE = "openid"


@dataclass(frozen=True)
class Grant:
    """What a school grants an app, checked against the app's manifest and the school's classes."""

    scopes: list[str]
    grades: list[str]
    class_ids: list[str]


# ------------------------------------------------------------------------------------------ reading


def manifest_of(version: AppVersion) -> AppManifestV1:
    return AppManifestV1.model_validate_json(version.manifest)


def get_app(session: Session, app_id: str, *, field: str | None = None) -> App:
    app = session.get(App, app_id)
    if app is None:
        if field is not None:
            raise InvalidInput(
                "没有这个应用；There is no such app.",
                errors=[FieldError(field=field, message=f"没有编号为 {app_id[:64]} 的应用；No app {app_id[:64]!r}.")],
            )
        raise UnknownApp(app_id)
    return app


def published(session: Session, app: App) -> tuple[AppVersion, AppManifestV1]:
    """The app's published version and its manifest; only listed apps can be installed or requested."""
    version = session.get(AppVersion, app.published_version_id) if app.published_version_id else None
    if app.status != "listed" or version is None:
        raise AppNotInstallable(app.id, app.status if version is not None else "unpublished")
    return version, manifest_of(version)


def _json_list(value: str) -> list[str]:
    return [str(item) for item in json.loads(value or "[]")]


def _field_labels(scope_ids: Iterable[str]) -> list[PersonalFieldRead]:
    return [
        PersonalFieldRead(id=label.id, label_zh=label.label_zh, label_en=label.label_en)
        for label in (personal_field_label(field) for field in personal_fields_for(scope_ids))
    ]


def describe_scopes(scope_ids: Iterable[str], manifest: AppManifestV1) -> list[ScopeGrantRead]:
    """Each scope with the catalogue's description, the app's purpose and the personal fields it releases."""
    purposes = {request.scope: request.purpose for request in manifest.scopes}
    described = []
    for scope_id in sorted(scope_ids):
        known = catalogue_scope(scope_id)
        purpose = purposes.get(scope_id)
        described.append(
            ScopeGrantRead(
                scope=scope_id,
                description_zh=known.description_zh,
                description_en=known.description_en,
                purpose_zh=purpose.zh_cn if purpose else None,
                purpose_en=purpose.en if purpose else None,
                personal_fields=_field_labels([scope_id]),
                sensitive=known.sensitive,
            )
        )
    return described


class _Manifests:
    """Versions and manifests read once per request, however many installations share them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._versions: dict[str, tuple[AppVersion, AppManifestV1] | None] = {}

    def get(self, version_id: str | None) -> tuple[AppVersion, AppManifestV1] | None:
        if version_id is None:
            return None
        if version_id not in self._versions:
            version = self.session.get(AppVersion, version_id)
            self._versions[version_id] = (version, manifest_of(version)) if version is not None else None
        return self._versions[version_id]


def describe(session: Session, installation: Installation, manifests: _Manifests | None = None) -> InstallationRead:
    """The installation as the school sees it: what data the app gets and why, and what a newer version asks."""
    manifests = manifests or _Manifests(session)
    installed = manifests.get(installation.version_id)
    assert installed is not None, "an installation always names an existing version"
    version, manifest = installed
    app = session.get(App, installation.app_id)
    granted = installation.scopes.split()
    missing: list[str] = []
    current = manifests.get(app.published_version_id if app is not None else None)
    if installation.status == "active" and current is not None and current[0].id != installation.version_id:
        missing = sorted(set(current[1].scope_ids) - set(granted))
        manifest_for_missing = current[1]
    else:
        manifest_for_missing = manifest
    return InstallationRead(
        id=installation.id,
        app_id=installation.app_id,
        app_name=manifest.name.zh_cn,
        app_version=version.version,
        client_id=installation.client_id,
        school_id=installation.school_id,
        status=installation.status,
        scopes=describe_scopes(granted, manifest),
        personal_fields=_field_labels(granted),
        grades=installation.grade_list,
        class_ids=installation.class_id_list,
        needs_regrant=bool(missing),
        missing_scopes=describe_scopes(missing, manifest_for_missing),
        installed_by=installation.installed_by,
        installed_at=installation.installed_at,
        updated_at=installation.updated_at,
        removed_at=installation.removed_at,
        removal_reason=installation.removal_reason,
        delete_data_by=installation.delete_data_by,
    )


def list_for_school(session: Session, school_id: str, *, include_removed: bool = False) -> list[InstallationRead]:
    query = select(Installation).where(Installation.school_id == school_id)
    if not include_removed:
        query = query.where(Installation.status == "active")
    manifests = _Manifests(session)
    rows = session.exec(query.order_by(col(Installation.installed_at), col(Installation.id))).all()
    return [describe(session, row, manifests) for row in rows]


def get_installation(session: Session, school_id: str, installation_id: str) -> Installation:
    """The school's installation; another school's is as unknown as a missing one."""
    installation = session.get(Installation, installation_id)
    if installation is None or installation.school_id != school_id:
        raise UnknownInstallation(installation_id)
    return installation


def active_installation(session: Session, *, app_id: str, school_id: str) -> Installation | None:
    return session.exec(
        select(Installation).where(
            Installation.app_id == app_id, Installation.school_id == school_id, Installation.status == "active"
        )
    ).first()


# ------------------------------------------------------------------------------------------ granting


def clean_grant(
    session: Session,
    school_id: str,
    manifest: AppManifestV1,
    *,
    scopes: list[str] | None,
    grades: list[str],
    class_ids: list[str],
) -> Grant:
    """The grant, or 422 naming each scope the app did not ask for and each class that is not the school's."""
    errors: list[FieldError] = []
    requested = set(manifest.scope_ids)
    chosen = sorted(requested) if scopes is None else sorted(set(scopes))
    for index, scope_id in enumerate(scopes or []):
        if scope_id not in requested:
            errors.append(
                FieldError(
                    field=f"scopes.{index}",
                    message=f"应用没有申请权限 {scope_id[:64]}，只能授予它申请的权限；"
                    f"The app did not ask for {scope_id[:64]!r}: grant only the scopes it requests.",
                )
            )
    if REQUIRED_SCOPE not in chosen:
        errors.append(
            FieldError(
                field="scopes",
                message="必须授予 openid（用户通过平台登录应用）；"
                "Grant 'openid': users sign in to the app through the platform.",
            )
        )
    unique_classes = list(dict.fromkeys(class_ids))
    if unique_classes:
        found = {
            row.id: row
            for row in session.exec(select(RosterClass).where(col(RosterClass.id).in_(unique_classes))).all()
        }
        for index, class_id in enumerate(class_ids):
            row = found.get(class_id)
            if row is None or row.school_id != school_id or not row.active:
                errors.append(
                    FieldError(
                        field=f"class_ids.{index}",
                        message=f"本校没有编号为 {class_id[:64]} 的班级；The school has no class {class_id[:64]!r}.",
                    )
                )
    if errors:
        raise InvalidInput("授权内容有误，请按提示修改；The grant is not valid: fix the listed fields.", errors=errors)
    return Grant(scopes=chosen, grades=sorted(set(grades)), class_ids=unique_classes)


def _granted_event(installation: Installation, at: datetime) -> InstallationGrantedV1:
    return InstallationGrantedV1(
        installation_id=installation.id,
        app_id=installation.app_id,
        client_id=installation.client_id,
        school_id=installation.school_id,
        scopes=installation.scopes.split(),
        grades=installation.grade_list,
        class_ids=installation.class_id_list,
        version_id=installation.version_id,
        granted_at=at,
    )


def _audit(
    session: Session, caller: Caller, action: str, *, target_type: str, target_id: str, org_id: str, **detail: Any
) -> None:
    audit.append(
        session,
        action=action,
        actor_id=caller.person_id,
        actor_client=caller.principal.client_id,
        source_ip=caller.source_ip,
        request_id=caller.request_id,
        target_type=target_type,
        target_id=target_id,
        org_id=org_id,
        detail=detail or None,
    )


def install(
    session: Session,
    identity: IdentityClient,
    caller: Caller,
    *,
    school: RosterOrganisation,
    app: App,
    scopes: list[str] | None,
    grades: list[str],
    class_ids: list[str],
) -> Installation:
    """Install a listed app at the school: the deployment, the app's client at identity, the event, the audit."""
    version, manifest = published(session, app)
    if (existing := active_installation(session, app_id=app.id, school_id=school.id)) is not None:
        raise AlreadyInstalled(existing.id)
    grant = clean_grant(session, school.id, manifest, scopes=scopes, grades=grades, class_ids=class_ids)
    now = utcnow()
    installation = Installation(
        app_id=app.id,
        school_id=school.id,
        school_path=school.path,
        client_id=app.client_id,
        version_id=version.id,
        scopes=" ".join(grant.scopes),
        grades=json.dumps(grant.grades),
        class_ids=json.dumps(grant.class_ids),
        installed_by=caller.person_id,
        installed_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():  # two administrators installing at once: the second gets the first's id
            session.add(installation)
            session.flush()
    except IntegrityError:
        existing = active_installation(session, app_id=app.id, school_id=school.id)
        raise AlreadyInstalled(existing.id if existing else "") from None
    identity.ensure_client(app, manifest)
    emit(session, _granted_event(installation, now), subject_id=installation.id, org_id=school.id)
    _audit(
        session, caller, "appstore.installation_created", target_type="installation", target_id=installation.id,
        org_id=school.id, app_id=app.id, scopes=grant.scopes, grades=grant.grades, class_ids=grant.class_ids,
    )  # fmt: skip
    return installation


def regrant(
    session: Session,
    identity: IdentityClient,
    caller: Caller,
    installation: Installation,
    *,
    scopes: list[str] | None,
    grades: list[str],
    class_ids: list[str],
) -> Installation:
    """Change what the school grants, to the app's current published version."""
    if installation.status != "active":
        raise InstallationRemoved()
    app = get_app(session, installation.app_id)
    version, manifest = published(session, app)
    grant = clean_grant(session, installation.school_id, manifest, scopes=scopes, grades=grades, class_ids=class_ids)
    now = utcnow()
    previous = installation.scopes.split()
    installation.version_id = version.id
    installation.scopes = " ".join(grant.scopes)
    installation.grades = json.dumps(grant.grades)
    installation.class_ids = json.dumps(grant.class_ids)
    installation.updated_at = now
    session.add(installation)
    session.flush()
    identity.ensure_client(app, manifest)
    emit(session, _granted_event(installation, now), subject_id=installation.id, org_id=installation.school_id)
    _audit(
        session, caller, "appstore.installation_regranted", target_type="installation", target_id=installation.id,
        org_id=installation.school_id, app_id=app.id, scopes=grant.scopes, previous_scopes=previous,
        grades=grant.grades, class_ids=grant.class_ids,
    )  # fmt: skip
    return installation


def _remove(session: Session, installation: Installation, *, reason: RemovalReason, at: datetime) -> None:
    version = session.get(AppVersion, installation.version_id)
    retention_days = manifest_of(version).data_retention_days if version is not None else 0
    installation.status = "removed"
    installation.removed_at = at
    installation.removal_reason = reason
    installation.delete_data_by = at.astimezone(UTC).date() + timedelta(days=retention_days)
    installation.updated_at = at
    session.add(installation)
    emit(
        session,
        InstallationRemovedV1(
            installation_id=installation.id,
            app_id=installation.app_id,
            client_id=installation.client_id,
            school_id=installation.school_id,
            scopes=installation.scopes.split(),
            grades=installation.grade_list,
            class_ids=installation.class_id_list,
            version_id=installation.version_id,
            reason=reason,
            removed_at=at,
            delete_data_by=installation.delete_data_by,
        ),
        subject_id=installation.id,
        org_id=installation.school_id,
    )


def uninstall(session: Session, caller: Caller, installation: Installation) -> Installation:
    """Remove the app from the school: tokens revoked by identity, the gateway refuses it, the vendor deletes."""
    if installation.status != "active":
        raise InstallationRemoved()
    _remove(session, installation, reason="uninstalled", at=utcnow())
    session.flush()
    _audit(
        session, caller, "appstore.installation_removed", target_type="installation", target_id=installation.id,
        org_id=installation.school_id, app_id=installation.app_id, delete_data_by=str(installation.delete_data_by),
    )  # fmt: skip
    return installation


def remove_all_for_app(session: Session, *, app_id: str, reason: RemovalReason, at: datetime) -> int:
    """End every active installation of the app (the city suspended or retired it); returns how many."""
    rows = session.exec(
        select(Installation).where(Installation.app_id == app_id, Installation.status == "active")
    ).all()
    for installation in rows:
        _remove(session, installation, reason=reason, at=at)
    session.flush()
    return len(rows)


# ------------------------------------------------------------------------------------------ the caller's apps


def apps_for(session: Session, caller: Caller) -> list[MyAppRead]:
    """Active installations at the schools where the caller holds a role. An installation limited to some grades or
    classes shows to a pupil of one of them and to a teacher of one of them; administrators see every one."""
    roles_by_school: dict[str, set[str]] = {}
    for claim in caller.principal.roles:
        if claim.org_id:
            roles_by_school.setdefault(claim.org_id, set()).add(claim.role)
    if not roles_by_school:
        return []
    schools = {
        row.id
        for row in session.exec(
            select(RosterOrganisation).where(
                col(RosterOrganisation.id).in_(list(roles_by_school)),
                RosterOrganisation.kind == "school",
                RosterOrganisation.active == True,  # noqa: E712
            )
        ).all()
    }
    if not schools:
        return []
    pupil_class: RosterClass | None = None
    membership = session.get(RosterMembership, caller.person_id)
    if membership is not None and membership.class_id is not None:
        pupil_class = session.get(RosterClass, membership.class_id)
    rows = session.exec(
        select(Installation)
        .where(col(Installation.school_id).in_(sorted(schools)), Installation.status == "active")
        .order_by(col(Installation.installed_at), col(Installation.id))
    ).all()
    taught = _classes_taught(session, caller.person_id, schools) if rows else []
    manifests = _Manifests(session)
    found = []
    for row in rows:
        roles = roles_by_school[row.school_id]
        if roles == {"student"} and not _opened_to(row, pupil_class):
            continue
        limited = bool(row.grade_list or row.class_id_list)
        if (
            roles == {"teacher"}
            and limited
            and not any(klass.school_id == row.school_id and row.opens_class(klass.id, klass.grade) for klass in taught)
        ):
            continue
        installed = manifests.get(row.version_id)
        if installed is None:
            continue
        manifest = installed[1]
        found.append(
            MyAppRead(
                installation_id=row.id,
                app_id=row.app_id,
                school_id=row.school_id,
                name=manifest.name.zh_cn,
                summary=manifest.summary.zh_cn,
                category=manifest.category,
                icon_url=manifest.icon_url,
                launch_type=manifest.launch.type,
            )
        )
    return found


def _classes_taught(session: Session, person_id: str, schools: set[str]) -> list[RosterClass]:
    """The active classes at ``schools`` the person heads or teaches."""
    classes = session.exec(
        select(RosterClass).where(col(RosterClass.school_id).in_(sorted(schools)), RosterClass.active == True)  # noqa: E712
    ).all()
    return [
        klass for klass in classes if klass.head_teacher_id == person_id or person_id in json.loads(klass.teacher_ids)
    ]


def _opened_to(installation: Installation, pupil_class: RosterClass | None) -> bool:
    """Whether the installation covers a pupil of ``pupil_class`` (every pupil when it is not limited)."""
    if pupil_class is not None and pupil_class.school_id != installation.school_id:
        pupil_class = None
    return installation.opens_class(pupil_class.id if pupil_class else None, pupil_class.grade if pupil_class else None)


# ------------------------------------------------------------------------------------------ teachers' requests


def describe_request(session: Session, request: AppRequest) -> AppRequestRead:
    app = session.get(App, request.app_id)
    version = session.get(AppVersion, app.published_version_id) if app and app.published_version_id else None
    person = session.get(RosterPerson, request.requested_by)
    return AppRequestRead(
        id=request.id,
        app_id=request.app_id,
        app_name=manifest_of(version).name.zh_cn if version is not None else request.app_id,
        school_id=request.school_id,
        requested_by=request.requested_by,
        requested_by_name=person.name if person is not None else None,
        reason=request.reason,
        status=request.status,
        requested_at=request.requested_at,
        decided_at=request.decided_at,
        decision_note=request.decision_note,
        installation_id=request.installation_id,
    )


def request_app(session: Session, caller: Caller, *, school_id: str, app: App, reason: str) -> AppRequest:
    """A teacher asks for a listed app; one pending request per teacher and app."""
    published(session, app)
    pending = session.exec(
        select(AppRequest).where(
            AppRequest.app_id == app.id,
            AppRequest.school_id == school_id,
            AppRequest.requested_by == caller.person_id,
            AppRequest.status == "pending",
        )
    ).first()
    if pending is not None:
        raise DuplicateRequest(pending.id)
    if (existing := active_installation(session, app_id=app.id, school_id=school_id)) is not None:
        raise AlreadyInstalled(existing.id)
    request = AppRequest(app_id=app.id, school_id=school_id, requested_by=caller.person_id, reason=reason.strip())
    try:
        with session.begin_nested():
            session.add(request)
            session.flush()
    except IntegrityError:
        raise DuplicateRequest("") from None
    _audit(
        session, caller, "appstore.app_requested", target_type="app_request", target_id=request.id, org_id=school_id,
        app_id=app.id,
    )  # fmt: skip
    return request


def list_requests(session: Session, *, school_id: str, status: str | None) -> list[AppRequest]:
    query = select(AppRequest).where(AppRequest.school_id == school_id)
    if status is not None:
        query = query.where(AppRequest.status == status)
    return list(session.exec(query.order_by(col(AppRequest.requested_at), col(AppRequest.id))).all())


def my_requests(session: Session, caller: Caller) -> list[AppRequest]:
    query = select(AppRequest).where(AppRequest.requested_by == caller.person_id)
    return list(session.exec(query.order_by(col(AppRequest.requested_at).desc(), col(AppRequest.id))).all())


def get_request(session: Session, school_id: str, request_id: str) -> AppRequest:
    request = session.get(AppRequest, request_id)
    if request is None or request.school_id != school_id:
        raise UnknownRequest(request_id)
    return request


def approve_request(
    session: Session,
    identity: IdentityClient,
    caller: Caller,
    request: AppRequest,
    *,
    school: RosterOrganisation,
    scopes: list[str] | None,
    grades: list[str],
    class_ids: list[str],
    note: str | None,
) -> AppRequest:
    """Approve: install the app (or point at the installation another request or administrator made)."""
    if request.status != "pending":
        raise RequestDecided(request.status)
    app = get_app(session, request.app_id)
    installation = active_installation(session, app_id=app.id, school_id=school.id)
    if installation is None:
        installation = install(
            session, identity, caller, school=school, app=app, scopes=scopes, grades=grades, class_ids=class_ids
        )
    request.status = "approved"
    request.installation_id = installation.id
    _decide(session, caller, request, note)
    return request


def decline_request(session: Session, caller: Caller, request: AppRequest, *, note: str) -> AppRequest:
    if request.status != "pending":
        raise RequestDecided(request.status)
    request.status = "declined"
    _decide(session, caller, request, note)
    return request


def _decide(session: Session, caller: Caller, request: AppRequest, note: str | None) -> None:
    request.decided_by = caller.person_id
    request.decided_at = utcnow()
    request.decision_note = note.strip() if note else None
    session.add(request)
    session.flush()
    _audit(
        session, caller, f"appstore.app_request_{request.status}", target_type="app_request", target_id=request.id,
        org_id=request.school_id, app_id=request.app_id, installation_id=request.installation_id,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ vendors' credentials


def credentials(session: Session, identity: IdentityClient, caller: Caller, app: App) -> str:
    """Make sure the app's client exists at identity and give it a new secret; returns the secret."""
    if app.status == "retired":
        raise AppRetired()
    version = session.get(AppVersion, app.published_version_id) if app.published_version_id else None
    if version is None:
        version = session.exec(
            select(AppVersion)
            .where(AppVersion.app_id == app.id)
            .order_by(col(AppVersion.created_at).desc(), col(AppVersion.id))
        ).first()
    if version is None:
        raise NoManifestYet()
    identity.ensure_client(app, manifest_of(version))
    secret = identity.rotate_secret(app.client_id)
    audit.append(
        session,
        action="appstore.app_credentials_issued",
        actor_id=caller.person_id,
        actor_client=caller.principal.client_id,
        source_ip=caller.source_ip,
        request_id=caller.request_id,
        target_type="app",
        target_id=app.id,
        detail={"client_id": app.client_id, "vendor_id": app.vendor_id},
    )
    return secret
