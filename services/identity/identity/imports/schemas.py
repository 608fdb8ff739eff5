from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kit.errors import FieldError

ImportKind = Literal["students", "teachers", "guardians"]
ImportMode = Literal["all_or_nothing", "valid_rows"]
ImportStatus = Literal["queued", "running", "succeeded", "partially_succeeded", "failed"]


class ImportJobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: ImportKind
    school_id: str
    mode: ImportMode
    status: ImportStatus
    filename: str
    file_format: str
    encoding: str | None
    total_rows: int
    phase: Literal["validating", "writing"] | None = None
    processed_rows: int
    created_count: int
    updated_count: int
    unchanged_count: int
    failed_count: int
    errors: list[FieldError]
    failure_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
