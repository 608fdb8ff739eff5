"""WebSocket routes: the same checks as HTTP at the handshake, then frames relayed both ways.

Browsers cannot set headers on a WebSocket handshake, so the token may also come as the
``access_token`` query parameter (RFC 6750 §2.3); the gateway moves it into an ``Authorization``
header for the service and drops it from the URL it forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from gateway import edge
from gateway.edge import Exchange
from gateway.routing import RouteMatch
from kit.errors import BadGateway, Forbidden, NotFound, Problem, ServiceUnavailable, Unauthenticated

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from gateway.proxy import GatewayProxy

logger = logging.getLogger("gateway.websocket")

_HANDSHAKE_HEADERS = frozenset({
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol",
    b"sec-websocket-accept", b"origin",
})  # fmt: skip


async def relay_websocket(proxy: GatewayProxy, scope: Scope, receive: Receive, send: Send) -> None:
    headers = list(scope["headers"])
    query = scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    token = next((value for name, value in pairs if name == "access_token"), None)
    if token and edge.header_value(headers, b"authorization") is None:
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
    forwarded_query = urlencode([(name, value) for name, value in pairs if name != "access_token"])
    exchange = Exchange.begin(scope, method="GET", headers=headers)
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:
        match = proxy._match(exchange)
        exchange.service, exchange.template = match.service, match.public_template
        if not match.route.websocket:
            raise NotFound(f"{match.public_template} is not a WebSocket endpoint.")
        if exchange.origin is not None and not proxy._origin_allowed(exchange.origin):
            raise Forbidden("This web origin is not registered for any app; register it in the app store.")
        await proxy._authorise(exchange, match)
        upstream = await _connect(proxy, exchange, match, forwarded_query)
    except Problem as problem:
        exchange.status = problem.status
        await _deny(scope, send, problem, exchange)
        proxy._observe(exchange)
        return
    exchange.status = 101
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
    try:
        await _pump(receive, send, upstream, exchange)
    finally:
        await upstream.close()
        proxy._observe(exchange)


async def _connect(proxy: GatewayProxy, exchange: Exchange, match: RouteMatch, query: str) -> ClientConnection:
    if not proxy.upstreams.knows(match.service):
        raise NotFound(f"The {match.service} service is not available at this gateway.")
    base = proxy.upstreams.base_url(match.service).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    url = base + match.upstream_path + (f"?{query}" if query else "")
    forwarded = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in proxy._forward_headers(exchange)
        if name not in _HANDSHAKE_HEADERS
    ]
    subprotocols = [Subprotocol(item) for item in exchange.scope.get("subprotocols", [])]
    try:
        return await connect(
            url,
            additional_headers=forwarded,
            subprotocols=subprotocols or None,
            open_timeout=match.route.timeout_seconds,
            user_agent_header=None,
            max_size=2**20,
        )
    except InvalidStatus as error:
        status = error.response.status_code
        refusals: dict[int, type[Problem]] = {401: Unauthenticated, 403: Forbidden, 404: NotFound}
        if status in refusals:
            raise refusals[status](f"The {match.service} service refused the connection ({status}).") from None
        raise BadGateway(f"The {match.service} service refused the WebSocket upgrade ({status}).") from None
    except (OSError, TimeoutError, InvalidHandshake):
        raise ServiceUnavailable(
            f"The {match.service} service could not be reached; try again shortly.", headers={"Retry-After": "2"}
        ) from None


async def _deny(scope: Scope, send: Send, problem: Problem, exchange: Exchange) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        # The WebSocket Denial Response extension: answer the handshake with problem+json.
        captured: list[dict[str, object]] = []

        async def capture(message: dict[str, object]) -> None:
            captured.append(message)

        await edge.send_problem(capture, problem, accept_language=exchange.accept_language, instance=exchange.path)
        start, body = captured
        await send({"type": "websocket.http.response.start", "status": start["status"], "headers": start["headers"]})
        await send({"type": "websocket.http.response.body", "body": body["body"]})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": (problem.detail or problem.title_en)[:120]})


async def _pump(receive: Receive, send: Send, upstream: ClientConnection, exchange: Exchange) -> None:

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000))
                return
            if message.get("bytes") is not None:
                exchange.request_bytes += len(message["bytes"])
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                exchange.request_bytes += len(message["text"].encode())
                await upstream.send(message["text"])

    async def upstream_to_client() -> None:
        try:
            async for frame in upstream:
                if isinstance(frame, bytes):
                    exchange.response_bytes += len(frame)
                    await send({"type": "websocket.send", "bytes": frame})
                else:
                    exchange.response_bytes += len(frame.encode())
                    await send({"type": "websocket.send", "text": frame})
        except ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for task in done:
        if (error := task.exception()) is not None and not isinstance(error, ConnectionClosed):
            logger.info("WebSocket relay on %s ended: %s", exchange.template, error)
