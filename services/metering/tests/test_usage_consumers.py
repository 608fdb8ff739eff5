"""Usage arrives over NATS from the app store and the gateway, and each unit is counted once however often it comes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlmodel import func, select

from contracts.events import StreamSpec
from contracts.events import appstore as appstore_events
from contracts.events import gateway as gateway_events
from contracts.events.base import EventPayload
from kit.inbox import ProcessedEvent
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import build_envelope, event_headers
from metering.config import MeteringSettings
from metering.testing import launched
from metering.usage.models import UsageTotal

AT = datetime(2026, 10, 12, 1, 30, tzinfo=UTC)


async def _eventually(
    check: Callable[[], bool], timeout: float = 20.0, describe: Callable[[], object] | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached in time: {describe()}" if describe else "not reached in time")


def _totals(app: FastAPI) -> dict[tuple[str, str], int]:
    with app.state.database.session() as session:
        rows = session.exec(
            select(UsageTotal.meter, UsageTotal.status, func.sum(UsageTotal.quantity)).group_by(
                UsageTotal.meter, UsageTotal.status
            )
        ).all()
    return {(meter, status): int(quantity) for meter, status, quantity in rows if quantity}


async def test_launches_and_api_calls_from_nats_count_once(
    app: FastAPI, settings: MeteringSettings, nats_server: NatsServer
) -> None:
    link = NatsLink(nats_server.url, name="test-publisher", streams=[StreamSpec("appstore"), StreamSpec("gateway")])
    await link.start()
    assert await link.wait_connected(10)
    assert link.jetstream is not None

    async def publish(payload: EventPayload, *, message_id: str | None = None) -> None:
        envelope = build_envelope(payload, subject_id="test")
        headers = event_headers(message_id or envelope.id, envelope.type)
        await link.jetstream.publish(payload.subject(), envelope.to_json_bytes(), headers=headers)

    vendor_id, app_id, school_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await publish(appstore_events.VendorRegisteredV1(vendor_id=vendor_id, name="星火教育",
                                                        unified_social_credit_code="91350100MA2XN8KQ1B"))  # fmt: skip
        await publish(
            appstore_events.AppPublishedV1(
                app_id=app_id, vendor_id=vendor_id, version_id="v1", app_version="1.0.0", client_id="c",
                scopes=["openid"], pricing_unit="launch", unit_price_fen=20, effective_at=AT - timedelta(days=30),
            )
        )  # fmt: skip
        await publish(
            appstore_events.InstallationGrantedV1(
                installation_id="i1", app_id=app_id, client_id="c", school_id=school_id, scopes=["openid"],
                version_id="v1", granted_at=AT - timedelta(days=1),
            )
        )  # fmt: skip
        launches = [
            launched(app_id=app_id, vendor_id=vendor_id, school_id=school_id, at=AT + timedelta(minutes=i),
                     user=f"user-{i % 3}")
            for i in range(30)
        ]  # fmt: skip
        for event in launches:
            await publish(event)
        for event in launches[:5]:
            await publish(event)  # re-sent with new message ids: past the broker's duplicate window
        records = [
            gateway_events.ApiCallRecord(
                id=str(uuid.uuid4()), client_id="c", app_id=app_id, school_id=school_id, service="enrollment",
                route="/api/enrollment/classes", method="GET", status=200, latency_ms=3.0, request_bytes=0,
                response_bytes=100, at=AT, request_id=str(uuid.uuid4()),
            )
            for _ in range(12)
        ]  # fmt: skip
        await publish(gateway_events.ApiUsageRecordedV1(batch_id="b1", records=records))
        # The same records again in another batch (a gateway that re-cut its spool): still counted once.
        await publish(gateway_events.ApiUsageRecordedV1(batch_id="b2", records=records[:6]))

        await _eventually(
            lambda: (
                _totals(app).get(("api_call", "billable"), 0) == 12
                and _totals(app).get(("launch", "billable"), 0) == 30
            ),
            describe=lambda: _totals(app),
        )
        await asyncio.sleep(1.0)
    finally:
        await link.close()
    assert _totals(app) == {
        ("launch", "billable"): 30,
        ("monthly_active_user", "billable"): 3,
        ("api_call", "billable"): 12,
    }
    # Usage is kept from counting twice by the ledger's own key: no processed-id row per launch or gateway batch;
    # the facts it is checked against are tracked by the consumer as usual.
    with app.state.database.read_session() as session:
        tracked = session.exec(select(ProcessedEvent.event_type, func.count()).group_by(ProcessedEvent.event_type))
        assert dict(tracked.all()) == {
            appstore_events.VendorRegisteredV1.event_type(): 1,
            appstore_events.AppPublishedV1.event_type(): 1,
            appstore_events.InstallationGrantedV1.event_type(): 1,
        }
