"""API schemas of vendors and their developers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MemberRole = Literal["owner", "developer"]


class VendorCreate(BaseModel):
    """A company registering with the app store, with its registration and filings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=100, description="Registered company name (企业名称)")
    unified_social_credit_code: str = Field(
        max_length=40, description="统一社会信用代码 (GB 32100-2015), 18 characters"
    )
    contact_name: str = Field(min_length=1, max_length=50)
    contact_email: str = Field(max_length=254)
    contact_phone: str = Field(max_length=30, description="Mobile number or landline with area code (0592-1234567)")
    icp_filing: str = Field(max_length=60, description="ICP备案号, e.g. 闽ICP备12345678号 or 闽ICP备12345678号-1")
    education_app_filing: str = Field(max_length=60, description="教育App备案号, e.g. 教APP备3502001号")


class VendorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    unified_social_credit_code: str
    contact_name: str
    contact_email: str
    contact_phone: str
    icp_filing: str
    education_app_filing: str
    status: str
    created_at: datetime
    my_role: MemberRole | None = Field(default=None, description="The caller's role at the vendor")


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_id: str
    name: str | None = Field(default=None, description="From the directory")
    role: MemberRole
    joined_at: datetime


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: MemberRole = "developer"
    valid_days: int = Field(default=7, ge=1, le=30, description="Days the code stays valid")


class InvitationCreated(BaseModel):
    id: str
    vendor_id: str
    role: MemberRole
    code: str = Field(description="Give this to the developer; it is shown once and works once")
    expires_at: datetime


class InvitationAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=100)
