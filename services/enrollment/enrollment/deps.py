"""Request-scoped dependencies shared by the enrollment routers: who calls, and which schools they may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session, col, or_, select

from contracts.api import APP_SCHOOLS_HEADER
from enrollment.config import EnrollmentSettings
from enrollment.directory.models import DirectoryOrganisation
from enrollment.errors import UnknownSchool
from kit import auth as kit_auth
from kit.auth import CurrentPrincipal, authorize
from kit.crypto import FieldCipher
from kit.errors import Forbidden

#: Roles that see a school's roster, by how far their organisation reaches.
ROSTER_ROLES = ("city_admin", "district_admin", "school_admin", "teacher")
ADMIN_ROLES = ("city_admin", "district_admin", "school_admin")


@dataclass(frozen=True)
class Caller(kit_auth.Caller):
    """The verified caller, where the call came from, and (for a vendor's app) the schools that installed it."""

    #: For a vendor's app: the schools that installed it and granted it the route's scopes, as the gateway
    #: established them. None for the platform's own clients, which are confined by their roles instead.
    app_schools: frozenset[str] | None

    def require(self, *, roles: Iterable[str], org_path: str, scope: str) -> None:
        """One of ``roles`` at or above ``org_path``, and the scope; an app needs the school's installation."""
        if self.is_app:
            self.require_scope(scope)
            school_id = org_path.rstrip("/").rsplit("/", 1)[-1]
            if self.app_schools is None or school_id not in self.app_schools:
                raise Forbidden(
                    "该应用未被此学校安装或未获授权；The app is not installed at this school with this scope.",
                    org_path=org_path,
                )
            return
        authorize(self.principal, roles=roles, org_path=org_path, scope=scope)


def current_caller(request: Request, principal: CurrentPrincipal) -> Caller:
    app_schools: frozenset[str] | None = None
    if principal.claims.app_id is not None:
        # Only the gateway sets this header (it strips any a client sends); services are reachable only through it.
        header = request.headers.get(APP_SCHOOLS_HEADER, "")
        app_schools = frozenset(item for item in header.split(",") if item)
    return Caller(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
        app_schools=app_schools,
    )


def visible_school_ids(session: Session, caller: Caller, *, roles: Iterable[str] = ROSTER_ROLES) -> list[str] | None:
    """The schools whose rosters the caller may read: None means every school (a city administrator).

    An app sees the schools that installed it; a person sees the schools under the organisations where they
    hold one of ``roles``.
    """
    if caller.app_schools is not None:
        return sorted(caller.app_schools)
    wanted = set(roles)
    paths = [claim.org_path.rstrip("/") for claim in caller.principal.roles if claim.role in wanted and claim.org_path]
    if not paths:
        return []
    if any(path.strip("/").count("/") == 0 for path in paths):
        # A role at the top of the tree (the city) reaches every school: no list of a thousand ids in each query.
        return None
    conditions = [
        or_(col(DirectoryOrganisation.path) == path, col(DirectoryOrganisation.path).startswith(path + "/"))
        for path in paths
    ]
    statement = select(DirectoryOrganisation.id).where(DirectoryOrganisation.kind == "school", or_(*conditions))
    return sorted(session.exec(statement))


def school_path(session: Session, school_id: str) -> str:
    """The school's organisation path, for role checks; an unknown school gets 404 from the caller's check."""
    organisation = session.get(DirectoryOrganisation, school_id)
    if organisation is None or organisation.kind != "school":
        raise UnknownSchool(school_id)
    return organisation.path


def get_settings(request: Request) -> EnrollmentSettings:
    settings: EnrollmentSettings = request.app.state.settings
    return settings


def get_cipher(request: Request) -> FieldCipher:
    cipher: FieldCipher = request.app.state.cipher
    return cipher


CallerDep = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[EnrollmentSettings, Depends(get_settings)]
CipherDep = Annotated[FieldCipher, Depends(get_cipher)]
