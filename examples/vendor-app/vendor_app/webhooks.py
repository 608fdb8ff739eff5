"""Receiving the platform's webhooks: verify the Standard Webhooks signature, drop duplicates, act once.

Deliveries are retried and can be replayed by the vendor, always with the same ``webhook-id``: the app keeps
the ids it handled and answers a repeat with 200 without acting again. Installation events tell the tool
which deployments exist; an uninstallation means the school's data must be deleted (here: at once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contracts.webhooks import HEADER_ID, WebhookVerificationError, verify
from vendor_app.context import AppContext, context_of

router = APIRouter(tags=["Webhooks"])


def event_type_of(body: dict[str, Any]) -> str:
    """The event type of a delivery body (``type``, as in the platform's webhook payloads)."""
    return str(body.get("type") or body.get("event") or "unknown")


def event_data_of(body: dict[str, Any]) -> dict[str, Any]:
    """The event's facts: ``data``, with the delivery's ``installation_id`` and ``school_id`` (top level)."""
    data = body.get("data")
    facts = dict(data) if isinstance(data, dict) else {}
    for key in ("installation_id", "school_id"):
        if body.get(key) and not facts.get(key):
            facts[key] = body[key]
    return facts


def apply_event(context: AppContext, event_type: str, data: dict[str, Any]) -> None:
    """What the app does about an event; called once per delivery id."""
    installation_id = str(data.get("installation_id") or data.get("deployment_id") or "")
    school_id = str(data.get("school_id") or "")
    if event_type in ("installation.created", "installation.updated") and installation_id:
        with context.deployments_lock:
            context.deployments.add(installation_id)
        if school_id:
            context.lti_storage.set(f"deployment-school-{installation_id}", school_id, 10 * 365 * 86400)
    elif event_type == "installation.removed":
        with context.deployments_lock:
            context.deployments.discard(installation_id)
        # The platform gives a deadline (delete_data_by, within the manifest's retention period); the sample
        # keeps nothing worth retaining, so it deletes the school's data at once.
        if school_id:
            context.usage.forget_school(school_id)


def verified_by_any(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes) -> bool:
    """Whether one of the app's secrets (one per app of the vendor) signed the delivery, recently."""
    for secret in secrets:
        try:
            verify(secret, headers, body)
        except WebhookVerificationError:
            continue
        return True
    return False


@router.post("/webhooks", summary="Receive the platform's signed webhook deliveries")
async def receive(request: Request) -> JSONResponse:
    """Verify the signature and freshness, ignore a delivery id seen before, apply the event once."""
    context = context_of(request)
    secrets = context.settings.webhook_secrets
    if not secrets:
        return JSONResponse({"detail": "webhook secret not configured (VENDOR_APP_WEBHOOK_SECRET)"}, 503)
    body = await request.body()
    if not verified_by_any(secrets, request.headers, body):
        return JSONResponse({"detail": "signature refused: not signed with this app's secret, or not fresh"}, 401)
    try:
        payload = json.loads(body)
    except ValueError:
        return JSONResponse({"detail": "the body is not JSON"}, 400)
    if not isinstance(payload, dict):
        return JSONResponse({"detail": "the body is not a JSON object"}, 400)
    event_type = event_type_of(payload)
    data = event_data_of(payload)
    if not context.webhooks.accept(request.headers[HEADER_ID], event_type, data):
        return JSONResponse({"status": "duplicate"})
    apply_event(context, event_type, data)
    return JSONResponse({"status": "accepted"})
