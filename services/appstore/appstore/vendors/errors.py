"""Typed failures of vendor registration and membership."""

from __future__ import annotations

from kit.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound


class InvalidVendor(InvalidInput):
    """Registration fields (credit code, filings, contact) are not acceptable."""

    slug = "appstore/invalid-vendor"
    title_zh = "企业登记信息有误"
    title_en = "Invalid vendor registration"


class DuplicateCreditCode(Conflict):
    slug = "appstore/vendor-already-registered"
    title_zh = "该企业已登记"
    title_en = "Vendor already registered"

    def __init__(self, code: str, vendor_id: str) -> None:
        super().__init__(
            f"统一社会信用代码 {code} 已被登记，请联系该企业的管理员邀请您加入；"
            f"A vendor with the unified social credit code {code} is already registered: ask its owner to invite you.",
            errors=[FieldError(field="unified_social_credit_code", message="already registered", code="duplicate")],
            vendor_id=vendor_id,
        )


class InvitationUnusable(NotFound):
    slug = "appstore/invitation-not-usable"
    title_zh = "邀请码无效"
    title_en = "Invitation not usable"

    def __init__(self, reason_zh: str, reason_en: str) -> None:
        super().__init__(f"{reason_zh}；{reason_en}", errors=[FieldError(field="code", message=reason_en)])


class AlreadyMember(Conflict):
    slug = "appstore/already-a-member"
    title_zh = "已是企业成员"
    title_en = "Already a member"


class LastOwner(Conflict):
    slug = "appstore/last-owner"
    title_zh = "不能移除最后一位管理员"
    title_en = "Cannot remove the last owner"


class NotAMember(NotFound):
    slug = "appstore/member-not-found"
    title_zh = "成员不存在"
    title_en = "Member not found"


class VendorSuspended(Forbidden):
    slug = "appstore/vendor-suspended"
    title_zh = "开发企业已被暂停"
    title_en = "Vendor suspended"
