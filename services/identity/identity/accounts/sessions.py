"""Browser sessions in the database: created after the password, elevated by later steps, ended by logout or time."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from identity.accounts.models import BrowserSession
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Origin

# last_seen_at is written at most this often: enough for an idle timeout measured in minutes.
TOUCH_INTERVAL = timedelta(seconds=60)
# The audit action of each way a session ends; the rest (replaced, reauth, locked, ...) are "session.end".
END_ACTIONS = {"logout": "logout", "idle": "session.expired", "absolute": "session.expired"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def new_token() -> str:
    """256 random bits for the cookie."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    session: Session,
    *,
    person_id: str,
    mfa_required: bool,
    password_change_pending: bool,
    source_ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> tuple[BrowserSession, str]:
    """A new session whose password step is done; returns it and the cookie token."""
    now = now or utcnow()
    token = new_token()
    row = BrowserSession(
        token_hash=token_hash(token), person_id=person_id, created_at=now, last_seen_at=now,
        password_verified_at=now, mfa_required=mfa_required, password_change_pending=password_change_pending,
        source_ip=source_ip, user_agent=(user_agent or "")[:200] or None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, token


def find(session: Session, token: str | None) -> BrowserSession | None:
    """The live (not ended) session of a cookie token; says nothing about expiry."""
    if not token or len(token) > 100:
        return None
    return session.exec(
        select(BrowserSession).where(
            BrowserSession.token_hash == token_hash(token), col(BrowserSession.ended_at).is_(None)
        )
    ).first()


def expiry_reason(row: BrowserSession, settings: IdentitySettings, *, now: datetime | None = None) -> str | None:
    """``idle`` or ``absolute`` if the session has timed out, else None."""
    now = now or utcnow()
    if now - aware(row.created_at) > timedelta(seconds=settings.session_absolute_seconds):
        return "absolute"
    if now - aware(row.last_seen_at) > timedelta(seconds=settings.session_idle_seconds):
        return "idle"
    return None


def is_complete(row: BrowserSession) -> bool:
    """Password verified, no password change pending, second factor done if required."""
    return not row.password_change_pending and (not row.mfa_required or row.mfa_verified_at is not None)


def touch(session: Session, row: BrowserSession, *, now: datetime | None = None) -> None:
    now = now or utcnow()
    if now - aware(row.last_seen_at) >= TOUCH_INTERVAL:
        row.last_seen_at = now
        session.add(row)
        session.flush()


def rotate(session: Session, row: BrowserSession, *, now: datetime | None = None) -> str:
    """A new cookie token for an elevated session, so a token known before the elevation is worthless."""
    token = new_token()
    row.token_hash = token_hash(token)
    row.last_seen_at = now or utcnow()
    session.add(row)
    session.flush()
    return token


def end(
    session: Session,
    row: BrowserSession,
    *,
    reason: str,
    origin: Origin | None,
    org_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """End a session for good and audit it (``logout`` for a logout, ``session.end`` otherwise)."""
    if row.ended_at is not None:
        return
    row.ended_at = now or utcnow()
    row.end_reason = reason
    session.add(row)
    session.flush()
    action = END_ACTIONS.get(reason, "session.end")
    audit.record(
        session, action=action, actor=origin, target_type="person", target_id=row.person_id, org_id=org_id,
        detail={"session_id": row.id, "reason": reason},
    )  # fmt: skip


def end_all_for(
    session: Session,
    person_id: str,
    *,
    reason: str,
    origin: Origin | None,
    except_id: str | None = None,
    org_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """End every live session of a person but ``except_id`` (after a password change); returns how many."""
    query = select(BrowserSession).where(BrowserSession.person_id == person_id, col(BrowserSession.ended_at).is_(None))
    if except_id is not None:
        query = query.where(BrowserSession.id != except_id)
    rows = list(session.exec(query))
    for row in rows:
        end(session, row, reason=reason, origin=origin, org_id=org_id, now=now)
    return len(rows)
