"""Tables of the directory projection, kept current from identity's events (identity stays the owner)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow


class DirectoryOrganisation(SQLModel, table=True):
    """A city, district or school as identity last described it."""

    __tablename__ = "directory_organisation"

    id: str = Field(primary_key=True, max_length=36)
    parent_id: str | None = Field(default=None, index=True, max_length=36)
    kind: str = Field(max_length=16, index=True)  # city | district | school
    name: str = Field(max_length=100)
    path: str = Field(max_length=200, index=True)
    school_code: str | None = Field(default=None, max_length=10)
    school_type: str | None = Field(default=None, max_length=16)
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)


class DirectoryPerson(SQLModel, table=True):
    """A person: only the fields rosters need (no resident ID number, no phone, no birth date)."""

    __tablename__ = "directory_person"

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=16, index=True)  # staff | student | guardian
    name: str = Field(max_length=64)
    org_id: str | None = Field(default=None, index=True, max_length=36)
    student_number: str | None = Field(default=None, max_length=19, index=True)
    sex: str | None = Field(default=None, max_length=8)
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)


class DirectoryRole(SQLModel, table=True):
    """A role grant (teacher at a school, parent, school admin, …)."""

    __tablename__ = "directory_role"

    id: str = Field(primary_key=True, max_length=36)
    person_id: str = Field(index=True, max_length=36)
    role: str = Field(max_length=32)
    org_id: str = Field(index=True, max_length=36)
    org_path: str = Field(max_length=200)
    active: bool = True


class DirectoryGuardianLink(SQLModel, table=True):
    """A guardian's link to a student."""

    __tablename__ = "directory_guardian_link"

    id: str = Field(primary_key=True, max_length=36)
    guardian_id: str = Field(index=True, max_length=36)
    student_id: str = Field(index=True, max_length=36)
    relationship: str = Field(max_length=32)
