"""The roster change feed: what changed since a cursor, for a client keeping a copy of rosters in step.

A client reads ``GET /changes?cursor=0`` once (or does a full OneRoster read first and starts from the
``next_cursor`` it got just before), then polls with the last ``next_cursor``. Entries are filtered to the caller's
schools; users and enrollments are students' data too, so they are left out unless the token carries
``roster.students.read`` (asking for them explicitly without it is refused).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from enrollment.changes import service as changes
from enrollment.changes.schemas import ENTITIES, Change, ChangePage, Entity
from enrollment.deps import CallerDep, SettingsDep
from enrollment.oneroster.service import ROSTER_SCOPE, ROSTERING_PATH, STUDENTS_SCOPE, roster_access
from kit.db import ReadSessionDep
from kit.errors import FieldError, InsufficientScope, InvalidInput

router = APIRouter(tags=["Roster change feed"])

#: Entities whose records are (or may be) students' personal information.
STUDENT_ENTITIES: frozenset[str] = frozenset({"users", "enrollments"})
DEFAULT_LIMIT = 100


def _utc(value: datetime) -> datetime:
    # SQLite hands back the stored UTC time without its zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _invalid(field: str, message: str, code: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(field=field, message=message, code=code)])


def parse_cursor(text: str | None) -> int:
    """A cursor is a non-negative integer (0 or absent: from the beginning)."""
    if text is None or text == "":
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise _invalid("cursor", f"游标必须是非负整数；The cursor must be a non-negative integer, not {text[:32]!r}.",
                       "invalid_cursor")  # fmt: skip
    return int(text)


def parse_limit(text: str | None, maximum: int) -> int:
    if text is None or text == "":
        return min(DEFAULT_LIMIT, maximum)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise _invalid("limit", f"limit 必须在 1–{maximum} 之间；limit must be 1–{maximum}, not {text[:32]!r}.",
                       "invalid_limit")  # fmt: skip
    return int(text)


def parse_entities(text: str | None) -> list[Entity] | None:
    """The entity kinds asked for (None: all); unknown names are refused, naming the known ones."""
    if text is None or not text.strip():
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENTITIES]
    if unknown:
        known = ", ".join(ENTITIES)
        raise _invalid("entities", f"未知的实体 {', '.join(unknown)[:200]}，可用：{known}；"
                       f"Unknown entities {', '.join(unknown)[:200]}; known: {known}.", "unknown_entity")  # fmt: skip
    return [name for name in ENTITIES if name in names]


@router.get("/changes", summary="Roster changes after a cursor", response_model=ChangePage)
def list_changes(
    caller: CallerDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    cursor: Annotated[str | None, Query(description="The next_cursor of the previous answer; 0 from the start")] = None,
    entities: Annotated[
        str | None, Query(description="Comma-separated: orgs, academicSessions, courses, classes, users, enrollments")
    ] = None,
    limit: Annotated[str | None, Query(description="Changes per answer (default 100)")] = None,
) -> ChangePage:
    """Changes to the roster objects the caller may see, in commit order, after ``cursor``."""
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    after = parse_cursor(cursor)
    size = parse_limit(limit, settings.changes_max_limit)
    wanted = parse_entities(entities)
    if not access.students:
        asked = STUDENT_ENTITIES.intersection(wanted or ())
        if asked:
            raise InsufficientScope(
                f"读取 {', '.join(sorted(asked))} 的变更需要 {STUDENTS_SCOPE}；"
                f"Changes to {', '.join(sorted(asked))} need the scope '{STUDENTS_SCOPE}'.",
                required_scope=STUDENTS_SCOPE,
            )
        wanted = [name for name in (wanted or ENTITIES) if name not in STUDENT_ENTITIES]
    school_ids = None if access.school_ids is None else list(access.school_ids)
    records = changes.since(session, cursor=after, school_ids=school_ids, entities=wanted, limit=size + 1)
    page = records[:size]
    base = settings.public_base_url.rstrip("/") + ROSTERING_PATH
    return ChangePage(
        changes=[
            Change(
                cursor=record.seq or 0, entity=record.entity, sourcedId=record.entity_id,
                operation=record.operation, changedAt=_utc(record.changed_at),
                href=f"{base}/{record.entity}/{record.entity_id}",
            )
            for record in page
        ],
        next_cursor=(page[-1].seq or after) if page else after,
        has_more=len(records) > size,
    )  # fmt: skip
