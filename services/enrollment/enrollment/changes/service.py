"""Recording and reading changes; service functions call ``record`` in the transaction that made the change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, col, or_, select

from enrollment.changes.models import ChangeRecord

Operation = Literal["upsert", "delete"]
_CHANGE_LOCK_KEY = 0x656E726F6C6C  # "enroll"


def record(
    session: Session, *, entity: str, entity_id: str, school_id: str | None, operation: Operation = "upsert"
) -> None:
    """Note a change to one roster entity; it becomes visible to the feed when the transaction commits.

    A reader resumes after the last ``seq`` it saw, so sequence numbers must become visible in order. On
    PostgreSQL two transactions could commit their numbers out of order; a transaction-scoped advisory lock
    makes writers of roster changes queue (SQLite writers already do), so no change is ever skipped.
    """
    transaction = id(session.get_transaction())
    if session.info.get("change_lock") != transaction and session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHANGE_LOCK_KEY})
        session.info["change_lock"] = transaction
    session.add(ChangeRecord(entity=entity, entity_id=entity_id, school_id=school_id, operation=operation))


def since(
    session: Session, *, cursor: int, school_ids: Sequence[str] | None, entities: Sequence[str] | None, limit: int
) -> list[ChangeRecord]:
    """Changes after ``cursor`` in order, limited to the given schools (None: all) and entity kinds."""
    statement = select(ChangeRecord).where(col(ChangeRecord.seq) > cursor)
    if school_ids is not None:
        statement = statement.where(
            or_(col(ChangeRecord.school_id).in_(list(school_ids)), col(ChangeRecord.school_id).is_(None))
        )
    if entities:
        statement = statement.where(col(ChangeRecord.entity).in_(list(entities)))
    return list(session.exec(statement.order_by(col(ChangeRecord.seq)).limit(limit)))
