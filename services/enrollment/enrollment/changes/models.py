"""The change log behind the feed."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow


class ChangeRecord(SQLModel, table=True):
    """One change to a roster entity, in commit order; its ``seq`` is the feed's cursor."""

    __tablename__ = "change_record"
    __table_args__ = (sa.Index("ix_change_record_school_seq", "school_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    # The OneRoster collection: orgs, academicSessions, courses, classes, users, enrollments.
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=36)
    school_id: str | None = Field(default=None, max_length=36)  # None: visible to every school (city-wide sessions)
    operation: str = Field(max_length=8)  # upsert | delete
    changed_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
