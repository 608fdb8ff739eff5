"""Who may act for a vendor: its developers, holding the vendor_developer role and the apps.develop scope."""

from __future__ import annotations

from sqlmodel import Session

from appstore.deps import DEVELOPER_ROLE, Caller
from appstore.errors import UnknownVendor
from appstore.vendors.models import Vendor, VendorMember
from kit.errors import Forbidden

SCOPE_DEVELOP = "apps.develop"


def require_developer(caller: Caller) -> None:
    """The caller is a vendor developer (of any vendor) with the apps.develop scope."""
    caller.require_scope(SCOPE_DEVELOP)
    if not caller.principal.roles_named(DEVELOPER_ROLE):
        raise Forbidden("只有应用开发者可以这样做；Only app developers (role vendor_developer) may do this.")


def require_member(session: Session, caller: Caller, vendor_id: str, *, owner: bool = False) -> VendorMember:
    """The caller's membership of the vendor; 404 for an unknown vendor, 403 for someone else's."""
    require_developer(caller)
    if session.get(Vendor, vendor_id) is None:
        raise UnknownVendor(vendor_id)
    member = session.get(VendorMember, (vendor_id, caller.person_id))
    if member is None:
        raise Forbidden("您不是该开发企业的成员；You are not a developer of this vendor.", vendor_id=vendor_id)
    if owner and member.role != "owner":
        raise Forbidden("只有企业管理员可以这样做；Only the vendor's owner may do this.", vendor_id=vendor_id)
    return member
