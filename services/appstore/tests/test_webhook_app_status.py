"""When the city suspends an app, each school that had it installed hears why (app.status_changed, once per
installation), then that its installation ended; the notice is not cancelled by the removal."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from appstore.apps.models import App
from contracts.events import appstore as appstore_events
from kit.testing import TestCity

from .webhook_factories import (
    Receiver,
    database_of,
    deliveries,
    eventually,
    fast_retries,
    installation,
    publish,
    published_app,
    remove,
    serving,
    vendor,
)


async def test_suspension_notice_then_removal_notice_per_school(app: FastAPI, city: TestCity) -> None:
    fast_retries(app)
    database = database_of(app)
    vendor_id = vendor(database, city, "developer")
    with serving(Receiver()) as receiver:
        app_id = published_app(database, vendor_id, webhook_url=receiver.url)
        at_a1 = installation(database, city, app_id, city.school_a1)
        at_b1 = installation(database, city, app_id, city.school_b1)
        with database.session() as session:
            row = session.get(App, app_id)
            assert row is not None
            row.status = "suspended"
            session.add(row)
        now = datetime.now(UTC)
        suspended = appstore_events.AppStatusChangedV1(
            app_id=app_id, vendor_id=vendor_id, status="suspended", reason="隐私政策与实际收集不符", effective_at=now
        )
        # The suspension takes effect at once: the city's action removes every installation in the same transaction.
        publish(
            app,
            suspended,
            remove(database, at_a1, reason="app_suspended"),
            remove(database, at_b1, reason="app_suspended"),
        )
        await eventually(lambda: len(receiver.received) == 4)

    bodies = [received.json() for received in receiver.received]
    for installation_id in (at_a1.id, at_b1.id):
        mine = [body["type"] for body in bodies if body["installation_id"] == installation_id]
        assert mine == ["app.status_changed", "installation.removed"]
    notice = next(body for body in bodies if body["type"] == "app.status_changed")
    assert notice["data"] == {
        "app_id": app_id, "status": "suspended", "reason": "隐私政策与实际收集不符",
        "effective_at": now.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    # The receiver has the bodies before the worker records each answer.
    await eventually(lambda: all(delivery.status == "delivered" for delivery in deliveries(database, app_id)))
