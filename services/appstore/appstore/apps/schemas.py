"""API schemas of apps and their manifest versions (the manifest itself is ``contracts.manifest.AppManifestV1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AttachmentRead(BaseModel):
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime


class DecisionRead(BaseModel):
    id: str
    decision: str
    checklist: dict[str, bool]
    reasons: list[str]
    decided_at: datetime


class ScopeChange(BaseModel):
    scope: str
    purpose_zh: str | None = None
    description_zh: str


class PriceTerms(BaseModel):
    unit: str
    unit_label: str
    unit_price_fen: int
    monthly_cap_fen_per_school: int | None = None


class PriceChange(BaseModel):
    before: PriceTerms
    after: PriceTerms


class VersionChanges(BaseModel):
    """What a version changes against the app's published version (everything is new for a first version)."""

    published_version: str | None
    added_scopes: list[ScopeChange] = Field(default_factory=list)
    removed_scopes: list[ScopeChange] = Field(default_factory=list)
    needs_regrant: bool = Field(description="Asks for scopes the published version did not: schools must grant again")
    price_changed: bool
    price_change: PriceChange | None = None


class VersionSummary(BaseModel):
    id: str
    version: str
    status: str
    needs_regrant: bool
    price_changed: bool
    created_at: datetime
    submitted_at: datetime | None
    reviewed_at: datetime | None
    published_at: datetime | None


class VersionRead(VersionSummary):
    app_id: str
    manifest: dict[str, Any]
    security_assessment: AttachmentRead | None
    changes: VersionChanges
    decisions: list[DecisionRead]


class AppRead(BaseModel):
    id: str
    vendor_id: str
    client_id: str
    name: str = Field(description="The newest version's Chinese name")
    status: str
    status_reason: str | None
    status_effective_at: datetime | None
    published_version_id: str | None
    created_at: datetime
    versions: list[VersionSummary]
