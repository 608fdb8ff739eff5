"""The sample app receives webhooks the way the guide tells vendors to: signature and freshness verified with
``contracts.webhooks.verify``, duplicates (retries, replays) dropped by ``webhook-id``, each event applied once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from contracts.webhooks import new_secret, sign
from vendor_app.config import Settings

from .conftest import vendor_client


def delivery(secret: str, body: dict[str, Any], *, message_id: str | None = None, timestamp: int | None = None):
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = sign([secret], message_id=message_id or f"msg_{uuid.uuid4().hex}", body=raw, timestamp=timestamp)
    return raw, {**headers, "content-type": "application/json"}


def installation(event_type: str, school_id: str = "school-1") -> dict[str, Any]:
    return {
        "id": "d-1",
        "type": event_type,
        "installation_id": "inst-1",
        "school_id": school_id,
        "data": {"app_id": "app-1"},
    }


async def test_a_signed_delivery_is_accepted_and_shown(vendor_settings: Settings, webhook_secret: str) -> None:
    async with vendor_client(vendor_settings) as vendor:
        raw, headers = delivery(webhook_secret, installation("installation.created"), message_id="msg_created_1")
        response = await vendor.post("/webhooks", content=raw, headers=headers)
        assert response.status_code == 200
        assert response.json() == {"status": "accepted"}
        assert "inst-1" in vendor.app.state.context.deployments
        home = await vendor.get("/")
        assert "installation.created" in home.text
        assert "msg_created_1" in home.text


async def test_a_repeated_delivery_is_acknowledged_but_applied_once(
    vendor_settings: Settings, webhook_secret: str
) -> None:
    async with vendor_client(vendor_settings) as vendor:
        context = vendor.app.state.context
        tally = context.usage.start("launch-1", "school-1")
        context.usage.add("launch-1", 3)
        raw, headers = delivery(webhook_secret, installation("installation.removed"), message_id="msg_removed_1")
        first = await vendor.post("/webhooks", content=raw, headers=headers)
        assert first.json() == {"status": "accepted"}
        assert context.usage.get(tally.launch_id) is None  # the school's data is deleted on uninstallation

        # The school installs again and works; a late retry of the old removal must not delete the new work.
        context.usage.start("launch-2", "school-1")
        again = sign([webhook_secret], message_id="msg_removed_1", body=raw)
        retry = await vendor.post("/webhooks", content=raw, headers={**again, "content-type": "application/json"})
        assert retry.status_code == 200
        assert retry.json() == {"status": "duplicate"}
        assert context.usage.get("launch-2") is not None
        assert len([item for item in context.webhooks.latest if item.message_id == "msg_removed_1"]) == 1


async def test_a_wrong_signature_is_refused(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        raw, headers = delivery(new_secret(), installation("installation.created"))
        response = await vendor.post("/webhooks", content=raw, headers=headers)
        assert response.status_code == 401
        assert vendor.app.state.context.deployments == set()


async def test_a_tampered_body_is_refused(vendor_settings: Settings, webhook_secret: str) -> None:
    async with vendor_client(vendor_settings) as vendor:
        raw, headers = delivery(webhook_secret, installation("installation.created"))
        tampered = raw.replace(b"school-1", b"school-2")
        response = await vendor.post("/webhooks", content=tampered, headers=headers)
        assert response.status_code == 401


async def test_an_old_delivery_is_refused_as_a_replay(vendor_settings: Settings, webhook_secret: str) -> None:
    async with vendor_client(vendor_settings) as vendor:
        raw, headers = delivery(webhook_secret, installation("installation.created"), timestamp=int(time.time()) - 3600)
        response = await vendor.post("/webhooks", content=raw, headers=headers)
        assert response.status_code == 401


async def test_missing_headers_are_refused(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        response = await vendor.post("/webhooks", json=installation("installation.created"))
        assert response.status_code == 401


async def test_during_a_secret_rotation_either_secret_verifies(vendor_settings: Settings) -> None:
    """The platform signs with old and new secret while rotating; the app may know only one of them."""
    old, new = new_secret(), new_secret()
    async with vendor_client(vendor_settings, webhook_secrets=(new,)) as vendor:
        raw = json.dumps(installation("installation.updated")).encode()
        headers = sign([old, new], message_id="msg_rotation", body=raw)
        response = await vendor.post("/webhooks", content=raw, headers=headers)
        assert response.status_code == 200


async def test_without_a_configured_secret_nothing_is_accepted(vendor_settings: Settings, webhook_secret: str) -> None:
    async with vendor_client(vendor_settings, webhook_secrets=()) as vendor:
        raw, headers = delivery(webhook_secret, installation("installation.created"))
        response = await vendor.post("/webhooks", content=raw, headers=headers)
        assert response.status_code == 503
