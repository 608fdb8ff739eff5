"""Browsers may call the API only from the web origins registered for an app (and the platform's own UIs)."""

from __future__ import annotations

import asyncio

import httpx

from gateway.installations import service as installations

from .conftest import GatewayFactory, RunningGateway

APP_ORIGIN = "https://math-practice.example.cn"
PORTAL_ORIGIN = "https://portal.edu-platform.test"
STRANGER_ORIGIN = "https://evil.example"


def register(gw: RunningGateway, origin: str) -> None:
    with gw.state.database.session() as session:
        installations.register_origin(session, client_id="vendor-app-client", origin=origin)
    asyncio.run(gw.proxy.installations.refresh())


def preflight(gw: RunningGateway, origin: str, path: str = "/api/standin/things/1") -> httpx.Response:
    return httpx.options(
        f"{gw.url}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def test_a_preflight_from_a_registered_origin_is_allowed_with_the_authorization_header(
    gateway: GatewayFactory,
) -> None:
    gw = gateway()
    register(gw, APP_ORIGIN)

    response = preflight(gw, APP_ORIGIN)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert {"authorization", "content-type"} <= listed(response.headers["access-control-allow-headers"])
    assert "get" in listed(response.headers["access-control-allow-methods"])
    assert "origin" in listed(response.headers["vary"])
    assert gw.stand_in.calls.get("things", 0) == 0


def test_a_preflight_from_an_origin_in_the_settings_is_allowed(gateway: GatewayFactory) -> None:
    gw = gateway(cors_extra_origins=[PORTAL_ORIGIN])

    response = preflight(gw, PORTAL_ORIGIN)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == PORTAL_ORIGIN


def test_a_preflight_from_an_unknown_origin_is_refused_without_cors_headers(gateway: GatewayFactory) -> None:
    gw = gateway()
    register(gw, APP_ORIGIN)

    response = preflight(gw, STRANGER_ORIGIN)
    # An origin is scheme, host and port: a look-alike of a registered one is a stranger too.
    look_alike = preflight(gw, APP_ORIGIN + ":8443")

    for refused in (response, look_alike):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "access-control-allow-origin" not in refused.headers
        assert "access-control-allow-headers" not in refused.headers


def test_a_call_from_a_registered_origin_may_read_the_answer_and_its_limit_headers(gateway: GatewayFactory) -> None:
    gw = gateway()
    register(gw, APP_ORIGIN)

    response = httpx.get(
        f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read") | {"Origin": APP_ORIGIN}
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "origin" in listed(response.headers["vary"])
    exposed = listed(response.headers["access-control-expose-headers"])
    assert {"x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"} <= exposed
    assert response.headers["x-request-id"]
    assert response.headers["ratelimit-remaining"]


def test_a_refusal_sent_to_a_registered_origin_is_readable_by_the_page(gateway: GatewayFactory) -> None:
    gw = gateway()
    register(gw, APP_ORIGIN)

    response = httpx.get(f"{gw.url}/api/standin/things/1", headers={"Origin": APP_ORIGIN})

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


def test_a_call_from_an_unknown_origin_carries_no_cors_headers(gateway: GatewayFactory) -> None:
    gw = gateway()
    register(gw, APP_ORIGIN)

    response = httpx.get(
        f"{gw.url}/api/standin/things/1", headers=gw.bearer(scopes="org.read") | {"Origin": STRANGER_ORIGIN}
    )

    # The gateway still answers (browsers enforce CORS), but without the headers that let the page read it.
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]
