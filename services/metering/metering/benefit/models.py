"""The benefit ranking (绩效) of apps per period, and the apps proposed for retirement review."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

_TZ = sa.DateTime(timezone=True)

#: reasons an app is below the city's thresholds in a period (contracts.events.metering.BenefitFlagReason)
LOW_ACTIVE_RATE = "low_active_rate"
HIGH_COST_PER_ACTIVE_USER = "high_cost_per_active_user"


class AppBenefit(SQLModel, table=True):
    """One app's figures for one period, stored when the period closes (re-ranking replaces them)."""

    __tablename__ = "app_benefit"

    period: str = Field(primary_key=True, max_length=7)
    app_id: str = Field(primary_key=True, max_length=64)
    vendor_id: str = Field(max_length=36, index=True)
    installed_schools: int = 0  # schools where the app was installed at any moment of the period
    population: int = 0  # active pupils and teachers of those schools
    active_users: int = 0  # pupils and teachers who launched the app in the period (distinct pseudonyms)
    active_rate: float | None = None  # active_users / population; null when the population is unknown (0)
    amount_fen: int = Field(default=0, sa_type=sa.BigInteger)  # billed in the period, after monthly caps
    cost_per_active_user_fen: int | None = None  # null when nobody was active
    previous_active_rate: float | None = None
    trend: float | None = None  # active_rate minus the previous period's
    below_threshold: bool = False
    reasons: str = Field(default="", max_length=100)  # comma-separated LOW_ACTIVE_RATE, HIGH_COST_PER_ACTIVE_USER
    computed_at: datetime = Field(sa_type=_TZ)


class BenefitFlag(SQLModel, table=True):
    """An app below the thresholds for consecutive periods, proposed for the app store's retirement review."""

    __tablename__ = "benefit_flag"
    __table_args__ = (sa.UniqueConstraint("app_id", "period", name="uq_benefit_flag_app_period"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: str = Field(max_length=64, index=True)
    vendor_id: str = Field(max_length=36, index=True)
    period: str = Field(max_length=7)  # the period whose ranking raised it
    periods: str = Field(max_length=100)  # comma-separated, oldest first: the consecutive periods below threshold
    reasons: str = Field(max_length=100)  # comma-separated
    active_rate: float
    cost_per_active_user_fen: int | None = None
    state: str = Field(default="open", max_length=16)  # open | recovered
    flagged_at: datetime = Field(sa_type=_TZ)
    # A later period in which the app ranked within the thresholds again: the flag is withdrawn.
    recovered_period: str | None = Field(default=None, max_length=7)
    recovered_at: datetime | None = Field(default=None, sa_type=_TZ)
