"""The append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import utcnow


class AuditEntry(SQLModel, table=True):
    """Who did what to whom, when, from where, with what result; each entry seals the previous one."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)
    actor_id: str | None = Field(default=None, max_length=64, index=True)
    actor_client: str | None = Field(default=None, max_length=100)
    action: str = Field(max_length=64, index=True)
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=64, index=True)
    org_id: str | None = Field(default=None, max_length=36, index=True)
    source_ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    result: str = Field(max_length=16)  # success | denied | failure
    detail: str = Field(default="{}", sa_type=sa.Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
