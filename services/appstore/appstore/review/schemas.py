"""API schemas of the city's review, suspensions and retirements, and notices to schools."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appstore.apps.schemas import AttachmentRead, DecisionRead, VersionChanges

Decision = Literal["approved", "rejected", "changes_requested"]
TargetStatus = Literal["suspended", "listed", "retired"]


class Checklist(BaseModel):
    """The review checklist; approving needs every item true."""

    model_config = ConfigDict(extra="forbid")

    filings_valid: bool = Field(description="ICP and education-app filings checked and valid")
    privacy_purposes_adequate: bool = Field(description="Each requested scope's purpose is adequate and necessary")
    content_appropriate: bool = Field(description="Content is appropriate for the grade bands")
    security_assessment_attached: bool = Field(description="The security self-assessment is attached and acceptable")


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision
    checklist: Checklist
    reasons: list[str] = Field(default_factory=list, max_length=20, description="Shown to the vendor")


class VendorSummary(BaseModel):
    id: str
    name: str
    unified_social_credit_code: str
    icp_filing: str
    education_app_filing: str
    contact_name: str
    contact_email: str
    contact_phone: str


class QueueItem(BaseModel):
    version_id: str
    app_id: str
    app_name: str
    version: str
    vendor: VendorSummary
    submitted_at: datetime
    changes: VersionChanges


class QueuePage(BaseModel):
    items: list[QueueItem]
    total: int
    limit: int
    offset: int


class ReviewVersionRead(BaseModel):
    version_id: str
    app_id: str
    app_status: str
    version: str
    status: str
    vendor: VendorSummary
    manifest: dict[str, Any]
    security_assessment: AttachmentRead | None
    security_assessment_url: str | None
    changes: VersionChanges
    decisions: list[DecisionRead]
    submitted_at: datetime | None


class DecisionResult(BaseModel):
    decision: DecisionRead
    version_status: str
    app_status: str


class StatusChangeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TargetStatus = Field(description="suspended, listed (reinstate) or retired (淘汰, final)")
    reason: str = Field(min_length=2, max_length=500)
    effective_at: datetime | None = Field(default=None, description="When it takes effect (default: now)")


class StatusChangeRead(BaseModel):
    id: str
    app_id: str
    status: str
    reason: str
    effective_at: datetime
    created_at: datetime
    applied_at: datetime | None
    outcome: str | None
    installations_removed: int
    schools_notified: int | None = None


class NoticeRead(BaseModel):
    id: str
    app_id: str
    app_name: str
    kind: str
    message: str
    effective_at: datetime
    created_at: datetime


ProposalState = Literal["open", "retirement_ordered", "dismissed", "withdrawn"]
ProposalDecision = Literal["retire", "dismiss"]


class RetirementProposalRead(BaseModel):
    """A proposal to retire an app, with the figures metering flagged it on."""

    id: str
    app_id: str
    app_name: str
    app_status: str
    vendor: VendorSummary
    source: str = Field(description="metering_benefit: metering's benefit ranking (绩效) flagged it")
    periods: list[str] = Field(description="The months (YYYY-MM) it was below the thresholds, oldest first")
    reasons: list[str] = Field(description="low_active_rate | high_cost_per_active_user")
    reasons_zh: list[str] = Field(description="The reasons in Chinese: 低活跃率 / 人均成本过高")
    active_rate: float = Field(description="Active users over the installed schools' people, last period")
    cost_per_active_user_fen: int | None = Field(description="Last period, in fen; null: no active user")
    flagged_at: datetime
    state: ProposalState
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    status_change_id: str | None = Field(description="The retirement ordered on it")
    created_at: datetime


class RetirementProposalPage(BaseModel):
    items: list[RetirementProposalRead]
    total: int
    limit: int
    offset: int


class RetirementProposalDecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: ProposalDecision = Field(description="retire (淘汰: schedules the app's retirement) or dismiss")
    reason: str = Field(min_length=5, max_length=500, description="Why; a retirement's reason is shown to schools")
    effective_at: datetime | None = Field(
        default=None, description="retire only: when the retirement takes effect (default: in 30 days)"
    )


class RetirementProposalDecisionResult(BaseModel):
    proposal: RetirementProposalRead
    status_change: StatusChangeRead | None = Field(description="The retirement scheduled (retire), else null")
