"""Uninstalling stops a school's deliveries at once: queued ones are cancelled and only the removal notice, with
the date the vendor must delete the school's data by, still goes out."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from appstore.config import AppStoreSettings
from contracts.events import enrollment as roster_events
from kit.testing import TestCity

from .webhook_factories import (
    Receiver,
    database_of,
    deliveries,
    eventually,
    fast_retries,
    installation,
    publish,
    publish_enrollment,
    published_app,
    remove,
    serving,
    vendor,
)


def _class_changed(school_id: str) -> roster_events.ClassChangedV1:
    return roster_events.ClassChangedV1(
        class_id=str(uuid.uuid4()), school_id=school_id, school_year_id="sy-2026", grade="03", name="三年级（1）班"
    )


async def test_uninstalling_cancels_queued_deliveries_and_sends_the_removal_notice_last(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings
) -> None:
    fast_retries(app, retry_delays=[1.0, 1.0, 1.0])
    database = database_of(app)
    with serving(Receiver(status=503)) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        row = installation(database, city, app_id, city.school_a1)
        await publish_enrollment(settings.nats_url, _class_changed(city.school_a1), _class_changed(city.school_a1))
        await eventually(lambda: len(receiver.received) >= 2)  # both tried once, both waiting for a retry

        # The school uninstalls; the app store's event is not even fanned out yet, and the endpoint recovers.
        removed = remove(database, row)
        receiver.status = 200
        tried = len(receiver.received)
        await eventually(lambda: all(d.status == "cancelled" for d in deliveries(database, app_id)), timeout=5)
        assert len(receiver.received) == tried  # the retries never went out

        publish(app, removed)
        notice = await eventually(lambda: [r for r in receiver.received if r.json()["type"] == "installation.removed"])
        # Later roster changes at the school reach the app no more.
        await publish_enrollment(settings.nats_url, _class_changed(city.school_a1))

    body = notice[0].json()
    assert body["installation_id"] == row.id and body["school_id"] == city.school_a1
    assert body["data"]["reason"] == "uninstalled"
    assert body["data"]["delete_data_by"] == removed.delete_data_by.isoformat()
    rows = deliveries(database, app_id)
    assert [d.event_type for d in rows] == ["roster.class.changed", "roster.class.changed", "installation.removed"]
    assert [d.status for d in rows] == ["cancelled", "cancelled", "delivered"]
    assert rows[0].cancelled_reason == "the installation was removed"

    cancelled = await client.post(
        f"/apps/{app_id}/webhook-deliveries/{rows[0].id}/redeliver", headers=city.token("developer")
    )
    assert cancelled.status_code == 409 and cancelled.json()["delivery_status"] == "cancelled"
    replay = await client.post(
        f"/apps/{app_id}/webhook-deliveries/replay", headers=city.token("developer"), json={"from_cursor": 0}
    )
    assert replay.json()["requeued"] == 1  # the removal notice may be sent again, the roster changes not


async def test_the_removal_event_cancels_what_is_queued(
    app: FastAPI, city: TestCity, settings: AppStoreSettings
) -> None:
    fast_retries(app, retry_delays=[30.0])
    database = database_of(app)
    with serving(Receiver(status=500)) as receiver:
        app_id = published_app(database, vendor(database, city, "developer"), webhook_url=receiver.url)
        row = installation(database, city, app_id, city.school_a1)
        await publish_enrollment(settings.nats_url, _class_changed(city.school_a1))
        await eventually(lambda: len(receiver.received) == 1)
        publish(app, remove(database, row))
        await eventually(lambda: len(deliveries(database, app_id)) == 2)

    first, notice = deliveries(database, app_id)
    assert first.status == "cancelled" and first.cancelled_reason == "installation removed (uninstalled)"
    assert notice.event_type == "installation.removed"
