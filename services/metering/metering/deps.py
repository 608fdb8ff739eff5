"""Request-scoped dependencies shared by metering's routers: who calls, and whose usage they may read.

Reach follows the organisation tree and the app store's vendors: a city administrator reads everything, a district
administrator the schools of their district, a school administrator their school, a vendor's developer the usage
of their vendor's apps. Finance decisions (closing periods, deciding held usage, disputes, approval) belong to city
administrators holding ``metering.approve``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session, col, or_, select

from kit import auth as kit_auth
from kit.auth import CurrentPrincipal
from kit.errors import Forbidden
from metering.config import MeteringSettings
from metering.projections.models import MeteredOrganisation, VendorDeveloper

READ_SCOPE = "metering.read"
APPROVE_SCOPE = "metering.approve"
REPORT_SCOPE = "metering.report"


@dataclass(frozen=True)
class Reach:
    """Whose usage a caller may read: every school, some schools, and some vendors' apps."""

    every_school: bool
    school_ids: frozenset[str]
    vendor_ids: frozenset[str]

    @property
    def is_empty(self) -> bool:
        return not self.every_school and not self.school_ids and not self.vendor_ids

    def covers_school(self, school_id: str) -> bool:
        return self.every_school or school_id in self.school_ids

    def covers_vendor(self, vendor_id: str | None) -> bool:
        return self.every_school or (vendor_id is not None and vendor_id in self.vendor_ids)


@dataclass(frozen=True)
class Caller(kit_auth.Caller):
    """The verified caller of a request."""

    def is_city_admin(self) -> bool:
        return any(_is_top(claim.org_path) for claim in self.principal.roles_named("city_admin"))

    def require_finance(self) -> None:
        """City finance: a city administrator with ``metering.approve``."""
        self.require_scope(APPROVE_SCOPE)
        if not self.is_city_admin():
            raise Forbidden(
                "只有市级管理员（财务）可以执行此操作；Only city administrators (finance) may do this.",
            )

    def reach(self, session: Session) -> Reach:
        """What the caller may read (needs ``metering.read``); 403 when it is nothing at all."""
        self.require_scope(READ_SCOPE)
        reach = _reach(session, self)
        if reach.is_empty:
            raise Forbidden(
                "您没有可查看的使用量或结算单：需要市、区县、学校管理员或应用企业开发者身份；"
                "You may read no usage: it takes a city, district or school administrator, or a vendor's developer.",
            )
        return reach


def _is_top(path: str) -> bool:
    stripped = path.strip("/")
    return bool(stripped) and "/" not in stripped


def _reach(session: Session, caller: Caller) -> Reach:
    if caller.is_city_admin():
        return Reach(every_school=True, school_ids=frozenset(), vendor_ids=frozenset())
    paths = [
        claim.org_path.rstrip("/")
        for claim in caller.principal.roles_named("district_admin", "school_admin", "city_admin")
        if claim.org_path
    ]
    schools: set[str] = set()
    if paths:
        conditions = [
            or_(col(MeteredOrganisation.path) == path, col(MeteredOrganisation.path).startswith(path + "/"))
            for path in paths
        ]
        schools.update(
            session.exec(
                select(MeteredOrganisation.org_id).where(MeteredOrganisation.kind == "school", or_(*conditions))
            )
        )
    vendors: set[str] = set()
    if caller.principal.roles_named("vendor_developer"):
        vendors.update(
            session.exec(select(VendorDeveloper.vendor_id).where(VendorDeveloper.person_id == caller.person_id))
        )
    return Reach(every_school=False, school_ids=frozenset(schools), vendor_ids=frozenset(vendors))


def schools_in(reach: Reach, wanted: Iterable[str]) -> list[str]:
    return [school_id for school_id in wanted if reach.covers_school(school_id)]


def current_caller(request: Request, principal: CurrentPrincipal) -> Caller:
    return Caller(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


def get_settings(request: Request) -> MeteringSettings:
    settings: MeteringSettings = request.app.state.settings
    return settings


CallerDep = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[MeteringSettings, Depends(get_settings)]
