"""The app store's projection of the directory and class rosters, from identity's and enrollment's events.

It answers who may install for which school (organisation paths), and serves LTI contexts and the Names and
Role Provisioning service (classes, their teachers and pupils). No ID numbers, phones or birth dates.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class RosterOrganisation(SQLModel, table=True):
    __tablename__ = "roster_organisation"

    id: str = Field(primary_key=True, max_length=36)
    parent_id: str | None = Field(default=None, max_length=36)
    kind: str = Field(max_length=16)  # city | district | school
    name: str = Field(max_length=100)
    path: str = Field(max_length=200, index=True)
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class RosterPerson(SQLModel, table=True):
    __tablename__ = "roster_person"

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=16)  # staff | student | guardian
    name: str = Field(max_length=100)
    org_id: str | None = Field(default=None, max_length=36, index=True)
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class RosterClass(SQLModel, table=True):
    __tablename__ = "roster_class"

    id: str = Field(primary_key=True, max_length=36)
    school_id: str = Field(max_length=36, index=True)
    grade: str = Field(max_length=2)
    name: str = Field(max_length=100)
    head_teacher_id: str | None = Field(default=None, max_length=36)
    teacher_ids: str = Field(default="[]", sa_type=sa.Text)  # JSON list of person ids
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class RosterMembership(SQLModel, table=True):
    """A pupil's current homeroom class (the latest membership event wins)."""

    __tablename__ = "roster_membership"

    student_id: str = Field(primary_key=True, max_length=36)
    school_id: str = Field(max_length=36)
    class_id: str | None = Field(default=None, max_length=36, index=True)
    effective_on: date
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
