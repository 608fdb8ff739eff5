"""A user opens an app the school installed (POST /launches): who may, from which class, and what the app gets.

An OIDC app's launch is metered at once (AppLaunchedV1 on NATS) and sends the user to the app's login
initiation with the identity provider as issuer; an LTI tool's launch waits server-side for the tool's
authentication request and hands out only opaque one-time hints.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI
from sqlmodel import select

from appstore.config import AppStoreSettings
from appstore.launch.models import Launch
from appstore.subjects import user_pseudonym
from appstore.testing_launch import (
    TOOL,
    add_class,
    add_pupil,
    install,
    launched_events,
    listed_app,
    lti_launch,
    manifest,
    oidc_launch,
)
from kit.natsserver import NatsServer
from kit.testing import TestCity

READ = "apps.read"


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def test_anonymous_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/launches", json={"installation_id": "x"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_token_without_apps_read_is_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    quiz = listed_app(app.state.database, manifest(launch=oidc_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    response = await client.post(
        "/launches", json={"installation_id": installation}, headers=city.token("a1_teacher", "apps.install")
    )
    assert response.status_code == 403
    assert response.json()["required_scope"] == READ


async def test_bad_input_names_the_field(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    headers = city.token("a1_teacher", READ)
    missing = await client.post("/launches", json={}, headers=headers)
    assert missing.status_code == 422
    assert [error["field"] for error in missing.json()["errors"]] == ["installation_id"]
    extra = await client.post("/launches", json={"installation_id": "x", "seat": 1}, headers=headers)
    assert extra.status_code == 422
    unknown = await client.post("/launches", json={"installation_id": "no-such-installation"}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "installation_id"


async def test_a_teacher_of_another_school_is_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    quiz = listed_app(app.state.database, manifest(launch=oidc_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    response = await client.post(
        "/launches", json={"installation_id": installation}, headers=city.token("b1_teacher", READ)
    )
    assert response.status_code == 403
    assert response.json()["type"].endswith("appstore/no-role-at-school")
    assert "教师、学生或学校管理员" in response.json()["detail"]


async def test_roles_above_the_school_or_without_a_role_there_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=oidc_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    city.add_person("a1_parent", kind="guardian", name="家长", org_id=city.school_a1, role="parent")
    for person in ("district_a_admin", "city_admin", "developer", "a1_parent"):
        response = await client.post(
            "/launches", json={"installation_id": installation}, headers=city.token(person, READ)
        )
        assert response.status_code == 403, person
    with app.state.database.session() as session:
        assert session.exec(select(Launch)).all() == []


async def test_an_oidc_launch_sends_the_user_to_the_apps_login_and_is_metered(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, nats_server: NatsServer
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=oidc_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    teacher = city.people["a1_teacher"]

    response = await client.post(
        "/launches", json={"installation_id": installation}, headers=city.token("a1_teacher", READ)
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "oidc" and body["expires_at"] is None
    assert body["url"].startswith(f"{TOOL}/login?")
    params = query(body["url"])
    assert params["iss"] == settings.token_issuer
    assert params["target_link_uri"] == f"{TOOL}/"
    assert params["login_hint"] == body["launch_id"]
    [event] = await launched_events(app, nats_server.url)
    assert event["launch_id"] == body["launch_id"]
    assert event["app_id"] == quiz.id and event["vendor_id"] == quiz.vendor_id
    assert event["installation_id"] == installation and event["school_id"] == city.school_a1
    assert event["kind"] == "oidc" and event["role"] == "teacher" and event["class_id"] is None
    assert event["user_pseudonym"] == user_pseudonym(settings.pairwise_salt.get_secret_value(), quiz.id, teacher.id)
    assert teacher.id not in str(event)  # the platform's person id never leaves in usage events


async def test_an_lti_launch_hands_the_tool_only_opaque_one_time_hints(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))

    response = await client.post(
        "/launches",
        json={"installation_id": installation, "class_id": class_id},
        headers=city.token("a1_teacher", READ),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "lti_1p3" and body["expires_at"]
    params = query(body["url"])
    assert body["url"].startswith(f"{TOOL}/lti/login?")
    assert params["iss"] == settings.platform_base_url
    assert params["client_id"] == quiz.client_id
    assert params["lti_deployment_id"] == installation
    assert params["target_link_uri"] == f"{TOOL}/lti/launch"
    assert len(params["login_hint"]) >= 24 and len(params["lti_message_hint"]) >= 32
    assert city.people["a1_teacher"].id not in body["url"] and class_id not in body["url"]
    with app.state.database.session() as session:
        launch = session.get(Launch, body["launch_id"])
        assert launch is not None and launch.used_at is None and launch.class_id == class_id
        assert launch.message_hint_hash != params["lti_message_hint"]  # only a digest is stored


async def test_a_pupil_launches_from_their_own_class(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    other_class = add_class(city, city.school_a1, "五年级3班", teachers=("a1_teacher2",))
    add_pupil(city, "pupil", "刘小明", city.school_a1, class_id)

    own = await client.post("/launches", json={"installation_id": installation}, headers=city.token("pupil", READ))
    assert own.status_code == 201, own.text
    with app.state.database.session() as session:
        launch = session.get(Launch, own.json()["launch_id"])
        assert launch is not None and launch.class_id == class_id and launch.role == "student"

    elsewhere = await client.post(
        "/launches", json={"installation_id": installation, "class_id": other_class}, headers=city.token("pupil", READ)
    )
    assert elsewhere.status_code == 403
    assert elsewhere.json()["errors"][0]["field"] == "class_id"


async def test_a_teacher_launches_only_from_a_class_they_teach(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch()))
    installation = install(app.state.database, city, quiz, city.school_a1)
    theirs = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    b1_class = add_class(city, city.school_b1, "三年级1班", teachers=("b1_teacher",))
    headers = city.token("a1_teacher2", READ)

    not_taught = await client.post(
        "/launches", json={"installation_id": installation, "class_id": theirs}, headers=headers
    )
    assert not_taught.status_code == 403
    other_school = await client.post(
        "/launches", json={"installation_id": installation, "class_id": b1_class}, headers=headers
    )
    assert other_school.status_code == 422
    assert other_school.json()["errors"][0]["field"] == "class_id"
    admin = await client.post(
        "/launches", json={"installation_id": installation, "class_id": theirs}, headers=city.token("a1_admin", READ)
    )
    assert admin.status_code == 201  # the school's administrator opens it for any class, as Administrator


async def test_an_app_opened_to_some_classes_only_is_refused_elsewhere(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch()))
    grade_five = add_class(city, city.school_a1, "五年级2班", grade="05", teachers=("a1_teacher",))
    grade_three = add_class(city, city.school_a1, "三年级1班", grade="03", teachers=("a1_teacher",))
    installation = install(app.state.database, city, quiz, city.school_a1, grades=["05"])
    headers = city.token("a1_teacher", READ)

    opened = await client.post(
        "/launches", json={"installation_id": installation, "class_id": grade_five}, headers=headers
    )
    closed = await client.post(
        "/launches", json={"installation_id": installation, "class_id": grade_three}, headers=headers
    )
    no_class = await client.post("/launches", json={"installation_id": installation}, headers=headers)

    assert opened.status_code == 201
    assert closed.status_code == 403 and closed.json()["type"].endswith("appstore/class-not-open")
    assert no_class.status_code == 403 and no_class.json()["type"].endswith("appstore/class-not-open")


async def test_an_uninstalled_or_suspended_app_does_not_open(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=oidc_launch()))
    removed = install(app.state.database, city, quiz, city.school_a1, status="removed")
    suspended = listed_app(app.state.database, manifest(launch=oidc_launch()), status="suspended")
    installed_suspended = install(app.state.database, city, suspended, city.school_a1)
    headers = city.token("a1_teacher", READ)

    for installation in (removed, installed_suspended):
        response = await client.post("/launches", json={"installation_id": installation}, headers=headers)
        assert response.status_code == 409, response.text
        assert response.json()["type"].endswith("appstore/app-not-available")
