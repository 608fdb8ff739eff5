"""The usage ledger and its aggregates.

Every unit of use metering ever received is one ``UsageEvent`` row, unique on its source and the source's id, so
a re-sent or replayed event can never count twice (not only within the broker's duplicate window). Its status says
whether it is paid: billable, held for review, or kept but never billed (not installed at the time, unknown app),
with the reason. ``UsageTotal`` sums the ledger by billing period, day, app, school, meter, price plan and status,
in the same transaction as the rows it sums; ``UsageMonthTotal`` the same by month of use. Statements and charts read
them, never the ledger.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

_TZ = sa.DateTime(timezone=True)
_VENDOR_ROWS = sa.text("source = 'vendor'")
_NOT_BILLABLE = sa.text("status <> 'billable'")

#: source of an event: the gateway's API-call records, the app store's launches, vendors' reports, classroom minutes,
#: and rows metering derives itself (a monthly active user).
SOURCES = ("gateway", "appstore", "vendor", "classroom", "derived")
#: billable: paid at its plan's price. held: counted, paid only once the city accepts it. not_installed, unknown:
#: kept and reported, never billed. rejected: the city refused a held event.
STATUSES = ("billable", "held", "not_installed", "unknown", "rejected")


class UsageEvent(SQLModel, table=True):
    __tablename__ = "usage_event"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_event_id", name="uq_usage_event_source_id"),
        # Partial indexes: nearly every row is billable and not a vendor's report, and ingest pays for every index
        # a row enters; these hold only the rows the reconciliation and review queries look for.
        sa.Index("ix_usage_event_launch", "launch_id", sqlite_where=_VENDOR_ROWS, postgresql_where=_VENDOR_ROWS),
        sa.Index(
            "ix_usage_event_app_status", "app_id", "status", sqlite_where=_NOT_BILLABLE, postgresql_where=_NOT_BILLABLE
        ),
        sa.Index(
            "ix_usage_event_status_period",
            "status",
            "billing_period",
            sqlite_where=_NOT_BILLABLE,
            postgresql_where=_NOT_BILLABLE,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    source_event_id: str = Field(max_length=200)
    app_id: str = Field(max_length=64)
    vendor_id: str | None = Field(default=None, max_length=36)
    school_id: str = Field(default="", max_length=64)  # "" when the use concerned no single school
    meter: str = Field(max_length=32)  # launch | api_call | monthly_active_user | minute | reported_unit
    quantity: int = Field(sa_type=sa.BigInteger)
    user_pseudonym: str | None = Field(default=None, max_length=100)
    role: str | None = Field(default=None, max_length=32)
    launch_id: str | None = Field(default=None, max_length=64)
    occurred_at: datetime = Field(sa_type=_TZ)
    usage_day: date
    usage_period: str = Field(max_length=7)  # the month of use
    billing_period: str = Field(max_length=7)  # the month it is billed in: later than usage_period for adjustments
    plan_id: int = 0  # the price plan in force when it was used; 0: none
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(sa_type=_TZ)
    decided_by: str | None = Field(default=None, max_length=36)
    decided_at: datetime | None = Field(default=None, sa_type=_TZ)
    decision_reason: str | None = Field(default=None, max_length=500)


class UsageTotal(SQLModel, table=True):
    __tablename__ = "usage_total"
    __table_args__ = (sa.Index("ix_usage_total_day", "usage_day"),)

    billing_period: str = Field(primary_key=True, max_length=7)
    usage_day: date = Field(primary_key=True)
    app_id: str = Field(primary_key=True, max_length=64)
    school_id: str = Field(primary_key=True, max_length=64)
    meter: str = Field(primary_key=True, max_length=32)
    plan_id: int = Field(primary_key=True)
    status: str = Field(primary_key=True, max_length=16)
    quantity: int = Field(default=0, sa_type=sa.BigInteger)
    events: int = Field(default=0, sa_type=sa.BigInteger)


class UsageMonthTotal(SQLModel, table=True):
    """``UsageTotal`` rolled up to the month of use, kept in the same transactions: statements and the benefit
    ranking read a month per app and school here instead of summing thirty days."""

    __tablename__ = "usage_month_total"

    billing_period: str = Field(primary_key=True, max_length=7)
    usage_period: str = Field(primary_key=True, max_length=7)
    app_id: str = Field(primary_key=True, max_length=64)
    school_id: str = Field(primary_key=True, max_length=64)
    meter: str = Field(primary_key=True, max_length=32)
    plan_id: int = Field(primary_key=True)
    status: str = Field(primary_key=True, max_length=16)
    quantity: int = Field(default=0, sa_type=sa.BigInteger)
    events: int = Field(default=0, sa_type=sa.BigInteger)
