"""The change feed's JSON: which roster objects changed, in commit order, with where to fetch each."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Entity = Literal["orgs", "academicSessions", "courses", "classes", "users", "enrollments"]
ENTITIES: tuple[Entity, ...] = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")


class Change(BaseModel):
    """One change to one roster object; fetch ``href`` for its state now (a deleted one answers tobedeleted or 404)."""

    cursor: int = Field(description="Resume after this value to get the changes that follow")
    entity: Entity = Field(description="The OneRoster collection of the object")
    sourcedId: str
    operation: Literal["upsert", "delete"]
    changedAt: datetime
    href: str = Field(description="The object's OneRoster URL")


class ChangePage(BaseModel):
    changes: list[Change]
    next_cursor: int = Field(description="Pass as cursor to continue; equal to the cursor sent when nothing changed")
    has_more: bool = Field(description="More changes are waiting: ask again at once with next_cursor")
