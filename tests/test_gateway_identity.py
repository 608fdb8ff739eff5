"""End to end through the gateway: the real identity provider behind the real gateway, over real NATS.

A vendor's app gets a token from the provider through the gateway, calls the API with it, is held
to its scopes, and is refused as soon as the token is revoked: the revocation travels from the
identity service's outbox over NATS to the gateway, which never calls identity per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.config import IdentitySettings
from identity.main import create_app as create_identity
from identity.testing import register_client, settings
from kit.natsserver import NatsServer
from kit.testing import live_server

__all__ = ["settings"]

ISSUER = "http://identity.test"


@pytest.fixture
def platform(settings: IdentitySettings, nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[str, object]]:
    """Identity and the gateway in front of it; yields the gateway's URL and the identity app."""
    identity_app = create_identity(settings)
    with live_server(identity_app) as identity_url:
        gateway_settings = GatewaySettings(
            environment="test",
            database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
            nats_url=nats_server.url,
            upstreams={"identity": identity_url},
            token_issuer=ISSUER,
            jwks_url=f"{identity_url}/.well-known/jwks.json",
            usage_spool_dir=tmp_path / "spool",
            log_json=False,
        )
        migrate_gateway(gateway_settings)
        with live_server(create_gateway(gateway_settings)) as gateway_url:
            yield gateway_url, identity_app


def test_an_app_gets_a_token_through_the_gateway_uses_it_and_loses_it_on_revocation(
    platform: tuple[str, object],
) -> None:
    gateway_url, identity_app = platform
    registered = register_client(
        identity_app,  # type: ignore[arg-type]
        client_name="口算练习",
        grant_types=["client_credentials"],
        scope="org.read metering.report",
        app_id="app-oral-math",
    )
    auth = (registered.client_id, registered.secret or "")
    issued = httpx.post(
        f"{gateway_url}/oauth/token", data={"grant_type": "client_credentials", "scope": "org.read"}, auth=auth
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    listed = httpx.get(f"{gateway_url}/api/identity/organisations", headers=bearer)
    assert listed.status_code == 200, listed.text
    assert "items" in listed.json()

    refused = httpx.get(f"{gateway_url}/api/identity/people", headers=bearer)
    assert refused.status_code == 403
    assert refused.json()["required_scope"] == "people.read"

    revoked = httpx.post(f"{gateway_url}/oauth/revoke", data={"token": token}, auth=auth)
    assert revoked.status_code == 200
    deadline = time.monotonic() + 10
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = httpx.get(f"{gateway_url}/api/identity/organisations", headers=bearer).status_code
        time.sleep(0.1)
    assert status == 401


def test_the_sign_in_pages_and_discovery_are_served_through_the_gateway(platform: tuple[str, object]) -> None:
    gateway_url, _identity_app = platform
    discovery = httpx.get(f"{gateway_url}/.well-known/openid-configuration")
    assert discovery.status_code == 200
    assert discovery.json()["issuer"] == ISSUER
    login = httpx.get(f"{gateway_url}/login")
    assert login.status_code == 200
    assert "登录" in login.text
    assert "content-security-policy" in login.headers
    assert "server" not in login.headers
    internal = httpx.get(f"{gateway_url}/oauth/clients/anything")
    assert internal.status_code == 404  # internal registration API is only under /api/identity, with a scope


def test_the_merged_openapi_lists_identity_routes_with_their_scopes(platform: tuple[str, object]) -> None:
    gateway_url, _identity_app = platform
    deadline = time.monotonic() + 10
    document: dict[str, object] = {}
    while time.monotonic() < deadline:
        document = httpx.get(f"{gateway_url}/openapi.json").json()
        if "/api/identity/people" in document.get("paths", {}):  # type: ignore[operator]
            break
        time.sleep(0.2)
    paths = document["paths"]
    assert isinstance(paths, dict)
    operation = paths["/api/identity/people"]["get"]
    assert {"oauth2": ["people.read"]} in operation["security"]
    assert "/healthz" not in paths and "/api/identity/healthz" not in paths
