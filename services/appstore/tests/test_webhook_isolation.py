"""A hanging endpoint holds only its own few slots: another app's deliveries go out at once meanwhile."""

from __future__ import annotations

import time

from fastapi import FastAPI

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

PER_ENDPOINT = 2
BOUND_SECONDS = 1.0  # the healthy app's events arrive within this while the other endpoint hangs


async def test_a_hanging_endpoint_does_not_delay_another_apps_deliveries(app: FastAPI, city: TestCity) -> None:
    fast_retries(app, timeout_seconds=15.0, per_endpoint_concurrency=PER_ENDPOINT, pool_size=8)
    database = database_of(app)
    vendor_id = vendor(database, city, "developer")
    with serving(Receiver(hang=True)) as hanging, serving(Receiver()) as healthy:
        stuck = installation(
            database, city, published_app(database, vendor_id, webhook_url=hanging.url), city.school_a1
        )
        fine = installation(database, city, published_app(database, vendor_id, webhook_url=healthy.url), city.school_a1)

        publish(app, *[granted_event(stuck) for _ in range(12)])
        await eventually(lambda: len(hanging.received) == PER_ENDPOINT)

        latencies = []
        for _ in range(5):
            sent_at = time.monotonic()
            expected = len(healthy.received) + 1
            publish(app, granted_event(fine))
            await eventually(lambda expected=expected: len(healthy.received) == expected, timeout=5)
            latencies.append(healthy.received[-1].at - sent_at)
        # The hanging endpoint still holds just its own slots: nothing more was sent to it meanwhile.
        assert len(hanging.received) == PER_ENDPOINT

    print(f"healthy endpoint latency while another hangs: max {max(latencies) * 1000:.0f} ms, {latencies}")
    assert max(latencies) < BOUND_SECONDS, latencies
