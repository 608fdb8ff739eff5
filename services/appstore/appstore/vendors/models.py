"""Tables of vendors: the companies that publish apps, and their developers."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


def new_id() -> str:
    return str(uuid4())


def as_utc(moment: datetime) -> datetime:
    """SQLite hands stored UTC times back without their zone; every comparison and answer uses aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Vendor(SQLModel, table=True):
    """A company that publishes apps (应用提供者), with its registration and filings."""

    __tablename__ = "vendor"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=100)
    unified_social_credit_code: str = Field(max_length=18, unique=True)
    contact_name: str = Field(max_length=50)
    contact_email: str = Field(max_length=254)
    contact_phone: str = Field(max_length=30)
    icp_filing: str = Field(max_length=60)  # ICP备案号
    education_app_filing: str = Field(max_length=60)  # 教育移动互联网应用程序备案号
    status: str = Field(default="active", max_length=16)  # active | suspended
    created_by: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class VendorMember(SQLModel, table=True):
    """A developer (an identity account with the vendor_developer role) working for a vendor."""

    __tablename__ = "vendor_member"

    vendor_id: str = Field(foreign_key="vendor.id", primary_key=True, max_length=36)
    person_id: str = Field(primary_key=True, max_length=36, index=True)
    role: str = Field(default="developer", max_length=16)  # owner | developer
    joined_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class VendorInvitation(SQLModel, table=True):
    """An owner's invitation for another developer to join the vendor; its code is shown once and stored hashed."""

    __tablename__ = "vendor_invitation"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    vendor_id: str = Field(foreign_key="vendor.id", index=True, max_length=36)
    code_hash: str = Field(max_length=64, unique=True)
    role: str = Field(default="developer", max_length=16)  # owner | developer
    invited_by: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ)
    accepted_by: str | None = Field(default=None, max_length=36)
    accepted_at: datetime | None = Field(default=None, sa_type=_TZ)
