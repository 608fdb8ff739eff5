"""In production every attempt checks the endpoint's address again: a loopback or private target is refused with
a clear reason and nothing is sent (the DNS answer may have changed since the app was registered)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

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


async def test_a_loopback_endpoint_is_refused_in_production(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    fast_retries(app, retry_delays=[0.1])
    app.state.webhook_worker.production = True
    database = database_of(app)
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        publish(app, granted_event(installation(database, city, app_id, city.school_a1)))
        (dead,) = await eventually(lambda: [d for d in deliveries(database, app_id) if d.status == "dead"])
    assert receiver.received == []

    detail = await client.get(f"/apps/{app_id}/webhook-deliveries/{dead.id}", headers=city.token("developer"))
    attempts = detail.json()["attempt_history"]
    assert [attempt["outcome"] for attempt in attempts] == ["unsafe_url", "unsafe_url"]
    assert "must use https" in attempts[0]["error"]  # the first rule the loopback http URL breaks
    assert detail.json()["last_status_code"] is None


async def test_an_https_endpoint_on_a_private_address_is_refused_in_production(app: FastAPI, city: TestCity) -> None:
    fast_retries(app, retry_delays=[])
    app.state.webhook_worker.production = True
    database = database_of(app)
    app_id = published_app(database, vendor(database, city, "developer"), webhook_url="https://10.1.2.3/hooks")
    publish(app, granted_event(installation(database, city, app_id, city.school_a1)))
    (dead,) = await eventually(lambda: [d for d in deliveries(database, app_id) if d.status == "dead"])
    assert dead.last_error is not None and "10.1.2.3 is a private, loopback or reserved address" in dead.last_error
