"""WebSockets through the gateway: the same token and scope checks as HTTP at the handshake, then
frames relayed both ways until either side closes."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from .conftest import GatewayFactory, RunningGateway

TIMEOUT = 3.0


def ws_url(gw: RunningGateway, query: str = "") -> str:
    return gw.url.replace("http://", "ws://", 1) + "/api/standin/ws/echo" + (f"?{query}" if query else "")


async def assert_echoes(connection: ClientConnection) -> None:
    assert await connection.recv(decode=True) == "hello with token"  # the service saw a Bearer header
    await connection.send("你好")
    assert await connection.recv(decode=True) == "echo:你好"
    await connection.send(b"\x00\x01binary\xff")
    assert await connection.recv(decode=False) == b"\x00\x01binary\xff"


async def test_a_token_in_the_query_reaches_the_service_as_a_bearer_header(gateway: GatewayFactory) -> None:
    gw = gateway()

    async with connect(ws_url(gw, f"access_token={gw.token(scopes='org.read')}"), open_timeout=TIMEOUT) as ws:
        await assert_echoes(ws)


async def test_a_token_in_the_authorization_header_opens_the_socket(gateway: GatewayFactory) -> None:
    gw = gateway()

    async with connect(ws_url(gw), additional_headers=gw.bearer(scopes="org.read"), open_timeout=TIMEOUT) as ws:
        await assert_echoes(ws)


async def test_a_handshake_without_a_token_is_refused_with_401(gateway: GatewayFactory) -> None:
    gw = gateway()

    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw), open_timeout=TIMEOUT):
            pass

    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert json.loads(response.body or b"{}")["status"] == 401


async def test_a_handshake_with_a_garbage_token_is_refused_with_401(gateway: GatewayFactory) -> None:
    gw = gateway()

    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw, "access_token=abc"), open_timeout=TIMEOUT):
            pass

    assert refused.value.response.status_code == 401


async def test_a_handshake_without_the_scope_is_refused_with_403_naming_it(gateway: GatewayFactory) -> None:
    gw = gateway()

    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw, f"access_token={gw.token(scopes='org.write')}"), open_timeout=TIMEOUT):
            pass

    response = refused.value.response
    assert response.status_code == 403
    assert "org.read" in json.loads(response.body or b"{}")["detail"]


async def test_the_service_closing_the_socket_closes_it_for_the_client(gateway: GatewayFactory) -> None:
    gw = gateway()

    async with connect(ws_url(gw), additional_headers=gw.bearer(scopes="org.read"), open_timeout=TIMEOUT) as ws:
        assert await ws.recv() == "hello with token"
        await ws.send("close, please")
        with pytest.raises(ConnectionClosed):
            await ws.recv()

    assert ws.close_code == 4000
    assert ws.close_reason == "closed by the service"


async def test_a_page_on_an_allowed_origin_opens_the_socket_and_a_stranger_page_is_refused(
    gateway: GatewayFactory,
) -> None:
    gw = gateway(cors_extra_origins=["https://portal.edu-platform.test"])
    url = ws_url(gw, f"access_token={gw.token(scopes='org.read')}")

    async with connect(url, origin=Origin("https://portal.edu-platform.test"), open_timeout=TIMEOUT) as ws:
        assert await ws.recv() == "hello with token"
    # A page elsewhere must not ride on a token it got hold of: the same refusal as a CORS preflight.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=Origin("https://evil.example"), open_timeout=TIMEOUT):
            pass

    assert refused.value.response.status_code == 403
