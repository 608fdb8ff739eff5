"""Request-scoped dependencies shared by the app store's routers: who calls, and what they may do where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from appstore.config import AppStoreSettings
from appstore.roster.models import RosterOrganisation
from kit import auth as kit_auth
from kit.auth import CurrentPrincipal
from kit.crypto import FieldCipher
from kit.errors import NotFound

SCHOOL_ADMIN_ROLES = ("city_admin", "district_admin", "school_admin")
REVIEWER_ROLES = ("city_admin",)
DEVELOPER_ROLE = "vendor_developer"


@dataclass(frozen=True)
class Caller(kit_auth.Caller):
    """The verified caller of a request."""

    def city_path(self) -> str | None:
        """The path of the city the caller's roles sit in (the first segment of any role's path)."""
        for claim in self.principal.roles:
            if claim.org_path:
                return "/" + claim.org_path.strip("/").split("/", 1)[0]
        return None


class UnknownSchool(NotFound):
    slug = "appstore/school-not-found"
    title_zh = "学校不存在"
    title_en = "School not found"

    def __init__(self, school_id: str) -> None:
        super().__init__(
            f"没有编号为 {school_id[:64]} 的学校；No school has the id {school_id[:64]!r}.", school_id=school_id[:64]
        )


def school(session: Session, school_id: str) -> RosterOrganisation:
    """The school, from the directory projection; 404 for an unknown or inactive school."""
    organisation = session.get(RosterOrganisation, school_id)
    if organisation is None or organisation.kind != "school" or not organisation.active:
        raise UnknownSchool(school_id)
    return organisation


def current_caller(request: Request, principal: CurrentPrincipal) -> Caller:
    return Caller(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


def get_settings(request: Request) -> AppStoreSettings:
    settings: AppStoreSettings = request.app.state.settings
    return settings


def get_cipher(request: Request) -> FieldCipher:
    cipher: FieldCipher = request.app.state.cipher
    return cipher


CallerDep = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[AppStoreSettings, Depends(get_settings)]
CipherDep = Annotated[FieldCipher, Depends(get_cipher)]
