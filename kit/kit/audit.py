"""The append-only, hash-chained audit log every service keeps of security-relevant actions and of every
access to personal information (MLPS 2.0 level 3; PIPL).

Each entry's hash covers its own fields and the previous entry's hash, so changing or removing any
entry breaks every hash after it. Appends are serialised (a PostgreSQL advisory lock; SQLite
transactions already take the write lock up front) so the chain never forks. Each service keeps its
own chain in its own database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field, Session, SQLModel, col, select

from kit.outbox import utcnow
from kit.pagination import fetch_page

GENESIS_HASH = "0" * 64
_AUDIT_LOCK_KEY = 0x41554449  # "AUDI"


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


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def entry_hash(entry: AuditEntry, prev_hash: str) -> str:
    canonical = json.dumps(
        {
            "at": _as_utc(entry.at).isoformat(timespec="microseconds"),
            "actor_id": entry.actor_id,
            "actor_client": entry.actor_client,
            "action": entry.action,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "org_id": entry.org_id,
            "source_ip": entry.source_ip,
            "request_id": entry.request_id,
            "result": entry.result,
            "detail": entry.detail,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session,
    *,
    action: str,
    actor_id: str | None,
    actor_client: str | None,
    source_ip: str | None = None,
    request_id: str | None = None,
    result: str = "success",
    target_type: str | None = None,
    target_id: str | None = None,
    org_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it stands or falls with the action it records)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})
    last = session.exec(select(AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    prev_hash = last or GENESIS_HASH
    entry = AuditEntry(
        at=datetime.now(UTC),
        actor_id=actor_id,
        actor_client=actor_client,
        action=action,
        target_type=target_type,
        target_id=target_id,
        org_id=org_id,
        source_ip=source_ip,
        request_id=request_id,
        result=result,
        detail=json.dumps(detail or {}, sort_keys=True, ensure_ascii=False),
        prev_hash=prev_hash,
        hash="",
    )
    entry.hash = entry_hash(entry, prev_hash)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    checked: int
    intact: bool
    first_broken_id: int | None = None
    reason: str | None = None


def verify_chain(session: Session, *, batch_size: int = 5000) -> ChainReport:
    """Recompute every hash in order; report the first entry whose seal does not hold."""
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        entries = session.exec(
            select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id)).limit(batch_size)
        ).all()
        if not entries:
            return ChainReport(checked=checked, intact=True)
        for entry in entries:
            if entry.prev_hash != prev_hash:
                return ChainReport(checked, False, entry.id, "previous-hash link broken (entry removed or reordered)")
            if entry_hash(entry, prev_hash) != entry.hash:
                return ChainReport(checked, False, entry.id, "entry content changed after it was written")
            prev_hash = entry.hash
            checked += 1
            last_id = int(entry.id or 0)


class AuditFilter(BaseModel):
    """What an auditor searches by; every field is optional and they combine with AND."""

    actor_id: str | None = None
    target_id: str | None = None
    action: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(session: Session, filters: AuditFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[AuditEntry], int]:
    query = select(AuditEntry)
    for name in ("actor_id", "target_id", "action", "result"):
        if value := getattr(filters, name):
            query = query.where(getattr(AuditEntry, name) == value)
    if filters.since:
        query = query.where(col(AuditEntry.at) >= filters.since)
    if filters.until:
        query = query.where(col(AuditEntry.at) < filters.until)
    return fetch_page(session, query, order_by=[col(AuditEntry.id).desc()], limit=limit, offset=offset)
