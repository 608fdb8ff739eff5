"""Bulk import jobs and their uploaded files."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import new_id, utcnow


class ImportJob(SQLModel, table=True):
    __tablename__ = "import_job"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = Field(max_length=16)  # students | teachers | guardians
    school_id: str = Field(foreign_key="organisation.id", index=True, max_length=36)
    mode: str = Field(max_length=16)  # all_or_nothing | valid_rows
    status: str = Field(default="queued", max_length=24, index=True)  # partially_succeeded: 19
    filename: str = Field(max_length=200)
    content_sha256: str = Field(max_length=64)
    file_format: str = Field(max_length=8)
    encoding: str | None = Field(default=None, max_length=16)
    total_rows: int = 0
    processed_rows: int = 0
    created_count: int = 0
    updated_count: int = 0
    unchanged_count: int = 0
    failed_count: int = 0
    errors: str = Field(default="[]", sa_type=sa.Text)
    failure_reason: str | None = Field(default=None, max_length=500)
    requested_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    started_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class ImportUpload(SQLModel, table=True):
    """The uploaded bytes, kept so an interrupted job can run again after a restart."""

    __tablename__ = "import_upload"

    job_id: str = Field(foreign_key="import_job.id", primary_key=True, max_length=36)
    content: bytes = Field(sa_type=sa.LargeBinary)
