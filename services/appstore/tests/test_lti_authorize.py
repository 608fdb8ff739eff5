"""The LTI tool's OIDC authentication request (/lti/authorize): a one-time launch becomes a signed id_token with
the LTI claims, auto-posted to the tool; replayed, expired or malformed requests are refused clearly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet

from appstore.config import AppStoreSettings
from appstore.launch.models import Launch
from appstore.subjects import user_pseudonym
from appstore.testing_launch import (
    TOOL,
    ListedApp,
    add_class,
    add_pupil,
    auth_request,
    form_fields,
    install,
    launched_events,
    listed_app,
    lti_launch,
    manifest,
    start,
)
from kit.natsserver import NatsServer
from kit.testing import TestCity

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
REDIRECT = f"{TOOL}/lti/launch"


async def verified(client: httpx.AsyncClient, id_token: str) -> dict[str, Any]:
    jwks = (await client.get("/lti/jwks")).json()
    assert all(key["kty"] == "RSA" and "d" not in key and key["kid"] for key in jwks["keys"])
    claims: dict[str, Any] = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    return claims


def setup_tool(app: FastAPI, city: TestCity, *, scopes: str = "openid") -> tuple[ListedApp, str, str]:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(), scopes=tuple(scopes.split())))
    installation = install(app.state.database, city, quiz, city.school_a1, scopes=scopes)
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    return quiz, installation, class_id


async def test_a_completed_launch_gives_the_tool_a_signed_id_token_with_the_lti_claims(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, nats_server: NatsServer
) -> None:
    quiz, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)

    page = await client.get("/lti/authorize", params=auth_request(launch))

    action, fields = form_fields(page)
    assert action == REDIRECT and fields["state"] == "state-abc"
    assert page.headers["cache-control"] == "no-store"
    assert "form-action https://tool.example.com" in page.headers["content-security-policy"]
    claims = await verified(client, fields["id_token"])
    teacher = city.people["a1_teacher"]
    assert claims["iss"] == settings.platform_base_url
    assert claims["aud"] == quiz.client_id and claims["azp"] == quiz.client_id
    assert claims["sub"] == user_pseudonym(settings.pairwise_salt.get_secret_value(), quiz.id, teacher.id)
    assert claims["nonce"] == "nonce-xyz" and claims["exp"] - claims["iat"] == 300
    assert claims[LTI + "message_type"] == "LtiResourceLinkRequest"
    assert claims[LTI + "version"] == "1.3.0"
    assert claims[LTI + "deployment_id"] == installation
    assert claims[LTI + "target_link_uri"] == REDIRECT
    assert claims[LTI + "resource_link"]["id"]
    assert "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor" in claims[LTI + "roles"]
    assert claims[LTI + "context"] == {
        "id": class_id,
        "label": "五年级2班",
        "title": "春晓第一小学五年级2班",
        "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseSection"],
    }
    assert claims[NRPS] == {
        "context_memberships_url": (
            f"{settings.platform_base_url}/api/appstore/lti/nrps/{installation}/contexts/{class_id}/memberships"
        ),
        "service_versions": ["2.0"],
    }
    assert claims[LTI + "tool_platform"]["guid"] and claims[LTI + "launch_presentation"]["locale"] == "zh-CN"
    assert "name" not in claims  # the school did not grant profile
    [event] = await launched_events(app, nats_server.url)
    assert event["launch_id"] == launch["launch_id"] and event["kind"] == "lti_1p3"
    assert event["class_id"] == class_id and event["user_pseudonym"] == claims["sub"]


async def test_the_name_is_released_only_when_the_school_granted_profile(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    _, installation, class_id = setup_tool(app, city, scopes="openid profile")
    add_pupil(city, "pupil", "刘小明", city.school_a1, class_id)
    launch = await start(client, city, "pupil", installation)

    _, fields = form_fields(await client.post("/lti/authorize", data=auth_request(launch)))

    claims = await verified(client, fields["id_token"])
    assert claims["name"] == "刘小明"
    assert "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner" in claims[LTI + "roles"]
    assert claims[LTI + "context"]["id"] == class_id


async def test_a_replayed_message_hint_is_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    _, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)
    first = await client.get("/lti/authorize", params=auth_request(launch))
    assert "id_token" in form_fields(first)[1]

    again = await client.get("/lti/authorize", params=auth_request(launch, nonce="another", state="s2"))

    action, fields = form_fields(again)
    assert action == REDIRECT and "id_token" not in fields
    assert fields["error"] == "invalid_request" and fields["state"] == "s2"
    assert "已使用过" in fields["error_description"] and "already used" in fields["error_description"]


async def test_an_expired_launch_is_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    _, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)
    with app.state.database.session() as session:
        row = session.get(Launch, launch["launch_id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)

    _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch)))

    assert fields["error"] == "invalid_request" and "expired" in fields["error_description"]


async def test_malformed_requests_get_the_oidc_error_at_the_tool(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    _, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)
    cases = {
        "invalid_scope": {"scope": "profile"},
        "unsupported_response_type": {"response_type": "code"},
        "invalid_request": {"response_mode": "query"},
    }
    for error, override in cases.items():
        _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch, **override)))
        assert fields["error"] == error, (override, fields)
    for override in ({"prompt": "login"}, {"nonce": ""}, {"login_hint": "guess"}, {"lti_message_hint": "guess"}):
        _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch, **override)))
        assert fields["error"] == "invalid_request", (override, fields)
    # None of these used the launch up: the well-formed request still completes it.
    _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch)))
    assert "id_token" in fields


async def test_an_unknown_client_or_redirect_uri_gets_a_problem_not_a_redirect(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    _, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)

    stranger = await client.get("/lti/authorize", params=auth_request(launch, client_id="app-unknown"))
    elsewhere = await client.get("/lti/authorize", params=auth_request(launch, redirect_uri="https://evil.example/x"))

    for response in (stranger, elsewhere):
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("appstore/lti-request-refused")
    assert "redirect_uris" in elsewhere.json()["detail"]


async def test_another_tools_client_cannot_use_the_launch(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    _, installation, class_id = setup_tool(app, city)
    other = listed_app(app.state.database, manifest(launch=lti_launch()))
    launch = await start(client, city, "a1_teacher", installation, class_id)

    _, fields = form_fields(await client.get("/lti/authorize", params=auth_request(launch, client_id=other.client_id)))

    assert fields["error"] == "invalid_request"


async def test_two_requests_racing_with_the_same_hints_get_one_id_token(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    _, installation, class_id = setup_tool(app, city)
    launch = await start(client, city, "a1_teacher", installation, class_id)

    pages = await asyncio.gather(*(client.get("/lti/authorize", params=auth_request(launch)) for _ in range(2)))

    outcomes = sorted(
        "id_token" if "id_token" in form_fields(page)[1] else form_fields(page)[1]["error"] for page in pages
    )
    assert outcomes == ["id_token", "invalid_request"]
