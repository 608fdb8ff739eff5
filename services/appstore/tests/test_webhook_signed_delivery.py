"""An installation's webhook reaches the vendor's endpoint signed with the app's secret, which the vendor verifies
with contracts.webhooks.verify; the first grant is installation.created, a later one installation.updated."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from contracts.webhooks import WebhookVerificationError, verify
from kit.testing import TestCity

from .webhook_factories import (
    Receiver,
    database_of,
    deliveries,
    eventually,
    fast_retries,
    granted_event,
    installation,
    publish,
    published_app,
    serving,
    vendor,
)


async def test_installation_events_arrive_signed_with_the_secret_the_vendor_was_shown(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    fast_retries(app)
    database = database_of(app)
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        shown = await client.post(f"/apps/{app_id}/webhook-secret", headers=city.token("developer"))
        assert shown.status_code == 201, shown.text
        secret = shown.json()["secret"]
        assert secret.startswith("whsec_") and shown.json()["previous_secret_signs_until"] is None

        row = installation(database, city, app_id, city.school_a1)
        publish(app, granted_event(row))
        await eventually(lambda: len(receiver.received) == 1)
        publish(app, granted_event(row))
        await eventually(lambda: len(receiver.received) == 2)

    first, second = receiver.received
    for received in (first, second):
        verify(secret, received.headers, received.body)
        assert received.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 44, first.headers, first.body)

    created, updated = first.json(), second.json()
    assert created["type"] == "installation.created" and updated["type"] == "installation.updated"
    assert created["id"] == first.headers["webhook-id"]
    assert created["installation_id"] == row.id and created["school_id"] == city.school_a1
    assert created["data"]["scopes"] == ["openid", "roster.read", "roster.students.read"]
    assert set(created) == {"id", "type", "source", "time", "subject", "data", "installation_id", "school_id"}

    # The receiver has the bodies before the worker records each answer.
    await eventually(lambda: all(delivery.status == "delivered" for delivery in deliveries(database, app_id)))
    rows = deliveries(database, app_id)
    assert [delivery.sequence for delivery in rows] == [1, 2]
    assert all(delivery.status == "delivered" and delivery.total_attempts == 1 for delivery in rows)
