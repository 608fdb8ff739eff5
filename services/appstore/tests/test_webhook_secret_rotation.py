"""During a rotation deliveries carry two signatures, one per secret, so the vendor can switch without losing any;
after the window only the new secret signs."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from contracts.webhooks import verify
from kit.testing import TestCity

from .webhook_factories import (
    Receiver,
    database_of,
    eventually,
    fast_retries,
    granted_event,
    installation,
    publish,
    published_app,
    serving,
    vendor,
)


async def test_both_secrets_sign_during_the_rotation_window_then_only_the_new_one(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    window = 4.0
    fast_retries(app, rotation_window_seconds=window)
    database = database_of(app)
    headers = city.token("developer")
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        row = installation(database, city, app_id, city.school_a1)
        old = (await client.post(f"/apps/{app_id}/webhook-secret", headers=headers)).json()["secret"]
        new = (await client.post(f"/apps/{app_id}/webhook-secret", headers=headers)).json()["secret"]
        rotated_at = time.monotonic()

        publish(app, granted_event(row))
        await eventually(lambda: len(receiver.received) == 1)
        assert receiver.received[0].at - rotated_at < window  # else the test machine is too slow to tell
        await asyncio.sleep(window - (time.monotonic() - rotated_at) + 0.1)
        publish(app, granted_event(row))
        await eventually(lambda: len(receiver.received) == 2)

    during, after = receiver.received
    assert len(during.headers["webhook-signature"].split()) == 2
    verify(old, during.headers, during.body)
    verify(new, during.headers, during.body)
    assert len(after.headers["webhook-signature"].split()) == 1
    verify(new, after.headers, after.body)


async def test_a_secret_is_made_when_the_first_delivery_needs_one(app: FastAPI, city: TestCity) -> None:
    fast_retries(app)
    database = database_of(app)
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        publish(app, granted_event(installation(database, city, app_id, city.school_a1)))
        await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0].headers["webhook-signature"].startswith("v1,")
