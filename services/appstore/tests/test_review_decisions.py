"""City reviewers work the queue, open a version, and approve (publishing it), reject or ask for changes."""

from __future__ import annotations

import httpx
from sqlmodel import select

from appstore.review.models import ReviewDecision
from contracts.events.appstore import AppPublishedV1, AppVersionReviewedV1
from kit.audit import AuditEntry
from kit.natsserver import NatsServer
from kit.testing import TestCity

from .store_factories import (
    ALL_TRUE,
    PDF,
    add_version,
    decide,
    manifest,
    nats_events,
    outbox_events,
    problem_fields,
    publish_app,
    register_vendor,
    scope_request,
    submit,
    submit_app,
)


async def test_the_queue_is_for_city_reviewers_only(client: httpx.AsyncClient, city: TestCity) -> None:
    await submit_app(client, city)
    assert (await client.get("/review/queue")).status_code == 401
    for person in ("district_a_admin", "a1_admin", "developer"):
        assert (await client.get("/review/queue", headers=city.token(person))).status_code == 403, person
    no_scope = await client.get("/review/queue", headers=city.token("city_admin", "apps.read"))
    assert no_scope.status_code == 403


async def test_the_queue_lists_oldest_first_with_what_changed(client: httpx.AsyncClient, city: TestCity) -> None:
    first = await submit_app(client, city, manifest(name={"zh-CN": "先提交的应用"}))
    listed = await publish_app(client, city, manifest(name={"zh-CN": "已上架的应用"}), vendor_id=first.vendor_id)
    more = manifest(name={"zh-CN": "已上架的应用"}, version="2.0.0",
                    scopes=[scope_request("openid", "识别登录的教师和学生身份"),
                            scope_request("roster.read", "按班级布置口算练习"),
                            scope_request("roster.students.read", "为每个学生生成错题本")],
                    pricing={"unit": "launch", "unit_price_fen": 8})  # fmt: skip
    second_version = await add_version(client, city, listed, more)
    await submit(client, city, listed.app_id, second_version)

    queue = (await client.get("/review/queue", headers=city.token("city_admin"))).json()
    assert queue["total"] == 2
    assert [item["version_id"] for item in queue["items"]] == [first.version_id, second_version]
    assert queue["items"][0]["vendor"]["education_app_filing"] == "教APP备3502001号"
    assert queue["items"][0]["changes"]["published_version"] is None
    changes = queue["items"][1]["changes"]
    assert changes["published_version"] == "1.0.0" and changes["needs_regrant"] is True
    assert changes["added_scopes"] == [
        {"scope": "roster.students.read", "purpose_zh": "为每个学生生成错题本",
         "description_zh": changes["added_scopes"][0]["description_zh"]},
    ]  # fmt: skip
    assert changes["price_change"]["before"]["unit_price_fen"] == 5
    assert changes["price_change"]["after"]["unit_price_fen"] == 8


async def test_opening_a_version_shows_manifest_attachment_and_filings(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app = await submit_app(client, city)
    opened = await client.get(f"/review/versions/{app.version_id}", headers=city.token("city_admin"))
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["manifest"]["name"]["zh-CN"] == "口算小达人"
    assert body["vendor"]["icp_filing"] == "闽ICP备12345678号-1"
    assert body["security_assessment"]["size_bytes"] == len(PDF)
    download = await client.get(body["security_assessment_url"], headers=city.token("city_admin"))
    assert download.status_code == 200 and download.content == PDF
    assert (await client.get(f"/review/versions/{app.version_id}", headers=city.token("developer"))).status_code == 403
    assert (await client.get("/review/versions/nope", headers=city.token("city_admin"))).status_code == 404
    draft = await add_version(client, city, app, manifest(version="1.1.0"))
    assert (await client.get(f"/review/versions/{draft}", headers=city.token("city_admin"))).status_code == 404


async def test_approval_needs_the_whole_checklist_and_rejection_needs_reasons(
    client: httpx.AsyncClient, city: TestCity
) -> None:
    app = await submit_app(client, city)
    partial = await decide(client, city, app.version_id, checklist={**ALL_TRUE, "filings_valid": False,
                                                                    "content_appropriate": False})  # fmt: skip
    assert partial.status_code == 422
    assert problem_fields(partial) == ["checklist.filings_valid", "checklist.content_appropriate"]
    assert "备案信息有效" in partial.json()["detail"]
    for decision in ("rejected", "changes_requested"):
        response = await decide(client, city, app.version_id, decision, reasons=["  "])
        assert response.status_code == 422 and problem_fields(response) == ["reasons"]
    unknown = await decide(client, city, app.version_id, "maybe")
    assert unknown.status_code == 422
    assert (await decide(client, city, app.version_id, reviewer="a1_admin")).status_code == 403


async def test_approval_publishes_and_supersedes(
    client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    app = await submit_app(client, city)
    approved = await decide(client, city, app.version_id)
    assert approved.status_code == 201, approved.text
    assert approved.json()["version_status"] == "published" and approved.json()["app_status"] == "listed"
    second = await add_version(
        client, city, app, manifest(version="1.1.0", pricing={"unit": "minute", "unit_price_fen": 2})
    )
    await submit(client, city, app.app_id, second)
    assert (await decide(client, city, second)).status_code == 201

    read = (await client.get(f"/apps/{app.app_id}", headers=city.token("developer"))).json()
    assert read["published_version_id"] == second
    assert [(v["version"], v["status"]) for v in read["versions"]] == [("1.0.0", "superseded"), ("1.1.0", "published")]
    assert (await decide(client, city, app.version_id)).status_code == 409  # decided versions are not decided again

    published = outbox_events(city.database, AppPublishedV1.event_type())
    assert [(event["version_id"], event["pricing_unit"], event["unit_price_fen"]) for event in published] == [
        (app.version_id, "launch", 5), (second, "minute", 2),
    ]  # fmt: skip
    assert published[0]["client_id"] == app.client_id and published[0]["scopes"] == ["openid", "roster.read"]
    on_nats = await nats_events(nats_server.url, AppPublishedV1.subject(), expected=2)
    assert [event["data"]["version_id"] for event in on_nats] == [app.version_id, second]
    reviewed = await nats_events(nats_server.url, AppVersionReviewedV1.subject(), expected=2)
    assert {event["data"]["decision"] for event in reviewed} == {"approved"}


async def test_the_vendor_reads_rejections_and_their_reasons(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await submit_app(client, city)
    reasons = ["隐私政策未说明数据保存期限", "roster.read 的用途描述过于笼统"]
    response = await decide(client, city, app.version_id, "changes_requested", reasons=reasons,
                            checklist={**ALL_TRUE, "privacy_purposes_adequate": False})  # fmt: skip
    assert response.status_code == 201
    version = (await client.get(f"/apps/{app.app_id}/versions/{app.version_id}",
                                headers=city.token("developer"))).json()  # fmt: skip
    assert version["status"] == "changes_requested"
    assert [(d["decision"], d["reasons"]) for d in version["decisions"]] == [("changes_requested", reasons)]
    assert version["decisions"][0]["checklist"]["privacy_purposes_adequate"] is False
    assert (await client.get(f"/apps/{app.app_id}", headers=city.token("developer"))).json()["status"] == "draft"

    with city.database.read_session() as session:
        row = session.exec(select(ReviewDecision)).one()
        assert row.reviewer_id == city.people["city_admin"].id
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "review.changes_requested")).one()
        assert entry.actor_id == city.people["city_admin"].id and entry.target_id == app.version_id
    events = outbox_events(city.database, AppVersionReviewedV1.event_type())
    assert [(e["decision"], e["reasons"]) for e in events] == [("changes_requested", reasons)]
    assert outbox_events(city.database, AppPublishedV1.event_type()) == []

    # The vendor answers with a new version, which goes through review again.
    fixed = await add_version(client, city, app, manifest(version="1.0.1"))
    await submit(client, city, app.app_id, fixed)
    assert (await decide(client, city, fixed, "rejected", reasons=["内容不适合低年级学生"])).status_code == 201


async def test_another_vendors_decisions_stay_private(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    app = await submit_app(client, city, vendor_id=vendor_id)
    await decide(client, city, app.version_id, "rejected", reasons=["理由"])
    path = f"/apps/{app.app_id}/versions/{app.version_id}"
    assert (await client.get(path, headers=city.token("other_developer"))).status_code == 403
