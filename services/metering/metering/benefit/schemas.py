"""API schemas of the benefit ranking (绩效) and the apps proposed for retirement review."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Reason = Literal["low_active_rate", "high_cost_per_active_user"]


class BenefitThresholds(BaseModel):
    min_active_rate: float
    max_cost_per_active_user_fen: int
    flag_after_periods: int


class AppBenefitRead(BaseModel):
    rank: int = Field(description="Position in the whole city's ranking of the period, 1 = highest active rate")
    app_id: str
    app_name: str | None
    vendor_id: str
    vendor_name: str | None
    installed_schools: int = Field(description="Schools where the app was installed at any moment of the period")
    population: int = Field(description="Active pupils and teachers of those schools")
    active_users: int = Field(description="Pupils and teachers who launched the app in the month (distinct users)")
    active_rate: float | None = Field(description="active_users / population; null when the population is 0")
    amount_fen: int = Field(
        description="What the period bills for the app: billable usage billed in the period at the plan prices, "
        "each school's monthly cap applied; statement adjustments by finance not included"
    )
    cost_per_active_user_fen: int | None = Field(description="amount / active users, half up; null: none active")
    previous_active_rate: float | None
    trend: float | None = Field(description="active_rate minus the previous period's; null when either is unknown")
    below_threshold: bool
    reasons: list[Reason]


class BenefitRanking(BaseModel):
    period: str
    stored: bool = Field(
        description="True: the ranking stored when the period closed; false: computed now, as it stands"
    )
    computed_at: datetime
    thresholds: BenefitThresholds
    items: list[AppBenefitRead]


FlagState = Literal["open", "recovered"]


class BenefitFlagRead(BaseModel):
    id: int
    app_id: str
    app_name: str | None
    vendor_id: str
    vendor_name: str | None
    period: str = Field(description="The period whose ranking raised the flag")
    periods: list[str] = Field(description="The consecutive periods below the thresholds, oldest first")
    reasons: list[Reason]
    active_rate: float
    cost_per_active_user_fen: int | None
    state: FlagState
    flagged_at: datetime
    recovered_period: str | None = Field(description="recovered: the later period it ranked within the thresholds")
    recovered_at: datetime | None


class BenefitFlagPage(BaseModel):
    items: list[BenefitFlagRead]
    total: int
    limit: int
    offset: int
