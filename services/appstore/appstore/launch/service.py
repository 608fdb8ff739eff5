"""Launching an installed app: who may open it from where, and the OIDC or LTI 1.3 message that opens it.

An OIDC app gets a third-party initiated login URL and signs the user in at the identity provider. An LTI 1.3
tool gets a login initiation URL carrying one-time opaque hints; the launch waits server-side (bound to the
user, the deployment and the class) until the tool's authentication request presents the hints, so the tool
needs no third-party cookie from the platform. The completed launch is a metered usage event either way.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlmodel import Session, col, select

from appstore.apps.models import App, AppVersion
from appstore.config import AppStoreSettings
from appstore.deps import Caller
from appstore.installations.models import Installation
from appstore.launch.errors import (
    AppNotAvailable,
    ClassNotOpen,
    InstallationNotFound,
    LtiRequestRefused,
    NoRoleAtSchool,
    NotInClass,
    UnknownClass,
)
from appstore.launch.keys import ALGORITHM
from appstore.launch.models import Launch
from appstore.launch.schemas import LaunchCreate
from appstore.roster.models import RosterClass, RosterMembership, RosterOrganisation, RosterPerson
from appstore.subjects import user_pseudonym
from contracts.api.appstore import APPSTORE_API
from contracts.events.appstore import AppLaunchedV1
from contracts.manifest import AppManifestV1, Lti13Launch
from kit.errors import Forbidden
from kit.outbox import emit

LTI_LAUNCH_TTL = timedelta(minutes=5)
ID_TOKEN_TTL = timedelta(minutes=5)
#: Roles that may open a school's apps, in the order one is picked when a user holds several there.
LAUNCH_ROLES = ("teacher", "school_admin", "student")

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
COURSE_SECTION = LIS + "course#CourseSection"
INSTRUCTOR = LIS + "membership#Instructor"
LEARNER = LIS + "membership#Learner"
ADMINISTRATOR = LIS + "membership#Administrator"
#: LIS roles of a platform role: the context role, then the institution role.
LIS_ROLES: dict[str, list[str]] = {
    "teacher": [INSTRUCTOR, LIS + "institution/person#Faculty"],
    "student": [LEARNER, LIS + "institution/person#Student"],
    "school_admin": [ADMINISTRATOR, LIS + "institution/person#Administrator"],
}
PLATFORM_NAME = "城市智慧教育平台"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def platform_url(settings: AppStoreSettings, path: str) -> str:
    """A public URL of one of our routes, as the gateway serves it."""
    return settings.platform_base_url.rstrip("/") + APPSTORE_API.prefix + path


def with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


#: Parsed manifests of published versions by version id: a published version never changes, so a launch reads
#: its manifest without a query once any launch of the version has.
_PUBLISHED_MANIFESTS: dict[str, AppManifestV1] = {}
_MANIFESTS_KEPT = 2048


def published_manifest(session: Session, app: App) -> AppManifestV1:
    version_id = app.published_version_id
    cached = _PUBLISHED_MANIFESTS.get(version_id) if version_id else None
    if cached is not None:
        return cached
    version = session.get(AppVersion, version_id) if version_id else None
    if version is None or version_id is None:
        raise AppNotAvailable("该应用尚未上架；The app has no published version.")
    manifest = AppManifestV1.model_validate_json(version.manifest)
    if len(_PUBLISHED_MANIFESTS) >= _MANIFESTS_KEPT:
        _PUBLISHED_MANIFESTS.clear()
    _PUBLISHED_MANIFESTS[version_id] = manifest
    return manifest


def json_list(text: str | None) -> list[str]:
    return [str(item) for item in json.loads(text or "[]")]


def class_teachers(klass: RosterClass) -> list[str]:
    teachers = json_list(klass.teacher_ids)
    if klass.head_teacher_id and klass.head_teacher_id not in teachers:
        teachers.insert(0, klass.head_teacher_id)
    return teachers


def open_to_class(installation: Installation, klass: RosterClass) -> bool:
    return installation.opens_class(klass.id, klass.grade)


# ----------------------------------------------------------------------------------------------- launching


@dataclass(frozen=True)
class LaunchStarted:
    launch: Launch
    url: str


def role_at_school(session: Session, caller: Caller, school_id: str) -> str:
    """The caller's role at the school: a teacher, administrator or student role held there, or a pupil of it
    in the roster projection. A role at a district or the city does not open a school's apps."""
    held = set()
    for claim in caller.principal.roles:
        segments = [segment for segment in claim.org_path.split("/") if segment]
        if claim.org_id == school_id and segments and segments[-1] == school_id:
            held.add(claim.role)
    for role in LAUNCH_ROLES:
        if role in held:
            return role
    person = session.get(RosterPerson, caller.person_id)
    if person is not None and person.active and person.kind == "student":
        membership = session.get(RosterMembership, person.id)
        if person.org_id == school_id or (membership is not None and membership.school_id == school_id):
            return "student"
    raise NoRoleAtSchool()


def _launch_class(
    session: Session, installation: Installation, role: str, person_id: str, class_id: str | None
) -> RosterClass | None:
    membership = session.get(RosterMembership, person_id) if role == "student" else None
    if class_id is None and membership is not None and membership.school_id == installation.school_id:
        class_id = membership.class_id  # a pupil opens apps from their own class
    if class_id is None:
        restricted = installation.grade_list or installation.class_id_list
        if restricted and role != "school_admin":
            raise ClassNotOpen(
                "学校只为部分年级或班级开通了此应用，请从已开通的班级打开；"
                "The school opened this app to some grades or classes only: open it from one of them (class_id)."
            )
        return None
    klass = session.get(RosterClass, class_id)
    if klass is None or not klass.active or klass.school_id != installation.school_id:
        raise UnknownClass(class_id)
    if role == "teacher" and person_id not in class_teachers(klass):
        raise NotInClass()
    if role == "student" and (membership is None or membership.class_id != klass.id):
        raise NotInClass()
    if not open_to_class(installation, klass):
        raise ClassNotOpen(
            f"学校未向{klass.name}开通此应用；The school did not open this app to class {klass.name}.",
        )
    return klass


def _require_available(installation: Installation, app: App) -> None:
    if installation.status != "active":
        raise AppNotAvailable("学校已卸载该应用；The school uninstalled this app.")
    if app.status != "listed":
        raise AppNotAvailable("该应用已被暂停或下架；The app is suspended or retired.")


def start_launch(
    session: Session, settings: AppStoreSettings, caller: Caller, data: LaunchCreate, *, now: datetime | None = None
) -> LaunchStarted:
    """Record a launch and return the URL that opens the app; an OIDC launch is metered at once."""
    if caller.is_app:
        raise Forbidden("应用不能代替用户打开应用；An app cannot launch apps for a user.")
    now = now or datetime.now(UTC)
    found = session.exec(
        select(Installation, App)
        .join(App, col(App.id) == col(Installation.app_id))
        .where(Installation.id == data.installation_id)
    ).first()
    if found is None:
        raise InstallationNotFound(data.installation_id)
    installation, app = found
    role = role_at_school(session, caller, installation.school_id)
    _require_available(installation, app)
    manifest = published_manifest(session, app)
    klass = _launch_class(session, installation, role, caller.person_id, data.class_id)
    launch = Launch(
        kind=manifest.launch.type, app_id=app.id, vendor_id=app.vendor_id, client_id=app.client_id,
        installation_id=installation.id, school_id=installation.school_id, person_id=caller.person_id, role=role,
        target_link_uri="", created_at=now, expires_at=now + LTI_LAUNCH_TTL,
    )  # fmt: skip
    if klass is not None:
        school = session.get(RosterOrganisation, installation.school_id)
        launch.class_id, launch.context_label = klass.id, klass.name
        launch.context_title = f"{school.name if school else ''}{klass.name}"
    if isinstance(manifest.launch, Lti13Launch):
        login_hint, message_hint = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        launch.target_link_uri = manifest.launch.target_link_uri
        launch.login_hint_hash, launch.message_hint_hash = digest(login_hint), digest(message_hint)
        session.add(launch)
        url = with_query(
            manifest.launch.initiate_login_uri,
            {
                "iss": settings.platform_base_url,
                "login_hint": login_hint,
                "lti_message_hint": message_hint,
                "target_link_uri": launch.target_link_uri,
                "client_id": app.client_id,
                "lti_deployment_id": installation.id,
            },
        )
        return LaunchStarted(launch=launch, url=url)
    # OIDC: the app signs the user in at the identity provider, which names the user, school and roles.
    parts = urlsplit(manifest.launch.initiate_login_uri)
    launch.target_link_uri = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    launch.used_at = now
    session.add(launch)
    _metered(session, settings, launch, now)
    url = with_query(
        manifest.launch.initiate_login_uri,
        {"iss": settings.token_issuer, "login_hint": launch.id, "target_link_uri": launch.target_link_uri},
    )
    return LaunchStarted(launch=launch, url=url)


def _metered(session: Session, settings: AppStoreSettings, launch: Launch, now: datetime) -> None:
    emit(
        session,
        AppLaunchedV1(
            launch_id=launch.id, app_id=launch.app_id, vendor_id=launch.vendor_id,
            installation_id=launch.installation_id, school_id=launch.school_id,
            user_pseudonym=user_pseudonym(settings.pairwise_salt.get_secret_value(), launch.app_id, launch.person_id),
            role=launch.role, kind="lti_1p3" if launch.kind == "lti_1p3" else "oidc", class_id=launch.class_id,
            launched_at=now,
        ),
        subject_id=launch.id,
        org_id=launch.school_id,
    )  # fmt: skip


# ------------------------------------------------------------------------------------- LTI authentication


@dataclass(frozen=True)
class FormPost:
    """The answer to the tool's authentication request: fields auto-posted to its redirect URI."""

    redirect_uri: str
    fields: dict[str, str]


_ALREADY_USED = (
    "该启动已使用过，不能重复使用，请从平台重新打开应用；"  # a replayed lti_message_hint
    "This launch was already used: open the app from the platform again."
)


class _Refusal(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def authorize(
    session: Session,
    settings: AppStoreSettings,
    signing_key: tuple[str, RSAKey],
    params: dict[str, str],
    *,
    now: datetime | None = None,
) -> FormPost:
    """Answer an LTI tool's OIDC authentication request (LTI 1.3 §5.1.1.3) with an id_token or an error."""
    now = now or datetime.now(UTC)
    client_id = params.get("client_id", "")
    app = session.exec(select(App).where(App.client_id == client_id)).first() if client_id else None
    if app is None:
        raise LtiRequestRefused(
            "client_id 不是本平台登记的 LTI 工具；client_id does not name an LTI tool registered with the platform."
        )
    manifest = published_manifest(session, app)
    if not isinstance(manifest.launch, Lti13Launch):
        raise LtiRequestRefused("该应用不是 LTI 1.3 工具；The app is not an LTI 1.3 tool.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in manifest.launch.redirect_uris:
        raise LtiRequestRefused(
            "redirect_uri 不在应用清单登记的地址中；redirect_uri is not one of the manifest's redirect_uris.",
            redirect_uri=redirect_uri[:2000],
        )
    fields = {"state": params["state"]} if params.get("state") else {}
    try:
        launch, installation = _claim_launch(session, params, client_id, now)
        if installation.status != "active" or app.status != "listed":
            raise _Refusal("access_denied", "应用已卸载或下架；The app was uninstalled or is no longer listed.")
        id_token = _lti_id_token(session, settings, signing_key, app, manifest, installation, launch, params, now)
    except _Refusal as refusal:
        return FormPost(redirect_uri, {"error": refusal.error, "error_description": refusal.description, **fields})
    _metered(session, settings, launch, now)
    return FormPost(redirect_uri, {"id_token": id_token, **fields})


def _claim_launch(
    session: Session, params: dict[str, str], client_id: str, now: datetime
) -> tuple[Launch, Installation]:
    if "openid" not in params.get("scope", "").split():
        raise _Refusal("invalid_scope", "scope 必须包含 openid；scope must include openid.")
    if params.get("response_type") != "id_token":
        raise _Refusal("unsupported_response_type", "response_type 必须为 id_token；response_type must be id_token.")
    if params.get("response_mode") != "form_post":
        raise _Refusal("invalid_request", "response_mode 必须为 form_post；response_mode must be form_post.")
    if params.get("prompt") != "none":
        raise _Refusal("invalid_request", "prompt 必须为 none；prompt must be none.")
    if not params.get("nonce"):
        raise _Refusal("invalid_request", "缺少 nonce；nonce is required.")
    login_hint, message_hint = params.get("login_hint", ""), params.get("lti_message_hint", "")
    if not login_hint or not message_hint:
        raise _Refusal(
            "invalid_request", "缺少 login_hint 或 lti_message_hint；login_hint and lti_message_hint are required."
        )
    found = session.exec(
        select(Launch, Installation)
        .join(Installation, col(Installation.id) == col(Launch.installation_id))
        .where(Launch.message_hint_hash == digest(message_hint))
    ).first()
    launch, installation = found if found is not None else (None, None)
    if (
        launch is None
        or installation is None
        or launch.login_hint_hash != digest(login_hint)
        or launch.client_id != client_id
    ):
        raise _Refusal(
            "invalid_request",
            "启动提示无效，请从平台重新打开应用；Unknown launch hints: open the app from the platform again.",
        )
    if launch.used_at is not None:
        raise _Refusal("invalid_request", _ALREADY_USED)
    if as_utc(launch.expires_at) <= now:
        raise _Refusal(
            "invalid_request",
            "该启动已过期（5 分钟），请从平台重新打开应用；"
            "This launch expired (5 minutes): open the app from the platform again.",
        )
    # One winner when the same hints arrive twice at once: only an unused row is marked.
    claimed = session.execute(
        sa.update(Launch).where(col(Launch.id) == launch.id, col(Launch.used_at).is_(None)).values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise _Refusal("invalid_request", _ALREADY_USED)
    launch.used_at = now
    return launch, installation


def resource_link_id(installation_id: str, class_id: str | None) -> str:
    """A stable resource link per deployment and class: the same placement whenever it is opened again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:edu-platform:lti-link:{installation_id}:{class_id or ''}"))


def _lti_id_token(
    session: Session,
    settings: AppStoreSettings,
    signing_key: tuple[str, RSAKey],
    app: App,
    manifest: AppManifestV1,
    installation: Installation,
    launch: Launch,
    params: dict[str, str],
    now: datetime,
) -> str:
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": settings.platform_base_url,
        "aud": app.client_id,
        "azp": app.client_id,
        "sub": user_pseudonym(settings.pairwise_salt.get_secret_value(), app.id, launch.person_id),
        "iat": issued,
        "exp": issued + int(ID_TOKEN_TTL.total_seconds()),
        "nonce": params["nonce"],
        LTI + "message_type": "LtiResourceLinkRequest",
        LTI + "version": "1.3.0",
        LTI + "deployment_id": installation.id,
        LTI + "target_link_uri": launch.target_link_uri,
        LTI + "resource_link": {
            "id": resource_link_id(installation.id, launch.class_id),
            "title": manifest.name.zh_cn,
        },
        LTI + "roles": LIS_ROLES[launch.role],
        LTI + "tool_platform": {
            "guid": str(uuid.uuid5(uuid.NAMESPACE_URL, settings.platform_base_url)),
            "name": PLATFORM_NAME,
            "product_family_code": "edu-platform",
        },
        LTI + "launch_presentation": {"document_target": "window", "locale": "zh-CN"},
        # The launch id and school the app quotes when it reports usage units for this launch (metering).
        LTI + "custom": {"launch_id": launch.id, "school_id": installation.school_id},
    }
    if launch.class_id is not None:
        claims[LTI + "context"] = {
            "id": launch.class_id,
            "label": launch.context_label or "",
            "title": launch.context_title or "",
            "type": [COURSE_SECTION],
        }
        claims[NRPS_CLAIM] = {
            "context_memberships_url": platform_url(
                settings, f"/lti/nrps/{installation.id}/contexts/{launch.class_id}/memberships"
            ),
            "service_versions": ["2.0"],
        }
    if "profile" in installation.scopes.split():
        person = session.get(RosterPerson, launch.person_id)
        if person is not None:
            claims["name"] = person.name
            claims["locale"] = "zh-CN"
    kid, key = signing_key
    return jwt.encode({"alg": ALGORITHM, "kid": kid, "typ": "JWT"}, claims, key, algorithms=[ALGORITHM])
