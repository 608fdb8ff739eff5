"""Submitting for review: the security self-assessment (a PDF) is required; the city learns what changed."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from contracts.events.appstore import AppVersionSubmittedV1
from kit.natsserver import NatsServer
from kit.testing import TestCity

from .store_factories import (
    PDF,
    StoreApp,
    add_version,
    attach_pdf,
    create_app,
    manifest,
    nats_events,
    outbox_events,
    problem_fields,
    publish_app,
    register_vendor,
    scope_request,
    submit,
)


async def test_submitting_needs_the_security_self_assessment(
    client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    vendor_id = await register_vendor(client, city)
    app = await create_app(client, city, vendor_id)
    path = f"/apps/{app.app_id}/versions/{app.version_id}"
    missing = await client.post(f"{path}/submit", headers=city.token("developer"))
    assert missing.status_code == 422 and problem_fields(missing) == ["security_assessment"]

    uploaded = await attach_pdf(client, city, app.app_id, app.version_id)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["size_bytes"] == len(PDF)
    submitted = await client.post(f"{path}/submit", headers=city.token("developer"))
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    assert submitted.json()["security_assessment"]["filename"] == "安全自评估报告.pdf"

    downloaded = await client.get(f"{path}/security-assessment", headers=city.token("developer"))
    assert downloaded.status_code == 200 and downloaded.content == PDF
    assert downloaded.headers["content-type"] == "application/pdf"
    other = await client.get(f"{path}/security-assessment", headers=city.token("other_developer"))
    assert other.status_code == 403

    expected = {"app_id": app.app_id, "version_id": app.version_id, "app_version": "1.0.0", "vendor_id": vendor_id,
                "needs_regrant": False}  # fmt: skip
    assert outbox_events(city.database, AppVersionSubmittedV1.event_type()) == [expected]
    published = await nats_events(nats_server.url, AppVersionSubmittedV1.subject(), expected=1)
    assert [event["data"] for event in published] == [expected]

    again = await client.post(f"{path}/submit", headers=city.token("developer"))
    assert again.status_code == 409


async def test_only_pdfs_within_the_size_limit_are_accepted(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    vendor_id = await register_vendor(client, city)
    store_app = await create_app(client, city, vendor_id)
    not_pdf = await attach_pdf(client, city, store_app.app_id, store_app.version_id,
                               content=b"PK\x03\x04 a zip pretending to be a pdf")  # fmt: skip
    assert not_pdf.status_code == 415 and "PDF" in not_pdf.json()["detail"]
    app.state.settings = app.state.settings.model_copy(update={"attachment_max_bytes": 1024})
    too_big = await attach_pdf(client, city, store_app.app_id, store_app.version_id, content=PDF + b"0" * 2048)
    assert too_big.status_code == 413
    other = await attach_pdf(client, city, store_app.app_id, store_app.version_id, developer="other_developer")
    assert other.status_code == 403


async def test_one_version_in_review_at_a_time(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    app = await create_app(client, city, vendor_id)
    await submit(client, city, app.app_id, app.version_id)
    second = await add_version(client, city, app, manifest(version="1.1.0"))
    await attach_pdf(client, city, app.app_id, second)
    response = await client.post(f"/apps/{app.app_id}/versions/{second}/submit", headers=city.token("developer"))
    assert response.status_code == 409 and response.json()["version_id"] == app.version_id


async def test_a_version_asking_for_more_scopes_or_a_new_price_is_flagged(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app: StoreApp = await publish_app(client, city)
    document = manifest(
        version="1.1.0",
        scopes=[
            scope_request("openid", "识别登录的教师和学生身份"),
            scope_request("roster.students.read", "生成每个学生的口算练习和错题本"),
        ],
        pricing={"unit": "monthly_active_user", "unit_price_fen": 100},
    )
    version_id = await add_version(client, city, app, document)
    draft = (await client.get(f"/apps/{app.app_id}/versions/{version_id}", headers=city.token("developer"))).json()
    assert draft["changes"]["needs_regrant"] is True
    submitted = await submit(client, city, app.app_id, version_id)
    assert submitted["needs_regrant"] is True and submitted["price_changed"] is True
    changes = submitted["changes"]
    assert [s["scope"] for s in changes["added_scopes"]] == ["roster.students.read"]
    assert changes["added_scopes"][0]["purpose_zh"] == "生成每个学生的口算练习和错题本"
    assert [s["scope"] for s in changes["removed_scopes"]] == ["roster.read"]
    assert changes["price_change"]["before"]["unit"] == "launch"
    assert changes["price_change"]["after"] == {
        "unit": "monthly_active_user", "unit_label": "按月活跃用户", "unit_price_fen": 100,
        "monthly_cap_fen_per_school": None,
    }  # fmt: skip
    assert outbox_events(city.database, AppVersionSubmittedV1.event_type())[-1]["needs_regrant"] is True


async def test_same_scopes_and_price_need_no_regrant(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    version_id = await add_version(client, city, app, manifest(version="1.0.1"))
    submitted = await submit(client, city, app.app_id, version_id)
    assert submitted["needs_regrant"] is False and submitted["price_changed"] is False
