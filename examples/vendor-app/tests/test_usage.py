"""Usage units: counted per launch, shown, and reported as a CloudEvents batch with idempotency ids that stay
the same on every re-send; metering's answer per event closes the counted reports and keeps rejected ones open."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from contracts.api.metering import (
    CLOUDEVENTS_BATCH_MEDIA_TYPE,
    ReportBatchResult,
    ReportProblem,
    ReportResult,
    UsageReportEvent,
)
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


async def test_reporting_is_off_unless_enabled(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        context = vendor.app.state.context
        context.usage.start("launch-1", "school-1")
        context.usage.add("launch-1", 2)
        page = await vendor.post("/usage/report")
        assert "计量上报未开启" in page.text
        tally = context.usage.get("launch-1")
        assert tally.reported_units == 0 and tally.open_report_id is None


def test_the_batch_is_cloudevents_with_the_launch_school_and_quantity() -> None:
    tallies = UsageTally()
    tallies.start("launch-42", "school-1")
    tallies.add("launch-42", 4, at=datetime(2026, 10, 31, 15, 50, tzinfo=UTC))  # 23:50 on 31 October in Beijing
    tallies.add("launch-42", 1, at=datetime(2026, 10, 31, 15, 55, tzinfo=UTC))
    tallies.start("oidc-local-1", "school-2", platform_launch=False)
    tallies.add("oidc-local-1", 1)
    pending = open_reports(tallies)
    batch = build_batch(pending, client_id="demo-homework-helper", unit="homework_marked")
    events = {event["subject"]: EventEnvelope.model_validate(event) for event in batch}
    assert events["launch-42"].type == USAGE_EVENT_TYPE
    # Stamped with when the work was done, so a report sent in November still bills October's use in October.
    assert events["launch-42"].time == datetime(2026, 10, 31, 15, 55, tzinfo=UTC)
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
        worked_at = datetime(2026, 11, 20, 2, tzinfo=UTC)
        context.usage.add("launch-42", 4, at=worked_at)
        first = await report_usage(context)
        assert "上报失败" in first and "HTTP 404" in first
        tally = context.usage.get("launch-42")
        event_id = tally.open_report_id
        assert event_id and tally.open_report_quantity == 4 and tally.reported_units == 0

        context.usage.add("launch-42", 1)  # more work meanwhile goes into the next report, not this one
        second = await report_usage(context)
        assert "上报失败" in second
        assert tally.open_report_id == event_id and tally.open_report_quantity == 4
        [retry] = build_batch([tally], client_id="demo", unit="")
        assert (retry["id"], retry["data"]["quantity"], retry["time"]) == (event_id, 4, worked_at.isoformat())


def test_the_unit_is_left_out_unless_configured() -> None:
    tallies = UsageTally()
    tallies.start("launch-7", "school-1")
    tallies.add("launch-7", 2)
    [event] = build_batch(open_reports(tallies), client_id="demo", unit="")
    assert event["data"] == {"school_id": "school-1", "quantity": 2, "launch_id": "launch-7"}
    UsageReportEvent.model_validate(event)  # the form metering takes


class _Platform(httpx.AsyncBaseTransport):
    """Identity (tokens) for everything but the usage-report endpoint, which answers like metering: per event,
    accepted for school-1, held for school-2 (no launch), rejected for school-3 (unknown school)."""

    def __init__(self, identity: FastAPI) -> None:
        self.identity = httpx.ASGITransport(app=identity)
        self.batches: list[list[dict[str, object]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/metering/usage-reports":
            return await self.identity.handle_async_request(request)
        assert request.headers["content-type"] == CLOUDEVENTS_BATCH_MEDIA_TYPE
        batch = [UsageReportEvent.model_validate(event) for event in json.loads(request.content)]
        self.batches.append(json.loads(request.content))
        results = []
        for index, event in enumerate(batch):
            if event.data.school_id == "school-3":
                problem = ReportProblem(
                    type="https://errors.edu.example/metering/report-unknown-school", title="学校不存在",
                    detail="平台上没有编号为 school-3 的学校；No school has the id 'school-3'.",
                    pointer=f"/{index}/data/school_id",
                )  # fmt: skip
                results.append(ReportResult(index=index, id=event.id, outcome="rejected", problem=problem))
            elif event.data.school_id == "school-2":
                results.append(ReportResult(index=index, id=event.id, outcome="held", reason="no_launch_given"))
            else:
                results.append(ReportResult(index=index, id=event.id, outcome="accepted", usage_period="2026-11"))
        answer = ReportBatchResult(
            accepted=1, held=1, duplicates=0, rejected=1, results=results, received_at=datetime.now(UTC)
        )
        return httpx.Response(200, content=answer.model_dump_json(), headers={"content-type": "application/json"})


async def test_counted_reports_close_and_rejected_ones_stay_open(app: FastAPI, vendor_settings: Settings) -> None:
    registered = register_client(
        app, client_name="课后作业小助手", grant_types=["client_credentials"], scope="metering.report",
    )  # fmt: skip
    settings = replace(
        vendor_settings, platform_url="http://identity.test", metering_enabled=True,
        metering_client_id=registered.client_id, metering_client_secret=registered.secret or "",
    )  # fmt: skip
    platform = _Platform(app)
    async with vendor_client(settings, transport=platform) as vendor:
        context = vendor.app.state.context
        for launch, school in (("launch-1", "school-1"), ("launch-2", "school-2"), ("launch-3", "school-3")):
            context.usage.start(launch, school)
            context.usage.add(launch, 2)
        page = await vendor.post("/usage/report")
        assert "已上报 4 个计量单位" in page.text and "其中 2 个待市级审核" in page.text
        assert "launch-3" in page.text and "school-3" in page.text  # the problem is shown
        accepted, held, rejected = (context.usage.get(key) for key in ("launch-1", "launch-2", "launch-3"))
        assert (accepted.reported_units, accepted.open_report_id) == (2, None)
        assert (held.reported_units, held.open_report_id) == (2, None)
        assert rejected.reported_units == 0 and rejected.open_report_id is not None
        rejected_id = rejected.open_report_id

        await vendor.post("/usage/report")  # only the rejected one is sent again, with the same id
        assert [[event["id"] for event in batch] for batch in platform.batches[1:]] == [[rejected_id]]
        tally_page = await vendor.get("/usage")
        assert "No school has the id" in tally_page.text
