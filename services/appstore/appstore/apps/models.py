"""Tables of apps and their manifest versions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from appstore.vendors.models import new_id
from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class App(SQLModel, table=True):
    """An app of a vendor; what the catalog shows is its published version."""

    __tablename__ = "app"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    vendor_id: str = Field(foreign_key="vendor.id", index=True, max_length=36)
    client_id: str = Field(unique=True, max_length=64)  # its OAuth client at the identity provider
    # draft (never published) | listed | suspended | retired
    status: str = Field(default="draft", max_length=16, index=True)
    published_version_id: str | None = Field(default=None, max_length=36)
    status_reason: str | None = Field(default=None, max_length=500)
    status_effective_at: datetime | None = Field(default=None, sa_type=_TZ)
    created_by: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class AppVersion(SQLModel, table=True):
    """One version of an app's manifest; immutable once submitted for review."""

    __tablename__ = "app_version"
    __table_args__ = (sa.UniqueConstraint("app_id", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    version: str = Field(max_length=40)
    manifest: str = Field(sa_type=sa.Text)  # the AppManifestV1 document, JSON
    # draft | submitted | changes_requested | rejected | approved | published | superseded
    status: str = Field(default="draft", max_length=20, index=True)
    scopes: str = Field(sa_type=sa.Text)  # space-separated, sorted
    pricing_unit: str = Field(max_length=24)
    unit_price_fen: int
    monthly_cap_fen_per_school: int | None = None
    # Asks for scopes the published version did not grant: schools must grant them again.
    needs_regrant: bool = False
    # The pricing plan differs from the published version's: reviewers see it, metering prices by the new plan.
    price_changed: bool = False
    created_by: str | None = Field(default=None, max_length=36)
    submitted_by: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    submitted_at: datetime | None = Field(default=None, sa_type=_TZ)
    reviewed_at: datetime | None = Field(default=None, sa_type=_TZ)
    published_at: datetime | None = Field(default=None, sa_type=_TZ)


class VersionAttachment(SQLModel, table=True):
    """The security self-assessment (安全自评估报告, a PDF) attached to a version before it is submitted."""

    __tablename__ = "app_version_attachment"

    version_id: str = Field(foreign_key="app_version.id", primary_key=True, max_length=36)
    kind: str = Field(default="security_assessment", primary_key=True, max_length=32)
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=100)
    size_bytes: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_type=sa.LargeBinary)
    uploaded_by: str = Field(max_length=36)
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
