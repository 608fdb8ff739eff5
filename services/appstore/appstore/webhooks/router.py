"""HTTP routes of webhooks for the app's vendor: its signing secret, deliveries, replay and dead letters.

Every route needs a developer of the app's vendor (role vendor_developer, scope apps.develop); a developer of
another vendor gets 403, an unknown app 404.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import Session

from appstore.apps.models import App
from appstore.deps import Caller, CallerDep, CipherDep
from appstore.errors import UnknownApp
from appstore.vendors.access import require_developer, require_member
from appstore.webhooks import service
from appstore.webhooks.config import WebhookSettings
from appstore.webhooks.errors import NotRedeliverable, UnknownDelivery
from appstore.webhooks.models import WebhookDelivery
from appstore.webhooks.schemas import (
    DeliveryStatus,
    ReplayRequest,
    ReplayResult,
    WebhookAttemptRead,
    WebhookDeliveryDetail,
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookSecretRead,
)
from kit import audit
from kit.db import SessionDep

router = APIRouter(tags=["webhooks"])

CursorQuery = Annotated[int, Query(ge=0, description="Sequence number after which to list (0: from the start)")]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="Most deliveries to return")]


def _settings(request: Request) -> WebhookSettings:
    settings: WebhookSettings | None = getattr(request.app.state, "webhook_settings", None)
    return settings or WebhookSettings()


def _vendor_app(session: Session, caller: Caller, app_id: str) -> App:
    """The app, for a developer of its vendor: 401/403 before anything about the app is revealed."""
    require_developer(caller)
    app = session.get(App, app_id)
    if app is None:
        raise UnknownApp(app_id)
    require_member(session, caller, app.vendor_id)
    return app


def _delivery(session: Session, app: App, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.app_id != app.id:
        raise UnknownDelivery(delivery_id)
    return delivery


def _audit(session: Session, caller: Caller, action: str, app: App, target: tuple[str, str], **detail: object) -> None:
    audit.append(
        session, action=action, actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type=target[0], target_id=target[1],
        detail={"app_id": app.id, "vendor_id": app.vendor_id, **detail},
    )  # fmt: skip


@router.post("/apps/{app_id}/webhook-secret", response_model=WebhookSecretRead, status_code=201)
def rotate_webhook_secret(
    app_id: str, caller: CallerDep, session: SessionDep, cipher: CipherDep, request: Request
) -> WebhookSecretRead:
    """Create the app's webhook secret, or rotate it: the new one is shown once; the old one also signs for 24 h."""
    app = _vendor_app(session, caller, app_id)
    had_secret = bool(service.signing_secret_rows(session, app.id))
    window = timedelta(seconds=_settings(request).rotation_window_seconds)
    secret, old_signs_until = service.rotate_secret(session, cipher, app.id, window=window)
    _audit(session, caller, "webhook.secret.rotated", app, ("app", app.id))
    return WebhookSecretRead(secret=secret, previous_secret_signs_until=old_signs_until if had_secret else None)


@router.get("/apps/{app_id}/webhook-deliveries", response_model=WebhookDeliveryPage)
def list_webhook_deliveries(
    app_id: str,
    caller: CallerDep,
    session: SessionDep,
    cursor: CursorQuery = 0,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in this state")] = None,
    limit: LimitQuery = 50,
) -> WebhookDeliveryPage:
    """The app's webhook deliveries after the cursor, oldest first, with their attempts and next try."""
    app = _vendor_app(session, caller, app_id)
    rows = service.list_deliveries(
        session, app_id=app.id, cursor=cursor, limit=limit, statuses=[status] if status else None
    )
    return WebhookDeliveryPage(
        items=[WebhookDeliveryRead.model_validate(row) for row in rows],
        next_cursor=rows[-1].sequence if rows else cursor,
    )


@router.get("/apps/{app_id}/webhook-dead-letters", response_model=WebhookDeliveryPage)
def list_webhook_dead_letters(
    app_id: str, caller: CallerDep, session: SessionDep, cursor: CursorQuery = 0, limit: LimitQuery = 50
) -> WebhookDeliveryPage:
    """Deliveries whose every attempt failed; send one again with redeliver, or a range with replay."""
    app = _vendor_app(session, caller, app_id)
    rows = service.list_deliveries(session, app_id=app.id, cursor=cursor, limit=limit, statuses=["dead"])
    return WebhookDeliveryPage(
        items=[WebhookDeliveryRead.model_validate(row) for row in rows],
        next_cursor=rows[-1].sequence if rows else cursor,
    )


@router.get("/apps/{app_id}/webhook-deliveries/{delivery_id}", response_model=WebhookDeliveryDetail)
def read_webhook_delivery(
    app_id: str, delivery_id: str, caller: CallerDep, session: SessionDep
) -> WebhookDeliveryDetail:
    """One delivery with the body it sends and every attempt so far."""
    app = _vendor_app(session, caller, app_id)
    delivery = _delivery(session, app, delivery_id)
    # The body names a school's pupils and teachers (by the app's pseudonyms): reading it is audited.
    _audit(
        session, caller, "webhook.delivery.read", app, ("webhook_delivery", delivery.id), school_id=delivery.school_id
    )
    return WebhookDeliveryDetail(
        **WebhookDeliveryRead.model_validate(delivery).model_dump(),
        payload=json.loads(delivery.body),
        attempt_history=[WebhookAttemptRead.model_validate(row) for row in service.attempts_of(session, delivery.id)],
    )


@router.post("/apps/{app_id}/webhook-deliveries/replay", response_model=ReplayResult)
def replay_webhook_deliveries(
    app_id: str, body: ReplayRequest, caller: CallerDep, session: SessionDep, request: Request
) -> ReplayResult:
    """Send delivered or dead-lettered deliveries from a cursor again (same webhook-id, new attempts)."""
    app = _vendor_app(session, caller, app_id)
    count, next_cursor = service.replay(
        session, app_id=app.id, from_cursor=body.from_cursor, to_cursor=body.to_cursor,
        statuses=body.status, limit=_settings(request).max_replay,
    )  # fmt: skip
    _audit(
        session, caller, "webhook.deliveries.replayed", app, ("app", app.id),
        from_cursor=body.from_cursor, to_cursor=body.to_cursor, requeued=count,
    )  # fmt: skip
    if count:
        service.wake_after_commit(session)
    return ReplayResult(requeued=count, next_cursor=next_cursor)


@router.post("/apps/{app_id}/webhook-deliveries/{delivery_id}/redeliver", response_model=WebhookDeliveryRead)
def redeliver_webhook(app_id: str, delivery_id: str, caller: CallerDep, session: SessionDep) -> WebhookDeliveryRead:
    """Send one delivered or dead-lettered delivery again (same webhook-id)."""
    app = _vendor_app(session, caller, app_id)
    delivery = _delivery(session, app, delivery_id)
    if not service.requeue(session, delivery, trigger="redeliver"):
        raise NotRedeliverable(delivery.id, delivery.status)
    _audit(
        session,
        caller,
        "webhook.delivery.redelivered",
        app,
        ("webhook_delivery", delivery.id),
        school_id=delivery.school_id,
    )
    service.wake_after_commit(session)
    session.flush()
    return WebhookDeliveryRead.model_validate(delivery)
