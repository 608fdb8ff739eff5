"""The school sees its installed apps (what data, why, what a new version asks), re-grants and uninstalls them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
from fastapi import FastAPI

from appstore.installations import service
from appstore.installations.models import Installation
from appstore.testing_identity import IdentityServer
from kit.natsserver import NatsServer
from kit.testing import TestCity

from .installations_factories import (
    ListedApp,
    add_version,
    app_database,
    appstore_events,
    identity_server,
    listed_app,
    settings,
    vendor,
)

__all__ = ["identity_server", "settings"]

SCHOOL_ADMIN = "apps.read apps.install"
GRANTED = "edu.appstore.installation.granted.v1"
REMOVED = "edu.appstore.installation.removed.v1"
MORE_SCOPES = {
    "openid": "识别登录的教师和学生",
    "roster.read": "按班级布置作业，需要读取班级和任课教师",
    "roster.students.read": "按学生名单分发作业并记录每位学生的完成情况",
}


async def installed(client: httpx.AsyncClient, city: TestCity, listed: ListedApp, **grant: object) -> str:
    response = await client.post(
        f"/schools/{city.school_a1}/installations", json={"app_id": listed.app_id, **grant},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    installation_id: str = response.json()["id"]
    return installation_id


async def test_anonymous_and_other_schools_cannot_see_or_change_installations(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    installation_id = await installed(client, city, listed_app(database, vendor(database, city, "developer")))
    path = f"/schools/{city.school_a1}/installations"
    assert (await client.get(path)).status_code == 401
    other = city.token("b1_admin", SCHOOL_ADMIN)
    assert (await client.get(path, headers=other)).status_code == 403
    assert (await client.put(f"{path}/{installation_id}", json={}, headers=other)).status_code == 403
    assert (await client.delete(f"{path}/{installation_id}", headers=other)).status_code == 403
    # Another school's installation is not found through one's own school either.
    own = f"/schools/{city.school_b1}/installations/{installation_id}"
    assert (await client.delete(own, headers=other)).status_code == 404


async def test_the_list_says_what_data_and_why_and_what_a_new_version_asks(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    installation_id = await installed(client, city, listed, scopes=["openid"])
    add_version(database, listed.app_id, version="1.1.0", scopes=MORE_SCOPES)

    response = await client.get(
        f"/schools/{city.school_a1}/installations", headers=city.token("a1_admin", SCHOOL_ADMIN)
    )
    assert response.status_code == 200
    [item] = response.json()
    assert item["id"] == installation_id
    assert item["app_name"] == "作业小助手"
    assert item["app_version"] == "1.0.0"
    [openid] = item["scopes"]
    assert openid["scope"] == "openid" and openid["purpose_zh"] == "识别登录的教师和学生"
    assert item["needs_regrant"] is True
    missing = {scope["scope"]: scope for scope in item["missing_scopes"]}
    assert set(missing) == {"roster.read", "roster.students.read"}
    assert missing["roster.students.read"]["purpose_zh"] == "按学生名单分发作业并记录每位学生的完成情况"
    assert missing["roster.students.read"]["sensitive"] is True
    assert {field["id"] for field in missing["roster.students.read"]["personal_fields"]} >= {"student_number"}


async def test_regranting_moves_to_the_published_version_and_emits_the_grant(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, identity_server: IdentityServer, nats_server: NatsServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    installation_id = await installed(client, city, listed)
    new_version = add_version(database, listed.app_id, version="1.1.0", scopes=MORE_SCOPES)
    path = f"/schools/{city.school_a1}/installations/{installation_id}"

    bad = await client.put(path, json={"scopes": ["people.read"]}, headers=city.token("a1_admin", SCHOOL_ADMIN))
    assert bad.status_code == 422
    response = await client.put(path, json={"grades": ["04", "05"]}, headers=city.token("a1_admin", SCHOOL_ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["app_version"] == "1.1.0"
    assert [scope["scope"] for scope in body["scopes"]] == sorted(MORE_SCOPES)
    assert body["grades"] == ["04", "05"]
    assert body["needs_regrant"] is False

    events = await appstore_events(app, nats_server.url, GRANTED, expected=2)
    assert events[-1]["version_id"] == new_version
    assert events[-1]["scopes"] == sorted(MORE_SCOPES)
    registered = identity_server.client(listed.client_id)
    assert registered is not None and registered["scope"] == " ".join(sorted(MORE_SCOPES))


async def test_uninstalling_sets_the_deletion_date_and_emits_the_removal(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"), retention_days=45)
    installation_id = await installed(client, city, listed)
    path = f"/schools/{city.school_a1}/installations/{installation_id}"

    response = await client.delete(path, headers=city.token("a1_admin", SCHOOL_ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "removed"
    assert body["removal_reason"] == "uninstalled"
    assert date.fromisoformat(body["delete_data_by"]) == datetime.now(UTC).date() + timedelta(days=45)
    [event] = await appstore_events(app, nats_server.url, REMOVED)
    assert event["installation_id"] == installation_id
    assert event["reason"] == "uninstalled"
    assert event["delete_data_by"] == body["delete_data_by"]

    assert (await client.delete(path, headers=city.token("a1_admin", SCHOOL_ADMIN))).status_code == 409
    listed_now = await client.get(
        f"/schools/{city.school_a1}/installations", headers=city.token("a1_admin", SCHOOL_ADMIN)
    )
    assert listed_now.json() == []
    history = await client.get(
        f"/schools/{city.school_a1}/installations",
        params={"include_removed": "true"},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )
    assert [item["id"] for item in history.json()] == [installation_id]
    # Installing again after an uninstall is a new deployment.
    again = await installed(client, city, listed)
    assert again != installation_id


async def test_suspension_removes_every_installation_of_the_app(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, nats_server: NatsServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    first = await installed(client, city, listed)
    response = await client.post(
        f"/schools/{city.school_b1}/installations", json={"app_id": listed.app_id},
        headers=city.token("b1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert response.status_code == 201
    at = datetime.now(UTC)
    with database.session() as session:
        assert service.remove_all_for_app(session, app_id=listed.app_id, reason="app_suspended", at=at) == 2
    with database.session() as session:
        assert service.remove_all_for_app(session, app_id=listed.app_id, reason="app_suspended", at=at) == 0
        row = session.get(Installation, first)
        assert row is not None and row.status == "removed" and row.removal_reason == "app_suspended"
    events = await appstore_events(app, nats_server.url, REMOVED, expected=2)
    assert {event["school_id"] for event in events} == {city.school_a1, city.school_b1}
    assert {event["reason"] for event in events} == {"app_suspended"}
