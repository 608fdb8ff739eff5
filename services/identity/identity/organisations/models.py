"""The organisation tree: city → district → school."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    parent_id: str | None = Field(default=None, foreign_key="organisation.id", index=True, max_length=36)
    kind: str = Field(max_length=16, index=True)
    name: str = Field(max_length=100)
    # Ancestor ids from the root, '/'-separated and ending with this id: subtree checks are prefix checks.
    path: str = Field(max_length=200, unique=True)
    school_code: str | None = Field(default=None, max_length=10, unique=True)
    school_type: str | None = Field(default=None, max_length=16)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
