"""People, the roles they hold within organisations, and guardian links."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import new_id, utcnow


class Person(SQLModel, table=True):
    """One account per person. Never hard-deleted: deactivation keeps the record and its history."""

    __tablename__ = "person"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = Field(max_length=16, index=True)  # staff | student | guardian
    name: str = Field(max_length=64, index=True)
    sex: str | None = Field(default=None, max_length=8)
    birth_date: date | None = None
    # Home organisation: a student's or teacher's school; the scope in which admins may manage them.
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    username: str | None = Field(default=None, max_length=64, unique=True)
    student_number: str | None = Field(default=None, max_length=19, unique=True)
    staff_number: str | None = Field(default=None, max_length=32)
    resident_id_cipher: str | None = Field(default=None, max_length=200)
    resident_id_hash: str | None = Field(default=None, max_length=64, unique=True)
    resident_id_masked: str | None = Field(default=None, max_length=18)
    phone_cipher: str | None = Field(default=None, max_length=200)
    phone_hash: str | None = Field(default=None, max_length=64, index=True)
    phone_masked: str | None = Field(default=None, max_length=11)
    password_hash: str | None = Field(default=None, max_length=200)
    must_change_password: bool = True
    password_changed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    active: bool = True
    deactivated_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    deactivation_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class RoleGrant(SQLModel, table=True):
    __tablename__ = "role_grant"
    __table_args__ = (sa.UniqueConstraint("person_id", "role", "org_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    person_id: str = Field(foreign_key="person.id", index=True, max_length=36)
    role: str = Field(max_length=32)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    active: bool = True
    granted_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    granted_by: str | None = Field(default=None, max_length=36)
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class GuardianLink(SQLModel, table=True):
    __tablename__ = "guardian_link"
    __table_args__ = (sa.UniqueConstraint("guardian_id", "student_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    guardian_id: str = Field(foreign_key="person.id", index=True, max_length=36)
    student_id: str = Field(foreign_key="person.id", index=True, max_length=36)
    relationship: str = Field(max_length=32)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
