"""API schemas of usage queries: a series of points per day or month, grouped by app, school, district, vendor or
meter, with the cost at the plan prices (before the monthly caps that statements apply)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

Granularity = Literal["day", "month"]
GroupKey = Literal["app", "school", "district", "vendor", "meter"]
Meter = Literal["launch", "api_call", "monthly_active_user", "minute", "reported_unit"]
UsageStatus = Literal["billable", "held", "not_installed", "unknown", "rejected"]

GROUP_KEYS: tuple[GroupKey, ...] = ("app", "school", "district", "vendor", "meter")


class UsagePoint(BaseModel):
    """The usage of one bucket (day or month of use) for one combination of the grouped keys."""

    bucket: str = Field(description="The day (YYYY-MM-DD) or month (YYYY-MM) of use, China Standard Time")
    app_id: str | None = Field(default=None, description="Set when grouped by app")
    app_name: str | None = None
    school_id: str | None = Field(
        default=None, description='Set when grouped by school; "" for use that concerned no single school'
    )
    school_name: str | None = None
    district_id: str | None = Field(default=None, description="Set when grouped by district (null: none known)")
    district_name: str | None = None
    vendor_id: str | None = Field(default=None, description="Set when grouped by vendor")
    vendor_name: str | None = None
    meter: Meter | None = Field(default=None, description="Set when grouped by meter")
    quantity: int = Field(description="Units used (launches, calls, active users, minutes, reported units)")
    events: int = Field(description="Usage events the quantity sums")
    amount_fen: int = Field(
        description="Quantity times the unit price of the plan in force at the time of use, for the meter each app "
        "is priced by (other meters: 0); before the monthly caps per school that statements apply"
    )


class UsageTotals(BaseModel):
    quantity: int
    events: int
    amount_fen: int


class UsageSeries(BaseModel):
    """Usage over time within the caller's reach."""

    from_day: date = Field(description="First day of use included (China Standard Time)")
    to_day: date = Field(description="Last day of use included")
    granularity: Granularity
    group_by: list[GroupKey]
    status: UsageStatus
    school_id: str | None = Field(default=None, description="The school the series is restricted to, if any")
    points: list[UsagePoint] = Field(description="Oldest bucket first")
    totals: UsageTotals = Field(description="The sums over every matching row, even when points are truncated")
    truncated: bool = Field(description="True when there were more points than `limit`; narrow the query")
