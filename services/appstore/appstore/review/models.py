"""Tables of the city's review (审核准入): decisions, suspensions and retirements (淘汰), notices to schools."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from appstore.vendors.models import new_id
from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class ReviewDecision(SQLModel, table=True):
    """One reviewer's decision on a submitted version, with the checklist as ticked and the reasons given."""

    __tablename__ = "review_decision"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    version_id: str = Field(foreign_key="app_version.id", index=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    decision: str = Field(max_length=20)  # approved | rejected | changes_requested
    reviewer_id: str = Field(max_length=36)
    checklist: str = Field(sa_type=sa.Text)  # JSON object of the checklist items
    reasons: str = Field(default="[]", sa_type=sa.Text)  # JSON list of strings
    decided_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class AppStatusChange(SQLModel, table=True):
    """The city's order to suspend, reinstate or retire an app, applied at ``effective_at`` (once)."""

    __tablename__ = "app_status_change"
    __table_args__ = (sa.Index("ix_app_status_change_due", "applied_at", "effective_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    status: str = Field(max_length=16)  # suspended | listed (reinstated) | retired
    reason: str = Field(max_length=500)
    effective_at: datetime = Field(sa_type=_TZ)
    requested_by: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    applied_at: datetime | None = Field(default=None, sa_type=_TZ)
    # applied | skipped (the app had meanwhile reached a state the change no longer fits) | cancelled
    outcome: str | None = Field(default=None, max_length=16)
    installations_removed: int = 0


class SchoolNotice(SQLModel, table=True):
    """A notice to a school that an app it installed is being suspended, reinstated or retired."""

    __tablename__ = "school_notice"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    kind: str = Field(max_length=24)  # app_suspended | app_reinstated | app_retired | change_withdrawn
    change_id: str | None = Field(default=None, max_length=36, index=True)  # the status change it announces
    message: str = Field(sa_type=sa.Text)  # zh-CN
    effective_at: datetime = Field(sa_type=_TZ)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class RetirementProposal(SQLModel, table=True):
    """A proposal to retire (淘汰) an app, from metering's benefit flags, until a city reviewer decides it."""

    __tablename__ = "retirement_proposal"
    __table_args__ = (sa.Index("ix_retirement_proposal_app_state", "app_id", "state"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", max_length=36)
    vendor_id: str = Field(max_length=36)
    source: str = Field(default="metering_benefit", max_length=32)
    periods: str = Field(sa_type=sa.Text)  # JSON list of "YYYY-MM", oldest first
    reasons: str = Field(sa_type=sa.Text)  # JSON list: low_active_rate | high_cost_per_active_user
    active_rate: float
    cost_per_active_user_fen: int | None = None
    flagged_at: datetime = Field(sa_type=_TZ)
    event_id: str = Field(unique=True, max_length=64)  # the flag event last applied to it
    state: str = Field(default="open", max_length=24, index=True)  # open | retirement_ordered | dismissed | withdrawn
    decided_by: str | None = Field(default=None, max_length=36)
    decided_at: datetime | None = Field(default=None, sa_type=_TZ)
    note: str | None = Field(default=None, max_length=500)
    status_change_id: str | None = Field(default=None, max_length=36)  # the retirement ordered on it
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
