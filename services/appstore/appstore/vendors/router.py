"""HTTP routes of vendors: registration, members and invitations. Developers only (vendor_developer, apps.develop)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from appstore.deps import CallerDep
from appstore.vendors import service
from appstore.vendors.access import require_developer, require_member
from appstore.vendors.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    MemberRead,
    VendorCreate,
    VendorRead,
)
from kit import audit
from kit.db import ReadSessionDep, SessionDep

router = APIRouter(tags=["Vendors"])


@router.post("/vendors", status_code=status.HTTP_201_CREATED)
def register_vendor(body: VendorCreate, caller: CallerDep, session: SessionDep) -> VendorRead:
    """Register a vendor (开发企业) with its unified social credit code and filings; the caller becomes its owner."""
    require_developer(caller)
    vendor = service.register_vendor(session, data=body, registrant_id=caller.person_id)
    audit.append(
        session, action="vendor.registered", actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type="vendor", target_id=vendor.id,
    )  # fmt: skip
    return VendorRead.model_validate(vendor).model_copy(update={"my_role": "owner"})


@router.get("/vendors")
def list_my_vendors(caller: CallerDep, session: ReadSessionDep) -> list[VendorRead]:
    """The vendors the caller develops for."""
    require_developer(caller)
    return [
        VendorRead.model_validate(vendor).model_copy(update={"my_role": member.role})
        for vendor, member in service.vendors_of(session, caller.person_id)
    ]


@router.get("/vendors/{vendor_id}")
def read_vendor(vendor_id: str, caller: CallerDep, session: ReadSessionDep) -> VendorRead:
    """A vendor the caller develops for."""
    member = require_member(session, caller, vendor_id)
    return VendorRead.model_validate(service.get_vendor(session, vendor_id)).model_copy(update={"my_role": member.role})


@router.get("/vendors/{vendor_id}/members")
def list_members(vendor_id: str, caller: CallerDep, session: ReadSessionDep) -> list[MemberRead]:
    """The vendor's developers."""
    require_member(session, caller, vendor_id)
    return [
        MemberRead(person_id=member.person_id, name=name, role=member.role, joined_at=member.joined_at)
        for member, name in service.members(session, vendor_id)
    ]


@router.delete("/vendors/{vendor_id}/members/{person_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(vendor_id: str, person_id: str, caller: CallerDep, session: SessionDep) -> Response:
    """Remove a developer from the vendor (owners only; the last owner stays)."""
    require_member(session, caller, vendor_id, owner=True)
    service.remove_member(session, vendor_id=vendor_id, person_id=person_id)
    audit.append(
        session, action="vendor.member_removed", actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type="vendor", target_id=vendor_id,
        detail={"person_id": person_id},
    )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/vendors/{vendor_id}/invitations", status_code=status.HTTP_201_CREATED)
def invite_developer(
    vendor_id: str, body: InvitationCreate, caller: CallerDep, session: SessionDep
) -> InvitationCreated:
    """Invite a developer: a one-time code, valid for ``valid_days``, that another vendor developer accepts."""
    require_member(session, caller, vendor_id, owner=True)
    invitation, code = service.invite(session, vendor_id=vendor_id, data=body, invited_by=caller.person_id)
    audit.append(
        session, action="vendor.invitation_created", actor_id=caller.person_id,
        actor_client=caller.principal.client_id, source_ip=caller.source_ip, request_id=caller.request_id,
        target_type="vendor", target_id=vendor_id, detail={"invitation_id": invitation.id, "role": invitation.role},
    )  # fmt: skip
    return InvitationCreated(
        id=invitation.id, vendor_id=vendor_id, role=invitation.role,
        code=code, expires_at=invitation.expires_at,
    )  # fmt: skip


@router.post("/vendor-invitations/accept")
def accept_invitation(body: InvitationAccept, caller: CallerDep, session: SessionDep) -> VendorRead:
    """Join a vendor with the code its owner gave you."""
    require_developer(caller)
    member = service.accept_invitation(session, code=body.code, person_id=caller.person_id)
    audit.append(
        session, action="vendor.member_joined", actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type="vendor", target_id=member.vendor_id,
    )  # fmt: skip
    vendor = service.get_vendor(session, member.vendor_id)
    return VendorRead.model_validate(vendor).model_copy(update={"my_role": member.role})
