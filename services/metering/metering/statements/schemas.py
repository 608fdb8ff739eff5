"""API schemas of statements, their lines, disputes, adjustments, approval and billing periods.

Amounts are integer fen (1 元 = 100 分). How caps and rounding work is stated on the statement endpoints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StatementState = Literal["issued", "approved"]
PeriodState = Literal["open", "grace", "closed"]


class TotalsRead(BaseModel):
    gross_fen: int = Field(description="Quantity x unit price, before caps")
    cap_reduction_fen: int = Field(description="Taken off by the schools' monthly caps")
    adjustment_fen: int = Field(description="Signed adjustments by city finance")
    total_fen: int = Field(description="gross - cap reduction + adjustments: what the city pays")
    lines: int


class DistrictTotalsRead(TotalsRead):
    district_id: str | None = Field(description="null: usage at no school of a district")
    district_name: str | None


class LineRead(BaseModel):
    id: int | None = Field(description="null on a preview (its lines are not stored)")
    app_id: str
    app_name: str
    school_id: str
    school_name: str | None
    district_id: str | None
    district_name: str | None
    meter: str
    usage_period: str = Field(description="The month of use")
    late_usage_adjustment: bool = Field(
        description="Usage of an earlier month that arrived after that month closed, billed in this statement (补计)"
    )
    plan_id: int
    unit_price_fen: int
    quantity: int
    gross_fen: int
    cap_fen: int | None = Field(description="The school's monthly cap for the app, when the line was capped by it")
    cap_reduction_fen: int
    amount_fen: int = Field(description="gross - cap reduction")
    adjustment_fen: int
    final_fen: int = Field(description="amount + adjustments")


class LinePage(BaseModel):
    items: list[LineRead]
    total: int
    limit: int
    offset: int


class PreviewRead(BaseModel):
    vendor_id: str
    vendor_name: str
    period: str
    state: Literal["preview"] = "preview"
    computed_at: datetime
    totals: TotalsRead
    districts: list[DistrictTotalsRead]
    lines: LinePage


class StatementRead(BaseModel):
    id: str
    vendor_id: str
    vendor_name: str
    period: str
    state: StatementState
    issued_at: datetime
    approved_at: datetime | None
    approved_by: str | None
    approval_note: str | None
    totals: TotalsRead


class StatementDetail(StatementRead):
    districts: list[DistrictTotalsRead]
    open_disputes: int
    late_usage_adjustment_lines: int = Field(description="Lines billing usage of earlier months (补计)")


class StatementPage(BaseModel):
    items: list[StatementRead]
    total: int
    limit: int
    offset: int


class DisputeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=5, max_length=1000, description="Why the line is wrong (at least 5 characters)")


class DisputeRead(BaseModel):
    id: str
    statement_id: str
    line_id: int
    raised_by: str
    raised_at: datetime
    reason: str
    state: Literal["open", "adjusted", "rejected"]
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


class ResolutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["adjust", "reject"]
    amount_fen: int | None = Field(
        default=None, ge=0, le=10_000_000_000, description="adjust: the line's new final amount in fen"
    )
    reason: str = Field(min_length=2, max_length=1000)

    @model_validator(mode="after")
    def _amount_with_adjust(self) -> ResolutionCreate:
        if self.decision == "adjust" and self.amount_fen is None:
            raise ValueError("amount_fen is required to adjust (调整时必须给出金额)")
        if self.decision == "reject" and self.amount_fen is not None:
            raise ValueError("amount_fen is only for adjust (驳回时不能给出金额)")
        return self


class AdjustmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: int = Field(ge=1)
    amount_fen: int = Field(ge=-10_000_000_000, le=10_000_000_000, description="Signed change to the line, in fen")
    reason: str = Field(min_length=2, max_length=1000)


class AdjustmentRead(BaseModel):
    id: int
    statement_id: str
    line_id: int
    amount_fen: int
    reason: str
    dispute_id: str | None
    made_by: str
    made_at: datetime


class AdjustmentResult(BaseModel):
    adjustment: AdjustmentRead
    line: LineRead
    statement: StatementRead


class ResolutionResult(BaseModel):
    dispute: DisputeRead
    adjustment: AdjustmentRead | None
    statement: StatementRead


class ApprovalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


class PeriodRead(BaseModel):
    period: str
    state: PeriodState = Field(
        description="open: the month runs; grace: the month ended, late usage still counts, finance may close it; "
        "closed: statements issued"
    )
    starts_at: datetime
    ends_at: datetime
    grace_ends_at: datetime = Field(description="When it closes on its own")
    closed_at: datetime | None
    closed_by: str | None
    statements: int | None
