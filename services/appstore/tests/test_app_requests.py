"""Teachers request apps for their school; the school's administrators approve (installing it) or decline."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlmodel import select

from appstore.installations.models import AppRequest, Installation
from appstore.testing_identity import IdentityServer
from kit.audit import AuditEntry
from kit.testing import TestCity

from .installations_factories import app_database, count, identity_server, listed_app, settings, vendor

__all__ = ["identity_server", "settings"]

TEACHER = "apps.read"
SCHOOL_ADMIN = "apps.read apps.install"
REASON = "数学课需要分层作业工具"


async def request(client: httpx.AsyncClient, city: TestCity, app_id: str, who: str = "a1_teacher") -> httpx.Response:
    return await client.post(
        f"/schools/{city.school_a1}/app-requests", json={"app_id": app_id, "reason": REASON},
        headers=city.token(who, TEACHER),
    )  # fmt: skip


async def test_anonymous_wrong_school_and_bad_input_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    path = f"/schools/{city.school_a1}/app-requests"
    assert (await client.post(path, json={"app_id": listed.app_id, "reason": REASON})).status_code == 401
    assert (await request(client, city, listed.app_id, who="b1_teacher")).status_code == 403
    assert (await client.get(path, headers=city.token("b1_admin", SCHOOL_ADMIN))).status_code == 403
    assert (await client.get(path, headers=city.token("a1_teacher", SCHOOL_ADMIN))).status_code == 403
    no_reason = await client.post(path, json={"app_id": listed.app_id}, headers=city.token("a1_teacher", TEACHER))
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"].endswith("reason")
    unlisted = listed_app(database, listed.vendor_id, status="retired")
    assert (await request(client, city, unlisted.app_id)).status_code == 409
    assert count(database, AppRequest) == 0


async def test_one_pending_request_per_teacher_and_app(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    first = await request(client, city, listed.app_id)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "pending" and body["reason"] == REASON and body["requested_by_name"] == "王老师"
    again = await request(client, city, listed.app_id)
    assert again.status_code == 409
    assert again.json()["request_id"] == body["id"]
    colleague = await request(client, city, listed.app_id, who="a1_teacher2")
    assert colleague.status_code == 201


async def test_approving_installs_the_app_and_the_teacher_sees_the_outcome(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, identity_server: IdentityServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    request_id = (await request(client, city, listed.app_id)).json()["id"]
    colleague_id = (await request(client, city, listed.app_id, who="a1_teacher2")).json()["id"]

    pending = await client.get(f"/schools/{city.school_a1}/app-requests", headers=city.token("a1_admin", SCHOOL_ADMIN))
    assert pending.status_code == 200
    assert {item["id"] for item in pending.json()} == {request_id, colleague_id}

    bad = await client.post(
        f"/schools/{city.school_a1}/app-requests/{request_id}/approve", json={"scopes": ["roster.read"]},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert bad.status_code == 422
    approved = await client.post(
        f"/schools/{city.school_a1}/app-requests/{request_id}/approve", json={"scopes": ["openid"], "note": "同意"},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert approved.status_code == 200, approved.text
    installation_id = approved.json()["installation_id"]
    assert approved.json()["status"] == "approved"
    with database.session() as session:
        installation = session.get(Installation, installation_id)
        assert installation is not None and installation.scopes == "openid"
    assert identity_server.client(listed.client_id) is not None

    # The colleague's request for the same app points at the same installation.
    colleague = await client.post(
        f"/schools/{city.school_a1}/app-requests/{colleague_id}/approve", json={},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert colleague.json()["installation_id"] == installation_id
    assert count(database, Installation) == 1

    twice = await client.post(
        f"/schools/{city.school_a1}/app-requests/{request_id}/decline", json={"note": "重复"},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert twice.status_code == 409

    mine = await client.get("/me/app-requests", headers=city.token("a1_teacher", TEACHER))
    [outcome] = mine.json()
    assert outcome["status"] == "approved" and outcome["decision_note"] == "同意"
    assert outcome["installation_id"] == installation_id


async def test_declining_records_the_note_the_teacher_sees(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    request_id = (await request(client, city, listed.app_id)).json()["id"]
    path = f"/schools/{city.school_a1}/app-requests/{request_id}/decline"
    assert (await client.post(path, json={}, headers=city.token("a1_admin", SCHOOL_ADMIN))).status_code == 422
    other_school = await client.post(
        f"/schools/{city.school_b1}/app-requests/{request_id}/decline", json={"note": "不需要"},
        headers=city.token("b1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert other_school.status_code == 404
    declined = await client.post(path, json={"note": "学校已有同类应用"}, headers=city.token("a1_admin", SCHOOL_ADMIN))
    assert declined.status_code == 200, declined.text
    assert count(database, Installation) == 0

    [outcome] = (await client.get("/me/app-requests", headers=city.token("a1_teacher", TEACHER))).json()
    assert outcome["status"] == "declined" and outcome["decision_note"] == "学校已有同类应用"
    assert (await client.get("/me/app-requests", headers=city.token("a1_teacher2", TEACHER))).json() == []
    decided = await client.get(
        f"/schools/{city.school_a1}/app-requests", params={"status": "declined"},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert [item["id"] for item in decided.json()] == [request_id]
    with database.session() as session:
        actions = set(session.exec(select(AuditEntry.action)).all())
    assert {"appstore.app_requested", "appstore.app_request_declined"} <= actions
