"""Events published by the metering service (stream EDU_METERING).

Metering turns usage into the city's monthly statements to vendors (按量付费) and ranks apps by the benefit
they bring (绩效); a flag here opens the app store's retirement review (淘汰). Amounts are integer fen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from contracts.events.base import EventPayload, registry

Period = str  # "YYYY-MM", a calendar month in China Standard Time (UTC+8)
BenefitFlagReason = Literal["low_active_rate", "high_cost_per_active_user"]


class _MeteringEvent(EventPayload):
    service = "metering"


@registry.register
class PeriodClosedV1(_MeteringEvent):
    """A billing period closed: its statements are issued and later usage bills to the next period."""

    entity = "period"
    event = "closed"
    summary = (
        "A month's billing period closed (after its grace period, or early by city finance): every vendor's "
        "statement for it is issued; usage for it arriving later is billed in the next open period as an adjustment."
    )

    period: Period = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    closed_at: datetime
    statements: int = Field(ge=0, description="How many vendor statements were issued")


@registry.register
class StatementIssuedV1(_MeteringEvent):
    """A vendor's monthly statement was issued: its lines are fixed and open to disputes."""

    entity = "statement"
    event = "issued"
    summary = "A vendor's monthly statement was issued; the vendor may dispute its lines until city finance approves."

    statement_id: str
    vendor_id: str
    period: Period
    total_fen: int = Field(ge=0)
    issued_at: datetime


@registry.register
class StatementApprovedV1(_MeteringEvent):
    """City finance approved a vendor's statement: it is final, immutable and payable."""

    entity = "statement"
    event = "approved"
    summary = "City finance approved a vendor's monthly statement; its amount is final and payable."

    statement_id: str
    vendor_id: str
    period: Period
    total_fen: int = Field(ge=0, description="The approved amount, adjustments included")
    approved_by: str
    approved_at: datetime


@registry.register
class AppBenefitFlaggedV1(_MeteringEvent):
    """An app stayed below the city's benefit thresholds for consecutive periods: review it for retirement."""

    entity = "app_benefit"
    event = "flagged"
    summary = (
        "An app was below the city's benefit thresholds (active-user rate, cost per active user) for consecutive "
        "periods and is proposed for the app store's retirement review (淘汰)."
    )

    app_id: str
    vendor_id: str
    periods: list[Period] = Field(min_length=1, description="The periods it was below the thresholds, oldest first")
    reasons: list[BenefitFlagReason] = Field(min_length=1)
    active_rate: float = Field(ge=0, description="Active users over the installed schools' people, last period")
    cost_per_active_user_fen: int | None = Field(default=None, ge=0, description="Last period; null: no active user")
    flagged_at: datetime


@registry.register
class AppBenefitRecoveredV1(_MeteringEvent):
    """An app flagged for the retirement review ranked within the city's thresholds again: withdraw the proposal."""

    entity = "app_benefit"
    event = "recovered"
    summary = (
        "An app that was flagged for the retirement review (淘汰) ranked within the city's benefit thresholds in a "
        "later period; the flag is withdrawn and the app store withdraws the proposal it opened, unless a reviewer "
        "already decided it."
    )

    app_id: str
    vendor_id: str
    flagged_period: Period = Field(description="The period whose ranking raised the flag")
    period: Period = Field(description="The later period in which the app ranked within the thresholds")
    active_rate: float = Field(ge=0, description="Active users over the installed schools' people, that period")
    cost_per_active_user_fen: int | None = Field(default=None, ge=0, description="That period; null: no active user")
    recovered_at: datetime
