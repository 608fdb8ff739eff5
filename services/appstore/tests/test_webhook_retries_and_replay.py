"""A failing endpoint is retried with backoff and then dead-lettered; the vendor sees each attempt, sends a dead
letter again, and replays deliveries from a cursor, always under the same webhook-id."""

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


async def test_failing_endpoint_is_retried_dead_lettered_then_redelivered_and_replayed(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    fast_retries(app, retry_delays=[0.2, 0.4])
    database = database_of(app)
    developer = city.token("developer")
    with serving(Receiver(status=500)) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        row = installation(database, city, app_id, city.school_a1)
        publish(app, granted_event(row))

        (dead,) = await eventually(lambda: [d for d in deliveries(database, app_id) if d.status == "dead"])
        assert len(receiver.received) == 3  # the first try and two retries
        webhook_ids = {received.headers["webhook-id"] for received in receiver.received}
        assert webhook_ids == {dead.id}
        gaps = [later.at - earlier.at for earlier, later in zip(receiver.received, receiver.received[1:], strict=False)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps  # backoff grows

        letters = await client.get(f"/apps/{app_id}/webhook-dead-letters", headers=developer)
        assert letters.status_code == 200
        (letter,) = letters.json()["items"]
        assert letter["id"] == dead.id and letter["status"] == "dead" and letter["attempts"] == 3
        assert letter["last_status_code"] == 500 and "500" in letter["last_error"]
        assert letter["next_attempt_at"] is None

        detail = (await client.get(f"/apps/{app_id}/webhook-deliveries/{dead.id}", headers=developer)).json()
        assert [attempt["outcome"] for attempt in detail["attempt_history"]] == ["http_error"] * 3
        assert [attempt["number"] for attempt in detail["attempt_history"]] == [1, 2, 3]
        assert detail["payload"]["type"] == "installation.created"

        # The vendor fixes the endpoint and sends the dead letter again.
        receiver.status = 200
        again = await client.post(f"/apps/{app_id}/webhook-deliveries/{dead.id}/redeliver", headers=developer)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "pending"
        await eventually(lambda: deliveries(database, app_id)[0].status == "delivered")
        assert len(receiver.received) == 4 and receiver.received[-1].headers["webhook-id"] == dead.id
        assert receiver.received[-1].body == receiver.received[0].body

        # A second event, then a replay of everything from the first sequence number.
        publish(app, granted_event(row))
        await eventually(lambda: len(receiver.received) == 5)
        await eventually(lambda: all(d.status == "delivered" for d in deliveries(database, app_id)))
        replay = await client.post(
            f"/apps/{app_id}/webhook-deliveries/replay", headers=developer, json={"from_cursor": 1}
        )
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"requeued": 2, "next_cursor": None}
        await eventually(lambda: len(receiver.received) == 7)
        await eventually(lambda: all(d.status == "delivered" for d in deliveries(database, app_id)))

    replayed = {received.headers["webhook-id"] for received in receiver.received[-2:]}
    assert replayed == {delivery.id for delivery in deliveries(database, app_id)}
    first = deliveries(database, app_id)[0]
    assert first.total_attempts == 5 and first.replays == 2
    detail = (await client.get(f"/apps/{app_id}/webhook-deliveries/{first.id}", headers=developer)).json()
    assert [attempt["trigger"] for attempt in detail["attempt_history"]] == [
        "scheduled", "scheduled", "scheduled", "redeliver", "replay",
    ]  # fmt: skip

    listed = (await client.get(f"/apps/{app_id}/webhook-deliveries?cursor=1", headers=developer)).json()
    assert [item["sequence"] for item in listed["items"]] == [2] and listed["next_cursor"] == 2
    delivered = (await client.get(f"/apps/{app_id}/webhook-deliveries?status=dead", headers=developer)).json()
    assert delivered["items"] == []

    exposition = (await client.get("/metrics")).text
    for sample in (
        'edu_webhook_attempts_total{outcome="http_error"}',
        'edu_webhook_deliveries_total{outcome="dead_lettered"}',
        'edu_webhook_deliveries_total{outcome="delivered"}',
        'edu_webhook_attempt_duration_seconds_bucket{le="0.1",outcome="delivered"}',
        "edu_webhook_delivery_latency_seconds_count",
    ):
        assert sample in exposition, sample
