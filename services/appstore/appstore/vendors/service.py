"""Vendors: registration with validated filings, members, and invitations with one-time codes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from appstore.errors import UnknownVendor
from appstore.roster.models import RosterPerson
from appstore.vendors.errors import (
    AlreadyMember,
    DuplicateCreditCode,
    InvalidVendor,
    InvitationUnusable,
    LastOwner,
    NotAMember,
)
from appstore.vendors.models import Vendor, VendorInvitation, VendorMember, as_utc
from appstore.vendors.schemas import InvitationCreate, VendorCreate
from contracts.events.appstore import VendorMemberAddedV1, VendorMemberRemovedV1, VendorRegisteredV1
from kit import outbox
from kit.errors import FieldError
from kit.identifiers import CreditCodeError, PhoneError, validate_credit_code, validate_phone
from kit.outbox import utcnow

# ICP filings: province abbreviation + "ICP备" + the number + "号", optionally "-n" for one of its sites.
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
ICP_FILING = re.compile(rf"^[{_PROVINCES}]ICP备\d{{6,12}}号(-\d{{1,4}})?$")
# Education app filings (教育移动互联网应用程序备案): "教APP备" + 7 digits (region code and sequence) + "号".
EDUCATION_APP_FILING = re.compile(r"^教APP备\d{7}号$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(-\d{1,6})?$")


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def validate_registration(data: VendorCreate) -> VendorCreate:
    """The registration with normalised identifiers; every defect at once as a 422 naming the field."""
    errors: list[FieldError] = []
    fields = data.model_dump()
    try:
        fields["unified_social_credit_code"] = validate_credit_code(data.unified_social_credit_code)
    except CreditCodeError as error:
        errors.append(FieldError(field="unified_social_credit_code", message=error.message, code=error.code))
    icp = re.sub(r"\s+", "", data.icp_filing).replace("icp", "ICP").replace("Icp", "ICP")
    if not ICP_FILING.match(icp):
        errors.append(
            FieldError(
                field="icp_filing",
                message="ICP备案号应为“省份简称 + ICP备 + 数字 + 号”，如 闽ICP备12345678号 或 闽ICP备12345678号-1 / "
                "the ICP filing number must look like 闽ICP备12345678号 (optionally with -1 for a site)",
                code="format",
            )
        )
    fields["icp_filing"] = icp
    education = re.sub(r"\s+", "", data.education_app_filing)
    education = re.sub(r"(?i)^教app备", "教APP备", education)
    if not EDUCATION_APP_FILING.match(education):
        errors.append(
            FieldError(
                field="education_app_filing",
                message="教育App备案号应为“教APP备 + 7 位数字 + 号”，如 教APP备3502001号 / the education app filing "
                "number must look like 教APP备3502001号 (7 digits)",
                code="format",
            )
        )
    fields["education_app_filing"] = education
    if not _EMAIL.match(data.contact_email.strip()):
        errors.append(
            FieldError(
                field="contact_email",
                message="请填写有效的电子邮箱，如 dev@example.com / give a valid e-mail address",
                code="format",
            )
        )
    fields["contact_email"] = data.contact_email.strip()
    phone = data.contact_phone.strip()
    try:
        fields["contact_phone"] = validate_phone(phone)
    except PhoneError:
        if not _LANDLINE.match(phone):
            errors.append(
                FieldError(
                    field="contact_phone",
                    message="请填写 11 位手机号或带区号的固定电话（如 0592-1234567）/ "
                    "give a mobile number or a landline with its area code (0592-1234567)",
                    code="format",
                )
            )
    fields["name"] = data.name.strip()
    fields["contact_name"] = data.contact_name.strip()
    if errors:
        raise InvalidVendor("企业登记信息有误，请按 errors[] 修改；Fix the registration fields listed in errors[].",
                            errors=errors)  # fmt: skip
    return VendorCreate.model_validate(fields)


def register_vendor(session: Session, *, data: VendorCreate, registrant_id: str) -> Vendor:
    """Register a vendor; the registrant becomes its owner. Emits VendorRegisteredV1."""
    data = validate_registration(data)
    existing = session.exec(
        select(Vendor).where(Vendor.unified_social_credit_code == data.unified_social_credit_code)
    ).first()
    if existing is not None:
        raise DuplicateCreditCode(data.unified_social_credit_code, existing.id)
    vendor = Vendor(**data.model_dump(), created_by=registrant_id)
    session.add(vendor)
    session.flush()
    session.add(VendorMember(vendor_id=vendor.id, person_id=registrant_id, role="owner"))
    outbox.emit(
        session,
        VendorRegisteredV1(
            vendor_id=vendor.id, name=vendor.name, unified_social_credit_code=vendor.unified_social_credit_code
        ),
        subject_id=vendor.id,
    )
    outbox.emit(session, VendorMemberAddedV1(vendor_id=vendor.id, person_id=registrant_id, role="owner"),
                subject_id=vendor.id)  # fmt: skip
    session.flush()
    return vendor


def get_vendor(session: Session, vendor_id: str) -> Vendor:
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise UnknownVendor(vendor_id)
    return vendor


def vendors_of(session: Session, person_id: str) -> list[tuple[Vendor, VendorMember]]:
    rows = session.exec(
        select(Vendor, VendorMember)
        .join(VendorMember, col(VendorMember.vendor_id) == col(Vendor.id))
        .where(VendorMember.person_id == person_id)
        .order_by(col(Vendor.created_at))
    ).all()
    return [(vendor, member) for vendor, member in rows]


def members(session: Session, vendor_id: str) -> list[tuple[VendorMember, str | None]]:
    rows = session.exec(
        select(VendorMember, RosterPerson.name)
        .join(RosterPerson, col(RosterPerson.id) == col(VendorMember.person_id), isouter=True)
        .where(VendorMember.vendor_id == vendor_id)
        .order_by(col(VendorMember.joined_at))
    ).all()
    return [(member, name) for member, name in rows]


def invite(
    session: Session, *, vendor_id: str, data: InvitationCreate, invited_by: str, now: datetime | None = None
) -> tuple[VendorInvitation, str]:
    """An invitation and its one-time code (only its hash is stored)."""
    code = secrets.token_urlsafe(18)
    moment = now or utcnow()
    invitation = VendorInvitation(
        vendor_id=vendor_id, code_hash=_hash_code(code), role=data.role, invited_by=invited_by,
        created_at=moment, expires_at=moment + timedelta(days=data.valid_days),
    )  # fmt: skip
    session.add(invitation)
    session.flush()
    return invitation, code


def accept_invitation(session: Session, *, code: str, person_id: str, now: datetime | None = None) -> VendorMember:
    """Join the vendor the code invites to; the code then stops working."""
    invitation = session.exec(select(VendorInvitation).where(VendorInvitation.code_hash == _hash_code(code))).first()
    if invitation is None:
        raise InvitationUnusable(
            "邀请码不存在，请核对后重新输入", "no invitation has this code; check it and try again"
        )
    if invitation.accepted_at is not None:
        raise InvitationUnusable("该邀请码已被使用，请向企业管理员索取新的邀请码",
                                 "this code has already been used; ask the vendor's owner for a new one")  # fmt: skip
    if as_utc(invitation.expires_at) <= (now or utcnow()):
        raise InvitationUnusable("该邀请码已过期，请向企业管理员索取新的邀请码",
                                 "this code has expired; ask the vendor's owner for a new one")  # fmt: skip
    if session.get(VendorMember, (invitation.vendor_id, person_id)) is not None:
        raise AlreadyMember("您已是该企业的成员；You are already a developer of this vendor.",
                            vendor_id=invitation.vendor_id)  # fmt: skip
    invitation.accepted_by = person_id
    invitation.accepted_at = now or utcnow()
    session.add(invitation)
    member = VendorMember(vendor_id=invitation.vendor_id, person_id=person_id, role=invitation.role)
    session.add(member)
    outbox.emit(
        session,
        VendorMemberAddedV1(vendor_id=invitation.vendor_id, person_id=person_id,
                            role="owner" if invitation.role == "owner" else "developer"),
        subject_id=invitation.vendor_id,
    )  # fmt: skip
    session.flush()
    return member


def remove_member(session: Session, *, vendor_id: str, person_id: str) -> None:
    """Remove a developer; the last owner stays (a vendor always has someone who can manage it)."""
    member = session.get(VendorMember, (vendor_id, person_id))
    if member is None:
        raise NotAMember(f"该企业没有这位成员；This vendor has no member {person_id[:64]!r}.")
    if member.role == "owner":
        owners = session.exec(
            select(VendorMember).where(VendorMember.vendor_id == vendor_id, VendorMember.role == "owner")
        ).all()
        if len(owners) <= 1:
            raise LastOwner("企业至少需要一位管理员，请先邀请另一位管理员；"
                            "A vendor needs an owner: invite another owner first.")  # fmt: skip
    session.delete(member)
    outbox.emit(session, VendorMemberRemovedV1(vendor_id=vendor_id, person_id=person_id), subject_id=vendor_id)
    session.flush()
