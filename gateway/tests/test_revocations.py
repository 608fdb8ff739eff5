"""Tokens revoked at the identity provider are refused by every gateway replica, also one started later."""

from __future__ import annotations

import asyncio
import time

import httpx

from contracts.events import StreamSpec
from contracts.events.identity import AccessTokensRevokedV1
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.outbox import build_envelope

from .conftest import GatewayFactory


async def announce_revocation(nats_url: str, jti: str) -> None:
    """Publish the event as the identity service's outbox relay does."""
    link = NatsLink(nats_url, name="identity-test", streams=[StreamSpec("identity")])
    await link.start()
    try:
        assert await link.wait_connected(timeout=10)
        assert link.jetstream is not None
        payload = AccessTokensRevokedV1(
            jtis=[jti], client_id="platform-portal", sub="teacher-1", reason="logout",
            expires_at=int(time.time()) + 300,
        )  # fmt: skip
        envelope = build_envelope(payload)
        await link.jetstream.publish(
            AccessTokensRevokedV1.subject(), envelope.to_json_bytes(), headers={"Nats-Msg-Id": envelope.id}
        )
    finally:
        await link.close()


def wait_for_status(url: str, headers: dict[str, str], status: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = httpx.get(url, headers=headers).status_code
    while seen != status and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = httpx.get(url, headers=headers).status_code
    return seen


def test_a_revoked_token_is_refused_now_and_by_a_gateway_started_later(
    gateway: GatewayFactory, nats_server: NatsServer
) -> None:
    first = gateway()
    url = f"{first.url}/api/standin/things/1"
    revoked = {"Authorization": f"Bearer {first.token(scopes='org.read', jti='jti-revoked-1')}"}
    kept = {"Authorization": f"Bearer {first.token(scopes='org.read', jti='jti-kept-1')}"}
    assert httpx.get(url, headers=revoked).status_code == 200  # verified and cached

    asyncio.run(announce_revocation(nats_server.url, "jti-revoked-1"))
    assert wait_for_status(url, revoked, 401) == 401
    response = httpx.get(url, headers=revoked)
    assert "revoked" in response.json()["detail"]
    assert httpx.get(url, headers=kept).status_code == 200

    later = gateway()
    assert wait_for_status(f"{later.url}/readyz", {}, 200) == 200
    assert httpx.get(f"{later.url}/api/standin/things/1", headers=revoked).status_code == 401
    assert httpx.get(f"{later.url}/api/standin/things/1", headers=kept).status_code == 200
