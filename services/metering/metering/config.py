"""Metering service settings (environment prefix ``METERING_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class MeteringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    service_name: str = "metering"
    database_url: str = "sqlite:///var/data/metering.db"
    http_port: int = 8104
    public_base_url: str = "http://127.0.0.1:8104"

    # A month's usage still counts in that month until this many days after it ends; then the period closes
    # (its statements are issued) and later usage for it bills in the next open period as an adjustment.
    grace_days: int = Field(default=5, ge=0, le=31)
    # Usage dated further than this in the future is refused (clocks drift; a month ahead is a bug).
    future_tolerance_minutes: int = Field(default=10, ge=0, le=1440)
    # Vendor-reported units above this per launch are held for the city's review instead of paid automatically.
    max_reported_units_per_launch: int = Field(default=200, ge=1)
    # Events fetched and applied per transaction by the usage consumers: launches are one per message, the gateway's
    # messages carry up to a few hundred API-call records each, so its transactions take fewer messages.
    ingest_batch_size: int = Field(default=500, ge=1, le=5000)
    gateway_batch_messages: int = Field(default=20, ge=1, le=500)

    # Benefit ranking (绩效): an app below either threshold in consecutive periods is proposed for retirement.
    benefit_min_active_rate: float = Field(default=0.05, ge=0, le=1)
    benefit_max_cost_per_active_user_fen: int = Field(default=2000, ge=0)
    benefit_flag_after_periods: int = Field(default=2, ge=1, le=12)

    # How often the worker looks for periods whose grace has passed.
    period_check_seconds: float = Field(default=60.0, gt=0)
    max_page_size: int = Field(default=500, ge=1)


@lru_cache
def get_settings() -> MeteringSettings:
    return MeteringSettings()
