"""A delivery claimed by a worker that then died is sent once its lease runs out (at least once, same webhook-id);
one leased by a live worker is left alone until then; workers of several processes share the queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from fastapi import FastAPI

from appstore.webhooks.models import WebhookDelivery
from appstore.webhooks.worker import DeliveryWorker
from kit.outbox import utcnow
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


async def test_a_crashed_workers_lease_runs_out_and_the_delivery_is_sent(app: FastAPI, city: TestCity) -> None:
    fast_retries(app)
    database = database_of(app)
    worker = app.state.webhook_worker
    await worker.stop()  # the worker that will "crash" holding the lease
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        publish(app, granted_event(installation(database, city, app_id, city.school_a1)))
        (queued,) = await eventually(lambda: deliveries(database, app_id))
        lease_ends = time.monotonic() + 1.0
        with database.session() as session:
            row = session.get(WebhookDelivery, queued.id)
            assert row is not None
            row.lease_token = str(uuid.uuid4())
            row.lease_until = utcnow() + timedelta(seconds=1.0)
            session.add(row)

        await worker.start()  # a fresh worker (a restarted process)
        await eventually(lambda: len(receiver.received) == 1, timeout=5)

    assert receiver.received[0].at >= lease_ends - 0.05
    assert receiver.received[0].headers["webhook-id"] == queued.id
    await eventually(lambda: deliveries(database, app_id)[0].status == "delivered")
    (sent,) = deliveries(database, app_id)
    assert sent.status == "delivered" and sent.total_attempts == 1 and sent.lease_token is None


async def test_two_workers_share_the_queue_without_sending_anything_twice(app: FastAPI, city: TestCity) -> None:
    settings = fast_retries(app)
    database = database_of(app)
    second = DeliveryWorker(database, settings, app.state.cipher, production=False)
    await second.start()  # a second process's worker on the same database
    try:
        with serving(Receiver()) as receiver:
            app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
            row = installation(database, city, app_id, city.school_a1)
            publish(app, *[granted_event(row) for _ in range(30)])
            await eventually(lambda: len(receiver.received) == 30, timeout=20)
            await asyncio.sleep(0.3)  # anything sent twice would arrive by now
    finally:
        await second.stop()

    webhook_ids = [received.headers["webhook-id"] for received in receiver.received]
    assert len(set(webhook_ids)) == 30 == len(webhook_ids)
    assert all(delivery.total_attempts == 1 for delivery in deliveries(database, app_id))
