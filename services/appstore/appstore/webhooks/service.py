"""Webhook deliveries: queueing them in order, the apps' signing secrets, and what vendors read and replay."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from appstore.apps.models import App
from appstore.installations.models import Installation
from appstore.webhooks import metrics
from appstore.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSecret, WebhookSequence
from contracts.webhooks import new_secret
from kit.crypto import FieldCipher
from kit.db import after_commit
from kit.outbox import utcnow

SECRET_FIELD = "webhook_secret"  # noqa: S105 - the cipher's field name, not a secret
WEBHOOK_SOURCE = "/edu/appstore/webhooks"
# Notices that still go out after an installation ends: the removal itself, and why the app was stopped.
NOTICES_AFTER_REMOVAL = ("installation.removed", "app.status_changed")


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of a URL: deliveries to one endpoint share its concurrency limit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


# ------------------------------------------------------------------------------------------------- wake-up

_wakers: set[Callable[[], None]] = set()
_wakers_lock = threading.Lock()


def register_waker(waker: Callable[[], None]) -> Callable[[], None]:
    """Call ``waker`` after each commit that queued deliveries (a worker's nudge); returns the unregister call."""
    with _wakers_lock:
        _wakers.add(waker)

    def unregister() -> None:
        with _wakers_lock:
            _wakers.discard(waker)

    return unregister


def _wake_workers() -> None:
    with _wakers_lock:
        wakers = list(_wakers)
    for waker in wakers:
        waker()


def wake_after_commit(session: Session) -> None:
    """Have the workers look for due deliveries as soon as this transaction commits (not before: they would miss
    what it wrote)."""
    after_commit(session, _wake_workers)


# ------------------------------------------------------------------------------------------------ queueing


def _next_sequence(session: Session, app_id: str) -> int:
    """The app's next sequence number; the counter row stays locked until the transaction ends, so sequence order
    is commit order and a cursor never skips a delivery committed late."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(WebhookSequence).values(app_id=app_id, last_sequence=0).on_conflict_do_nothing())
    counter = session.exec(select(WebhookSequence).where(WebhookSequence.app_id == app_id).with_for_update()).one()
    counter.last_sequence += 1
    session.add(counter)
    return counter.last_sequence


def enqueue(
    session: Session,
    *,
    app: App,
    installation: Installation,
    url: str,
    source_event_id: str,
    event_type: str,
    time: datetime,
    subject: str | None,
    data: dict[str, Any],
) -> WebhookDelivery | None:
    """Queue one delivery; None when this event already gave the installation one (a re-applied event)."""
    existing = session.exec(
        select(WebhookDelivery.id).where(
            WebhookDelivery.source_event_id == source_event_id,
            WebhookDelivery.installation_id == installation.id,
            WebhookDelivery.event_type == event_type,
        )
    ).first()
    if existing is not None:
        return None
    delivery = WebhookDelivery(
        app_id=app.id,
        sequence=_next_sequence(session, app.id),
        installation_id=installation.id,
        school_id=installation.school_id,
        source_event_id=source_event_id,
        event_type=event_type,
        body="",
        url=url,
        endpoint=endpoint_of(url),
    )
    document: dict[str, Any] = {
        "id": delivery.id,
        "type": event_type,
        "source": WEBHOOK_SOURCE,
        "time": time.isoformat().replace("+00:00", "Z"),
        "installation_id": installation.id,
        "school_id": installation.school_id,
        "data": data,
    }
    if subject is not None:
        document["subject"] = subject
    delivery.body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    session.add(delivery)
    session.flush()
    return delivery


def cancel_for_removed_installation(session: Session, installation_id: str, *, reason: str) -> int:
    """Cancel what is still queued for an installation that ended, except the notices about its end."""
    rows = session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.installation_id == installation_id,
            WebhookDelivery.status == "pending",
            col(WebhookDelivery.event_type).not_in(NOTICES_AFTER_REMOVAL),
        )
    ).all()
    for delivery in rows:
        cancel(delivery, reason=reason)
        session.add(delivery)
    return len(rows)


def cancel(delivery: WebhookDelivery, *, reason: str) -> None:
    """Stop a queued delivery for good (it is kept, with the reason, for the vendor to see)."""
    metrics.DELIVERIES.labels("cancelled").inc()
    delivery.status = "cancelled"
    delivery.cancelled_reason = reason[:200]
    delivery.next_attempt_at = None
    delivery.lease_token = None
    delivery.lease_until = None


# ------------------------------------------------------------------------------------------------- secrets


def signing_secret_rows(session: Session, app_id: str) -> Sequence[WebhookSecret]:
    return session.exec(
        select(WebhookSecret).where(WebhookSecret.app_id == app_id).order_by(col(WebhookSecret.generation).desc())
    ).all()


def signing_secrets(session: Session, cipher: FieldCipher, app_id: str, *, now: datetime | None = None) -> list[str]:
    """The secrets that sign the app's deliveries now, newest (current) first: two during a rotation window; the
    first secret is made here when none exists yet."""
    moment = now or utcnow()
    rows = signing_secret_rows(session, app_id)
    if not rows:
        try:
            with session.begin_nested():
                session.add(
                    WebhookSecret(
                        app_id=app_id, generation=1, secret_encrypted=cipher.encrypt(SECRET_FIELD, new_secret())
                    )
                )
        except sa.exc.IntegrityError:
            pass  # another worker made the first secret at the same moment: use theirs
        rows = signing_secret_rows(session, app_id)
    return [
        cipher.decrypt(SECRET_FIELD, row.secret_encrypted)
        for row in rows
        if row.retires_at is None or aware(row.retires_at) > moment
    ]


def rotate_secret(session: Session, cipher: FieldCipher, app_id: str, *, window: timedelta) -> tuple[str, datetime]:
    """A new current secret (shown once); the one it replaces keeps signing for ``window``, older ones stop now."""
    now = utcnow()
    rows = signing_secret_rows(session, app_id)
    for row in rows:
        if row.retires_at is None:
            row.retires_at = now + window
        elif aware(row.retires_at) > now:
            row.retires_at = now  # a rotation during a rotation: only the latest previous secret stays
        session.add(row)
    secret = new_secret()
    generation = (rows[0].generation + 1) if rows else 1
    session.add(
        WebhookSecret(app_id=app_id, generation=generation, secret_encrypted=cipher.encrypt(SECRET_FIELD, secret))
    )
    session.flush()
    return secret, now + window


def aware(moment: datetime) -> datetime:
    """A stored time with its zone: SQLite hands back naive datetimes, and every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------- vendors' view


def list_deliveries(
    session: Session, *, app_id: str, cursor: int, limit: int, statuses: Sequence[str] | None = None
) -> list[WebhookDelivery]:
    """The app's deliveries after ``cursor`` in sequence order."""
    query = select(WebhookDelivery).where(WebhookDelivery.app_id == app_id, WebhookDelivery.sequence > cursor)
    if statuses:
        query = query.where(col(WebhookDelivery.status).in_(statuses))
    return list(session.exec(query.order_by(col(WebhookDelivery.sequence)).limit(limit)).all())


def attempts_of(session: Session, delivery_id: str) -> list[WebhookAttempt]:
    return list(
        session.exec(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(col(WebhookAttempt.number))
        ).all()
    )


def requeue(session: Session, delivery: WebhookDelivery, *, trigger: str) -> bool:
    """Send a delivered or dead-lettered delivery again (same webhook-id, a new run of attempts).

    False when it cannot go out again: still queued, or cancelled because the installation ended.
    """
    if delivery.status not in ("delivered", "dead"):
        return False
    if delivery.event_type not in NOTICES_AFTER_REMOVAL:
        installation = session.get(Installation, delivery.installation_id)
        if installation is None or installation.status != "active":
            return False
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.replays += 1
    delivery.run_trigger = trigger
    delivery.next_attempt_at = utcnow()
    delivery.lease_token = None
    delivery.lease_until = None
    delivery.dead_at = None
    session.add(delivery)
    return True


def replay(
    session: Session,
    *,
    app_id: str,
    from_cursor: int,
    to_cursor: int | None,
    statuses: Sequence[str] | None,
    limit: int,
) -> tuple[int, int | None]:
    """Re-queue the app's deliveries with sequence in ``[from_cursor, to_cursor]``; (count, where to continue)."""
    query = select(WebhookDelivery).where(
        WebhookDelivery.app_id == app_id,
        WebhookDelivery.sequence >= from_cursor,
        col(WebhookDelivery.status).in_(statuses or ("delivered", "dead")),
    )
    if to_cursor is not None:
        query = query.where(WebhookDelivery.sequence <= to_cursor)
    rows = session.exec(query.order_by(col(WebhookDelivery.sequence)).limit(limit + 1)).all()
    more = len(rows) > limit
    count = sum(1 for delivery in rows[:limit] if requeue(session, delivery, trigger="replay"))
    session.flush()
    return count, (rows[limit].sequence if more else None)
