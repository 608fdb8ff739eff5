"""A tool exchanges a client assertion signed with its key for an LTI service token (/lti/token); the key comes
from the JWKS its manifest names, served here by a real local HTTP server."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import RSAKey

from appstore.config import AppStoreSettings
from appstore.launch.errors import LtiInvalidClient
from appstore.launch.tokens import ToolKeySets
from appstore.testing_launch import (
    NRPS_SCOPE,
    ListedApp,
    ToolKeys,
    assertion,
    audience,
    listed_app,
    lti_launch,
    manifest,
    token_request,
    tool_keys,
)
from kit.testing import TestCity

__all__ = ["tool_keys"]


def tool(app: FastAPI, jwks_url: str) -> ListedApp:
    return listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url)))


async def test_a_signed_assertion_buys_a_short_lived_service_token(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = tool(app, jwks_url)

    response = await client.post(
        "/lti/token",
        data=token_request(assertion(keys.published[0], quiz.client_id, audience(settings)), scope=f"{NRPS_SCOPE} x"),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == NRPS_SCOPE and 0 < body["expires_in"] <= 3600
    assert len(body["access_token"]) >= 32 and response.headers["cache-control"] == "no-store"


async def test_a_reused_jti_is_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = tool(app, jwks_url)
    signed = assertion(keys.published[0], quiz.client_id, audience(settings))

    first = await client.post("/lti/token", data=token_request(signed))
    replay = await client.post("/lti/token", data=token_request(signed))

    assert first.status_code == 200
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client" and "jti" in replay.json()["detail"]


async def test_assertions_that_do_not_prove_the_tool_are_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = tool(app, jwks_url)
    mine = keys.published[0]
    stranger = RSAKey.generate_key(2048, parameters={"kid": "tool-key-1"})
    now = int(time.time())
    refused = {
        "signed by another key": assertion(stranger, quiz.client_id, audience(settings)),
        "wrong audience": assertion(mine, quiz.client_id, "https://elsewhere.example/token"),
        "sub is not the client": assertion(mine, quiz.client_id, audience(settings), sub="someone"),
        "expired": assertion(mine, quiz.client_id, audience(settings), iat=now - 600, exp=now - 120),
        "no jti": assertion(mine, quiz.client_id, audience(settings), jti=""),
        "unknown client": assertion(mine, "app-unknown", audience(settings)),
        "not a jwt": "not-a-jwt",
    }
    for reason, signed in refused.items():
        response = await client.post("/lti/token", data=token_request(signed))
        assert response.status_code == 401, (reason, response.text)
        assert response.json()["error"] == "invalid_client", reason
        assert response.headers["content-type"] == "application/problem+json"


async def test_bad_input_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = tool(app, jwks_url)

    def signed() -> str:
        return assertion(keys.published[0], quiz.client_id, audience(settings))

    grant = await client.post("/lti/token", data=token_request(signed(), grant_type="password"))
    kind = await client.post("/lti/token", data=token_request(signed(), client_assertion_type="basic"))
    scope = await client.post("/lti/token", data=token_request(signed(), scope="roster.read"))

    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    assert (kind.status_code, kind.json()["error"]) == (400, "invalid_request")
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")


async def test_a_new_key_is_fetched_when_an_assertion_names_an_unknown_kid(
    app: FastAPI, client: httpx.AsyncClient, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = tool(app, jwks_url)
    assert (
        await client.post(
            "/lti/token", data=token_request(assertion(keys.published[0], quiz.client_id, audience(settings)))
        )
    ).status_code == 200
    assert (
        await client.post(
            "/lti/token", data=token_request(assertion(keys.published[0], quiz.client_id, audience(settings)))
        )
    ).status_code == 200
    assert keys.fetches == 1  # cached

    rotated = RSAKey.generate_key(2048, parameters={"kid": "tool-key-2"})
    keys.published.append(rotated)
    app.state.lti_tool_key_sets._min_refetch = 0  # the test does not wait out the refetch pause

    response = await client.post(
        "/lti/token", data=token_request(assertion(rotated, quiz.client_id, audience(settings)))
    )

    assert response.status_code == 200, response.text
    assert keys.fetches == 2


def test_a_jwks_url_on_a_private_address_is_not_fetched_in_production() -> None:
    with pytest.raises(LtiInvalidClient) as refused:
        ToolKeySets().key_set("https://127.0.0.1/jwks", kid=None, production=True)
    assert "jwks_url" in str(refused.value.detail)
