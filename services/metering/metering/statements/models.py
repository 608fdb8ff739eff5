"""Billing periods, vendors' monthly statements, their lines, disputes and adjustments.

A period is open until it closes (its grace passed, or city finance closed it after its month); closing issues one
statement per vendor with usage billed in it. An issued statement's lines are fixed: a vendor may dispute a line,
finance resolves disputes and adjusts lines with a recorded reason, and approval makes the statement final. An
approved statement, its lines and its adjustments never change again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

_TZ = sa.DateTime(timezone=True)


class BillingPeriod(SQLModel, table=True):
    """A period's state once it is more than open; a period without a row is open."""

    __tablename__ = "billing_period"

    period: str = Field(primary_key=True, max_length=7)
    state: str = Field(default="closed", max_length=16)  # closed
    closed_at: datetime = Field(sa_type=_TZ)
    closed_by: str | None = Field(default=None, max_length=36)  # None: closed by the worker after the grace period
    statements: int = 0


class Statement(SQLModel, table=True):
    __tablename__ = "statement"
    __table_args__ = (sa.UniqueConstraint("vendor_id", "period"),)

    id: str = Field(primary_key=True, max_length=36)
    vendor_id: str = Field(max_length=36, index=True)
    period: str = Field(max_length=7, index=True)
    state: str = Field(default="issued", max_length=16)  # issued | approved
    issued_at: datetime = Field(sa_type=_TZ)
    approved_at: datetime | None = Field(default=None, sa_type=_TZ)
    approved_by: str | None = Field(default=None, max_length=36)
    approval_note: str | None = Field(default=None, max_length=500)
    gross_fen: int = Field(default=0, sa_type=sa.BigInteger)  # quantity x unit price, before caps
    cap_reduction_fen: int = Field(default=0, sa_type=sa.BigInteger)
    adjustment_fen: int = Field(default=0, sa_type=sa.BigInteger)  # signed
    total_fen: int = Field(default=0, sa_type=sa.BigInteger)  # gross - caps + adjustments
    lines: int = 0


class StatementLine(SQLModel, table=True):
    """One app at one school in one unit at one price; an adjustment line bills usage of an earlier period."""

    __tablename__ = "statement_line"
    __table_args__ = (sa.Index("ix_statement_line_statement", "statement_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    statement_id: str = Field(max_length=36)
    app_id: str = Field(max_length=64)
    school_id: str = Field(max_length=64)
    district_id: str | None = Field(default=None, max_length=36)
    meter: str = Field(max_length=32)
    usage_period: str = Field(max_length=7)  # earlier than the statement's period: an adjustment for late usage
    plan_id: int
    unit_price_fen: int
    quantity: int = Field(sa_type=sa.BigInteger)
    gross_fen: int = Field(sa_type=sa.BigInteger)
    cap_fen: int | None = Field(default=None, sa_type=sa.BigInteger)  # the school's monthly cap for the app, if any
    cap_reduction_fen: int = Field(default=0, sa_type=sa.BigInteger)
    amount_fen: int = Field(sa_type=sa.BigInteger)  # gross - cap reduction
    adjustment_fen: int = Field(default=0, sa_type=sa.BigInteger)
    final_fen: int = Field(sa_type=sa.BigInteger)  # amount + adjustments


class StatementDispute(SQLModel, table=True):
    __tablename__ = "statement_dispute"

    id: str = Field(primary_key=True, max_length=36)
    statement_id: str = Field(max_length=36, index=True)
    line_id: int
    raised_by: str = Field(max_length=36)
    raised_at: datetime = Field(sa_type=_TZ)
    reason: str = Field(max_length=1000)
    state: str = Field(default="open", max_length=16)  # open | adjusted | rejected
    resolved_by: str | None = Field(default=None, max_length=36)
    resolved_at: datetime | None = Field(default=None, sa_type=_TZ)
    resolution: str | None = Field(default=None, max_length=1000)


class StatementAdjustment(SQLModel, table=True):
    __tablename__ = "statement_adjustment"

    id: int | None = Field(default=None, primary_key=True)
    statement_id: str = Field(max_length=36, index=True)
    line_id: int
    amount_fen: int = Field(sa_type=sa.BigInteger)  # signed change to the line
    reason: str = Field(max_length=1000)
    dispute_id: str | None = Field(default=None, max_length=36)
    made_by: str = Field(max_length=36)
    made_at: datetime = Field(sa_type=_TZ)
