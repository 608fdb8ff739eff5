"""A school administrator installs a listed app: the deployment, the app's client at identity, the event, the audit."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from appstore.installations.models import Installation
from appstore.subjects import sector_identifier
from appstore.testing_identity import IdentityServer
from kit.audit import AuditEntry
from kit.natsserver import NatsServer
from kit.outbox import OutboxEvent
from kit.testing import TestCity, live_server

from .installations_factories import (
    add_class,
    app_database,
    appstore_events,
    count,
    identity_server,
    listed_app,
    settings,
    vendor,
)

__all__ = ["identity_server", "settings"]

SCHOOL_ADMIN = "apps.read apps.install"
GRANTED = "edu.appstore.installation.granted.v1"


def install_path(city: TestCity) -> str:
    return f"/schools/{city.school_a1}/installations"


async def test_anonymous_callers_are_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    listed = listed_app(app_database(app), vendor(app_database(app), city, "developer"))
    response = await client.post(install_path(city), json={"app_id": listed.app_id})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_admin_of_another_school_cannot_install(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    response = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("b1_admin", SCHOOL_ADMIN)
    )
    assert response.status_code == 403
    teacher = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_teacher", SCHOOL_ADMIN)
    )
    assert teacher.status_code == 403
    without_scope = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_admin", "apps.read")
    )
    assert without_scope.status_code == 403
    assert without_scope.json()["required_scope"] == "apps.install"
    assert count(database, Installation) == 0


async def test_bad_grants_name_each_field_to_fix(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    other_school_class = add_class(database, city.school_b1, grade="05", name="五年级1班")
    response = await client.post(
        install_path(city),
        json={
            "app_id": listed.app_id,
            "scopes": ["roster.read", "roster.students.read"],
            "class_ids": [other_school_class],
        },
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )
    assert response.status_code == 422
    fields = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert set(fields) == {"scopes.1", "scopes", "class_ids.0"}
    assert "roster.students.read" in fields["scopes.1"]
    assert "openid" in fields["scopes"]
    bad_grade = await client.post(
        install_path(city), json={"app_id": listed.app_id, "grades": ["13"]},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert bad_grade.status_code == 422
    unknown_app = await client.post(
        install_path(city), json={"app_id": "no-such-app"}, headers=city.token("a1_admin", SCHOOL_ADMIN)
    )
    assert unknown_app.status_code == 422
    assert unknown_app.json()["errors"][0]["field"] == "app_id"
    unknown_school = await client.post(
        "/schools/no-such-school/installations", json={"app_id": listed.app_id},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert unknown_school.status_code == 404
    assert count(database, Installation) == 0


async def test_only_listed_apps_can_be_installed(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    database = app_database(app)
    vendor_id = vendor(database, city, "developer")
    for listed in (listed_app(database, vendor_id, status="suspended"), listed_app(database, vendor_id, publish=False)):
        response = await client.post(
            install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_admin", SCHOOL_ADMIN)
        )
        assert response.status_code == 409, response.text
        assert response.json()["type"].endswith("appstore/app-not-installable")


async def test_installing_registers_the_client_emits_the_grant_and_audits(
    app: FastAPI,
    client: httpx.AsyncClient,
    city: TestCity,
    identity_server: IdentityServer,
    nats_server: NatsServer,
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    class_id = add_class(database, city.school_a1, grade="05", name="五年级1班")
    response = await client.post(
        install_path(city),
        json={"app_id": listed.app_id, "grades": ["05"], "class_ids": [class_id]},
        headers=city.token("a1_admin", SCHOOL_ADMIN),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "active"
    assert body["client_id"] == listed.client_id
    assert [scope["scope"] for scope in body["scopes"]] == ["openid", "roster.read"]
    roster = body["scopes"][1]
    assert roster["purpose_zh"] == "按班级布置作业，需要读取班级和任课教师"
    assert {field["id"] for field in roster["personal_fields"]} == {"class_membership", "name"}
    assert {field["label_zh"] for field in body["personal_fields"]} >= {"姓名", "所在班级"}
    assert body["grades"] == ["05"] and body["class_ids"] == [class_id]
    assert body["needs_regrant"] is False

    registered = identity_server.client(listed.client_id)
    assert registered is not None
    assert registered["scope"] == "openid roster.read"
    assert registered["sector_identifier"] == sector_identifier(listed.app_id)
    assert registered["subject_type"] == "pairwise"
    assert registered["app_id"] == listed.app_id
    assert registered["first_party"] is False
    assert "https://vendor.example.cn/callback" in registered["redirect_uris"]

    [event] = await appstore_events(app, nats_server.url, GRANTED)
    assert event["installation_id"] == body["id"]
    assert event["school_id"] == city.school_a1
    assert event["client_id"] == listed.client_id
    assert event["scopes"] == ["openid", "roster.read"]
    assert event["grades"] == ["05"] and event["class_ids"] == [class_id]
    assert event["version_id"] == listed.version_id

    with database.session() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "appstore.installation_created")).one()
        assert entry.actor_id == city.people["a1_admin"].id
        assert entry.target_id == body["id"]


async def test_installing_again_while_active_is_a_conflict_naming_the_installation(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    first = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_admin", SCHOOL_ADMIN)
    )
    assert first.status_code == 201
    again = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("district_a_admin", SCHOOL_ADMIN)
    )
    assert again.status_code == 409
    assert again.json()["installation_id"] == first.json()["id"]
    assert count(database, Installation) == 1


async def test_a_district_admin_installs_for_a_school_of_the_district(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"), launch="lti")
    response = await client.post(
        install_path(city), json={"app_id": listed.app_id}, headers=city.token("district_a_admin", SCHOOL_ADMIN)
    )
    assert response.status_code == 201, response.text
    other_district = await client.post(
        f"/schools/{city.school_b1}/installations", json={"app_id": listed.app_id},
        headers=city.token("district_a_admin", SCHOOL_ADMIN),
    )  # fmt: skip
    assert other_district.status_code == 403


async def test_nothing_is_written_when_identity_is_down(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, identity_server: IdentityServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    identity = app.state.identity_client
    # A port nothing listens on: the connection is refused, as when identity is down.
    app.state.identity_client = type(identity)(
        app.state.settings.model_copy(update={"identity_internal_url": "http://127.0.0.1:9"})
    )
    try:
        response = await client.post(
            install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_admin", SCHOOL_ADMIN)
        )
    finally:
        app.state.identity_client.close()
        app.state.identity_client = identity
    assert response.status_code == 503
    assert "身份服务暂不可用" in response.json()["detail"]
    assert count(database, Installation) == 0
    with database.session() as session:
        assert session.exec(select(sa.func.count()).select_from(OutboxEvent)).one() == 0
    assert identity_server.client(listed.client_id) is None


async def test_a_slow_identity_is_a_retryable_503_not_a_500(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    slow = FastAPI()

    @slow.post("/oauth/token")
    async def token() -> dict[str, object]:
        await asyncio.sleep(2)
        return {"access_token": "never-used", "expires_in": 300}

    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    identity = app.state.identity_client
    with live_server(slow) as url:
        settings = app.state.settings.model_copy(update={"identity_internal_url": url, "identity_timeout_seconds": 0.2})
        app.state.identity_client = type(identity)(settings)
        try:
            response = await client.post(
                install_path(city), json={"app_id": listed.app_id}, headers=city.token("a1_admin", SCHOOL_ADMIN)
            )
        finally:
            app.state.identity_client.close()
            app.state.identity_client = identity
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert count(database, Installation) == 0


async def test_the_database_holds_one_active_installation_per_app_and_school(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    """Two administrators installing at the same moment both pass the check; the partial unique index decides."""
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))

    def row(status: str) -> Installation:
        return Installation(
            app_id=listed.app_id, school_id=city.school_a1, school_path=city.paths[city.school_a1],
            client_id=listed.client_id, version_id=listed.version_id, scopes="openid", installed_by="seed",
            status=status,
        )  # fmt: skip

    with database.session() as session:
        session.add_all([row("removed"), row("removed"), row("active")])
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(row("active"))
    assert count(database, Installation, status="active") == 1
