"""HTTP routes of installations at schools, teachers' app requests, the caller's apps and vendors' credentials.

School routes need ``apps.install`` and an administrator of the school or of an organisation above it; teachers
request apps with ``apps.read`` and a teacher role at the school; a vendor's developers get the app's credentials
with ``apps.develop``. Vendors' apps never reach these routes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from sqlmodel import Session

from appstore.deps import SCHOOL_ADMIN_ROLES, Caller, CallerDep, school
from appstore.identity_client import IdentityClientDep
from appstore.installations import service
from appstore.installations.schemas import (
    AppCredentials,
    AppRequestApprove,
    AppRequestCreate,
    AppRequestDecline,
    AppRequestRead,
    InstallationCreate,
    InstallationRead,
    InstallationUpdate,
    MyAppRead,
)
from appstore.roster.models import RosterOrganisation
from appstore.vendors.access import require_developer, require_member
from kit.db import ReadSessionDep, SessionDep
from kit.errors import Forbidden

router = APIRouter(tags=["installations"])

SCOPE_READ = "apps.read"
SCOPE_INSTALL = "apps.install"
REQUESTER_ROLES = ("teacher",)


def _refuse_apps(caller: Caller) -> None:
    if caller.is_app:
        raise Forbidden("应用不能管理应用的安装；Apps cannot manage app installations.")


def _admin_school(session: Session, caller: Caller, school_id: str) -> RosterOrganisation:
    _refuse_apps(caller)
    caller.require_scope(SCOPE_INSTALL)
    organisation = school(session, school_id)
    caller.require(roles=SCHOOL_ADMIN_ROLES, org_path=organisation.path, scope=SCOPE_INSTALL)
    return organisation


# ------------------------------------------------------------------------------------------ installations


@router.post("/schools/{school_id}/installations", status_code=status.HTTP_201_CREATED)
def install_app(
    school_id: str, body: InstallationCreate, caller: CallerDep, session: SessionDep, identity: IdentityClientDep
) -> InstallationRead:
    """Install a listed app at the school with the scopes, grades and classes the school grants it."""
    organisation = _admin_school(session, caller, school_id)
    app = service.get_app(session, body.app_id, field="app_id")
    installation = service.install(
        session, identity, caller, school=organisation, app=app, scopes=body.scopes, grades=body.grades,
        class_ids=body.class_ids,
    )  # fmt: skip
    return service.describe(session, installation)


@router.get("/schools/{school_id}/installations")
def list_installations(
    school_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    include_removed: Annotated[bool, Query(description="Also list uninstalled apps")] = False,
) -> list[InstallationRead]:
    """The school's installed apps: what data each gets and why, and whether a newer version needs a re-grant."""
    _admin_school(session, caller, school_id)
    return service.list_for_school(session, school_id, include_removed=include_removed)


@router.get("/schools/{school_id}/installations/{installation_id}")
def get_installation(
    school_id: str, installation_id: str, caller: CallerDep, session: ReadSessionDep
) -> InstallationRead:
    """One installation of the school."""
    _admin_school(session, caller, school_id)
    return service.describe(session, service.get_installation(session, school_id, installation_id))


@router.put("/schools/{school_id}/installations/{installation_id}")
def regrant_installation(
    school_id: str,
    installation_id: str,
    body: InstallationUpdate,
    caller: CallerDep,
    session: SessionDep,
    identity: IdentityClientDep,
) -> InstallationRead:
    """Change the granted scopes, grades and classes, granting the app's current published version."""
    _admin_school(session, caller, school_id)
    installation = service.get_installation(session, school_id, installation_id)
    service.regrant(
        session, identity, caller, installation, scopes=body.scopes, grades=body.grades, class_ids=body.class_ids
    )
    return service.describe(session, installation)


@router.delete("/schools/{school_id}/installations/{installation_id}")
def uninstall_app(school_id: str, installation_id: str, caller: CallerDep, session: SessionDep) -> InstallationRead:
    """Uninstall: the app's tokens for the school are revoked and the vendor must delete its data by a date."""
    _admin_school(session, caller, school_id)
    installation = service.get_installation(session, school_id, installation_id)
    service.uninstall(session, caller, installation)
    return service.describe(session, installation)


@router.get("/me/apps")
def my_apps(caller: CallerDep, session: ReadSessionDep) -> list[MyAppRead]:
    """The apps installed for the caller at the schools where they hold a role."""
    _refuse_apps(caller)
    caller.require_scope(SCOPE_READ)
    return service.apps_for(session, caller)


# ------------------------------------------------------------------------------------------ teachers' requests


@router.post("/schools/{school_id}/app-requests", status_code=status.HTTP_201_CREATED)
def request_app(school_id: str, body: AppRequestCreate, caller: CallerDep, session: SessionDep) -> AppRequestRead:
    """A teacher asks the school's administrators to install a listed app, saying why."""
    _refuse_apps(caller)
    caller.require_scope(SCOPE_READ)
    organisation = school(session, school_id)
    if not any(claim.org_id == organisation.id for claim in caller.principal.roles_named(*REQUESTER_ROLES)):
        raise Forbidden("只有本校教师可以申请应用；Only teachers of this school can request apps for it.")
    app = service.get_app(session, body.app_id, field="app_id")
    request = service.request_app(session, caller, school_id=organisation.id, app=app, reason=body.reason)
    return service.describe_request(session, request)


@router.get("/schools/{school_id}/app-requests")
def list_app_requests(
    school_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    status_filter: Annotated[
        Literal["pending", "approved", "declined"] | None, Query(alias="status", description="Only these")
    ] = "pending",
) -> list[AppRequestRead]:
    """Teachers' requests at the school (pending ones by default)."""
    _admin_school(session, caller, school_id)
    return [
        service.describe_request(session, row)
        for row in service.list_requests(session, school_id=school_id, status=status_filter)
    ]


@router.post("/schools/{school_id}/app-requests/{request_id}/approve")
def approve_app_request(
    school_id: str,
    request_id: str,
    body: AppRequestApprove,
    caller: CallerDep,
    session: SessionDep,
    identity: IdentityClientDep,
) -> AppRequestRead:
    """Approve a teacher's request: the app is installed with its requested scopes, or the ones chosen here."""
    organisation = _admin_school(session, caller, school_id)
    request = service.get_request(session, school_id, request_id)
    service.approve_request(
        session, identity, caller, request, school=organisation, scopes=body.scopes, grades=body.grades,
        class_ids=body.class_ids, note=body.note,
    )  # fmt: skip
    return service.describe_request(session, request)


@router.post("/schools/{school_id}/app-requests/{request_id}/decline")
def decline_app_request(
    school_id: str, request_id: str, body: AppRequestDecline, caller: CallerDep, session: SessionDep
) -> AppRequestRead:
    """Decline a teacher's request with a note the teacher sees."""
    _admin_school(session, caller, school_id)
    request = service.get_request(session, school_id, request_id)
    service.decline_request(session, caller, request, note=body.note)
    return service.describe_request(session, request)


@router.get("/me/app-requests")
def my_app_requests(caller: CallerDep, session: ReadSessionDep) -> list[AppRequestRead]:
    """The caller's own app requests and their outcomes."""
    _refuse_apps(caller)
    caller.require_scope(SCOPE_READ)
    return [service.describe_request(session, row) for row in service.my_requests(session, caller)]


# ------------------------------------------------------------------------------------------ vendors' credentials


@router.post("/apps/{app_id}/credentials")
def issue_app_credentials(
    app_id: str, caller: CallerDep, session: SessionDep, identity: IdentityClientDep
) -> AppCredentials:
    """The app's OAuth client id and a new secret, shown once; the previous secret stops working."""
    _refuse_apps(caller)
    require_developer(caller)
    app = service.get_app(session, app_id)
    require_member(session, caller, app.vendor_id)
    secret = service.credentials(session, identity, caller, app)
    return AppCredentials(client_id=app.client_id, client_secret=secret)
