"""Usage units: counted per launch, shown, and reported as a CloudEvents batch with idempotency ids that stay
the same on every re-send. Reporting is off until the metering service exists (issue 7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from contracts.envelope import EventEnvelope
from identity.testing import app, register_client, settings
from vendor_app.config import Settings
from vendor_app.stores import UsageTally
from vendor_app.usage import USAGE_EVENT_TYPE, build_batch, open_reports, report_usage

from .conftest import vendor_client

__all__ = ["app", "settings"]  # identity's fixtures: its token endpoint issues the reporting token


async def test_units_are_counted_per_launch_and_shown(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        context = vendor.app.state.context
        context.usage.start("launch-1", "school-1")
        for _ in range(3):
            marked = await vendor.post("/usage/mark", data={"launch": "launch-1", "back": ""})
            assert marked.status_code == 303
        page = await vendor.get("/usage")
        assert "launch-1" in page.text and "<td>3</td>" in page.text
        unknown = await vendor.post("/usage/mark", data={"launch": "never-launched"})
        assert unknown.status_code == 404


async def test_reporting_is_off_until_metering_exists(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        context = vendor.app.state.context
        context.usage.start("launch-1", "school-1")
        context.usage.add("launch-1", 2)
        page = await vendor.post("/usage/report")
        assert "计量上报尚未开启" in page.text
        tally = context.usage.get("launch-1")
        assert tally.reported_units == 0 and tally.open_report_id is None


def test_the_batch_is_cloudevents_with_the_launch_school_and_quantity() -> None:
    tallies = UsageTally()
    tallies.start("launch-42", "school-1")
    tallies.add("launch-42", 5)
    tallies.start("oidc-local-1", "school-2", platform_launch=False)
    tallies.add("oidc-local-1", 1)
    pending = open_reports(tallies)
    batch = build_batch(pending, client_id="demo-homework-helper", unit="homework_marked", now=datetime.now(UTC))
    events = {event["subject"]: EventEnvelope.model_validate(event) for event in batch}
    assert events["launch-42"].type == USAGE_EVENT_TYPE
    assert events["launch-42"].source == "/apps/demo-homework-helper"
    assert events["launch-42"].data == {
        "launch_id": "launch-42", "school_id": "school-1", "quantity": 5, "unit": "homework_marked",
    }  # fmt: skip
    assert "launch_id" not in events["oidc-local-1"].data  # no platform launch: reported without one
    assert len({event.id for event in events.values()}) == 2


async def test_a_failed_report_is_sent_again_with_the_same_ids(app: FastAPI, vendor_settings: Settings) -> None:
    """Against the real identity provider (token), and no metering service yet: the report fails and is kept."""
    registered = register_client(
        app, client_name="课后作业小助手", grant_types=["client_credentials"], scope="metering.report",
    )  # fmt: skip
    settings = replace(
        vendor_settings, platform_url="http://identity.test", metering_enabled=True,
        metering_client_id=registered.client_id, metering_client_secret=registered.secret or "",
    )  # fmt: skip
    async with vendor_client(settings, transport=httpx.ASGITransport(app=app)) as vendor:
        context = vendor.app.state.context
        context.usage.start("launch-42", "school-1")
        context.usage.add("launch-42", 4)
        first = await report_usage(context)
        assert "上报失败" in first and "HTTP 404" in first
        tally = context.usage.get("launch-42")
        event_id = tally.open_report_id
        assert event_id and tally.open_report_quantity == 4 and tally.reported_units == 0

        context.usage.add("launch-42", 1)  # more work meanwhile goes into the next report, not this one
        second = await report_usage(context)
        assert "上报失败" in second
        assert tally.open_report_id == event_id and tally.open_report_quantity == 4
