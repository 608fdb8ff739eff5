"""The gateway's request path: route, authenticate, authorise, limit, forward, stream back, record.

A pure ASGI application in front of the gateway's own FastAPI app (health, metrics, OpenAPI): every
``/api/<service>/...`` request and every root path of the identity provider is handled here, the
rest goes to the FastAPI app. Each step that refuses a call answers with problem+json before the
call reaches a service; nothing of a service's internals (addresses, stack traces, server software)
reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.api import API_PREFIX, APP_SCHOOLS_HEADER, RouteSpec
from gateway import edge
from gateway.config import GatewaySettings
from gateway.edge import Exchange, Headers
from gateway.edge_auth import EdgeAuthenticator
from gateway.installations.service import InstallationDirectory
from gateway.ratelimit import RateLimiter
from gateway.routing import MethodMismatch, RouteMatch, RouteTable, UnsafePath
from gateway.upstream import UpstreamCall, Upstreams
from gateway.usage import ApiCall, UsageRecorder
from kit.auth import REALM, Principal
from kit.errors import (
    Forbidden,
    HeadersTooLarge,
    InsufficientScope,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    RequestTimeout,
    TooManyRequests,
)

logger = logging.getLogger("gateway.proxy")
tracer = trace.get_tracer("gateway")

REQUEST_DURATION = Histogram(
    "edu_gateway_request_duration_seconds",
    "Time from request to the end of the response at the gateway",
    ["service", "route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

BUFFERED_BODY_BYTES = 65_536  # bodies up to this size are read whole, so an idempotent retry can resend them
ROOT_ROUTE = RouteSpec(method="GET", path="/", summary="identity provider pages", authenticated=False)
CORS_ALLOWED_HEADERS = b"authorization, content-type, accept, accept-language, idempotency-key, x-request-id"
_APP_SCHOOLS_HEADER = APP_SCHOOLS_HEADER.lower().encode()
CORS_EXPOSED_HEADERS = (
    b"x-request-id, retry-after, location, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy"
)


class _ClientGone(Exception):
    """The client disconnected before its request was complete."""


class GatewayProxy:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: GatewaySettings,
        table: RouteTable,
        authenticator: EdgeAuthenticator,
        installations: InstallationDirectory,
        limiter: RateLimiter,
        usage: UsageRecorder,
        upstreams: Upstreams,
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.authenticator = authenticator
        self.installations = installations
        self.limiter = limiter
        self.usage = usage
        self.upstreams = upstreams
        self.https = settings.public_base_url.startswith("https://")
        self.max_header_bytes = 32_768

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(API_PREFIX + "/"):
                await self._handle(scope, receive, send, api=True)
                return
            if self.table.root_api(path) is not None:
                await self._handle(scope, receive, send, api=False)
                return
        elif scope["type"] == "websocket" and scope["path"].startswith(API_PREFIX + "/"):
            from gateway.websocket import relay_websocket

            await relay_websocket(self, scope, receive, send)
            return
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------------------------ request path

    async def _handle(self, scope: Scope, receive: Receive, send: Send, *, api: bool) -> None:
        exchange = Exchange.begin(scope, method=scope["method"], headers=scope["headers"])
        carrier = {}
        for name in (b"traceparent", b"tracestate"):
            if (value := exchange.header(name)) is not None:
                carrier[name.decode()] = value.decode("latin-1")
        context = propagate.extract(carrier) if carrier else None
        with tracer.start_as_current_span("gateway", context=context, kind=SpanKind.SERVER) as span:
            try:
                await self._steps(exchange, receive, send, api=api)
            finally:
                span.set_attribute("http.route", exchange.template)
                span.set_attribute("http.response.status_code", exchange.status)
                self._observe(exchange)

    async def _steps(self, exchange: Exchange, receive: Receive, send: Send, *, api: bool) -> None:
        problem_headers = self._response_headers(exchange, api=True)
        try:
            if sum(len(name) + len(value) for name, value in exchange.headers) > self.max_header_bytes:
                raise HeadersTooLarge(f"The request headers exceed {self.max_header_bytes} bytes in all.")
            if api:
                match = self._match(exchange)
                route = match.route
                exchange.service, exchange.template = match.service, match.public_template
                if exchange.method == "OPTIONS":
                    exchange.status = await self._preflight(exchange, send)
                    return
                rate_headers = await self._authorise(exchange, match)
                problem_headers += rate_headers
                target = match.upstream_path
                service = match.service
            else:
                api_spec = self.table.root_api(exchange.path)
                assert api_spec is not None
                if exchange.method == "OPTIONS" and exchange.origin is not None:
                    exchange.status = await self._preflight(exchange, send)
                    return
                route, service, target, rate_headers = ROOT_ROUTE, api_spec.service, exchange.path, []
                exchange.service, exchange.template = service, "<identity-provider>"
            if not self.upstreams.knows(service):
                raise NotFound(f"The {service} service is not available at this gateway.")
            query: bytes = exchange.scope.get("query_string", b"")
            if query:
                target += "?" + query.decode("latin-1")
            body = await self._request_body(exchange, receive, route)
            call = UpstreamCall(
                service=service,
                method=exchange.method,
                path=target,
                headers=self._forward_headers(exchange),
                body=body,
                timeout=route.timeout_seconds,
            )
            response = await self.upstreams.send(call, service)
        except Problem as problem:
            exchange.status = await edge.send_problem(
                send, problem, accept_language=exchange.accept_language, instance=exchange.path, extra=problem_headers
            )
            return
        except _ClientGone:
            exchange.status = 499
            return
        try:
            headers = edge.client_headers(response.headers)
            headers = edge.with_defaults(headers + rate_headers, self._response_headers(exchange, api=api))
            exchange.status = response.status
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            if exchange.method != "HEAD":
                async for chunk in response.aiter_stream():
                    exchange.response_bytes += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except Exception as error:  # the service broke off mid-body: the client sees a cut connection
            logger.warning("%s %s: response from %s broken off (%s)", exchange.method, exchange.path, service, error)
        finally:
            await response.aclose()

    def _match(self, exchange: Exchange) -> RouteMatch:
        raw_path = exchange.scope.get("raw_path") or exchange.path.encode()
        method = exchange.method
        if method == "OPTIONS":
            requested = exchange.header(b"access-control-request-method")
            method = requested.decode("latin-1").upper() if requested else "GET"
        try:
            match = self.table.match(method, raw_path.decode("latin-1"))
        except UnsafePath as error:
            raise MalformedRequest(f"The path segment {str(error)[:40]!r} is not allowed.") from None
        if match is None:
            raise NotFound(f"There is no API route at {exchange.path[:200]}; /openapi.json lists every route.")
        if isinstance(match, MethodMismatch):
            raise MethodNotAllowed(
                f"{exchange.method} is not supported here; use {', '.join(match.allowed)}.",
                headers={"Allow": ", ".join(match.allowed)},
            )
        return match

    async def _authorise(self, exchange: Exchange, match: RouteMatch) -> Headers:
        """Token, scopes, installation and rate limit; returns the RateLimit headers for the response."""
        route = match.route
        if not route.authenticated:
            return []
        authorization = exchange.header(b"authorization")
        principal = await self.authenticator.authenticate(authorization.decode("latin-1") if authorization else None)
        exchange.principal = principal
        missing = [scope for scope in route.scopes if scope not in principal.scopes]
        if missing:
            listed = " ".join(missing)
            raise InsufficientScope(
                f"The access token lacks the scope(s) {listed} this API needs.",
                required_scope=missing[0] if len(missing) == 1 else listed,
                missing_scopes=missing,
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{listed}"'},
            )
        app_id = principal.claims.app_id
        if app_id is not None:
            self._check_installation(exchange, match, principal)
        key = (
            principal.client_id
            if app_id is not None or principal.subject == principal.client_id
            else (f"{principal.client_id}/{principal.subject}")
        )
        decision = await self.limiter.check(key, match.route_key, route.rate_limit)
        headers = decision.headers()
        if not decision.allowed:
            raise _too_many(decision.reset_seconds, match.public_template, headers)
        return headers

    def _check_installation(self, exchange: Exchange, match: RouteMatch, principal: Principal) -> None:
        route = match.route
        if route.app_access == "none":
            raise Forbidden("Apps from the app store cannot call this API; it is for the platform's own services.")
        if route.app_access == "installed":
            schools = self.installations.schools_granting(principal.client_id, route.scopes)
            if not schools:
                raise Forbidden(
                    "No school has installed this app with the scope(s) this API needs, so there is no data it may "
                    "read here.",
                    missing_scopes=list(route.scopes),
                )
            exchange.app_schools = schools
            return
        if route.tenant is None:
            return  # 'open': no school's data
        locator = route.tenant
        if locator.source == "path":
            school_id = match.params.get(locator.name)
        else:
            values = parse_qs(exchange.scope.get("query_string", b"").decode("latin-1")).get(locator.name, [])
            if len(values) > 1:
                raise MalformedRequest(f"The query parameter {locator.name!r} must be given once.")
            school_id = values[0] if values else None
        if route.app_access == "open":
            exchange.school_id = school_id
            return
        if not school_id:
            raise MalformedRequest(f"Name the school with the {locator.source} parameter {locator.name!r}.")
        exchange.school_id = school_id
        granted = self.installations.granted_scopes(principal.client_id, school_id)
        if granted is None:
            raise Forbidden(
                f"The school {school_id} has not installed this app, so the app cannot reach its data.",
                school_id=school_id,
            )
        not_granted = [scope for scope in route.scopes if scope not in granted]
        if not_granted:
            raise Forbidden(
                f"The school {school_id} has not granted this app the scope(s) {' '.join(not_granted)}.",
                school_id=school_id,
                missing_scopes=not_granted,
            )
        exchange.app_schools = [school_id]

    async def _request_body(
        self, exchange: Exchange, receive: Receive, route: RouteSpec
    ) -> bytes | AsyncIterator[bytes]:
        length_header = exchange.header(b"content-length")
        chunked = exchange.header(b"transfer-encoding") is not None
        limit = route.max_body_bytes
        if length_header is not None:
            try:
                length = int(length_header)
            except ValueError:
                raise MalformedRequest("The Content-Length header is not a number.") from None
            if length > limit:
                raise PayloadTooLarge(f"The request body may be at most {limit} bytes here; it is {length}.")
            if length == 0:
                return b""
        elif not chunked:
            return b""
        timeout = self.settings.client_body_timeout_seconds
        if length_header is not None and int(length_header) <= BUFFERED_BODY_BYTES:
            parts = [chunk async for chunk in self._body_chunks(exchange, receive, limit, timeout)]
            return b"".join(parts)
        return self._body_chunks(exchange, receive, limit, timeout)

    async def _body_chunks(
        self, exchange: Exchange, receive: Receive, limit: int, timeout: float
    ) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    message: Message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body stopped arriving for {timeout:g} s; send it without pauses."
                ) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk: bytes = message.get("body", b"")
            exchange.request_bytes += len(chunk)
            if exchange.request_bytes > limit:
                raise PayloadTooLarge(f"The request body may be at most {limit} bytes here.")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    def _forward_headers(self, exchange: Exchange) -> Headers:
        headers = edge.upstream_headers(exchange.headers)
        client = exchange.scope.get("client")
        host = exchange.header(b"host")
        headers.append((b"x-forwarded-for", (client[0] if client else "unknown").encode()))
        headers.append(
            (b"x-forwarded-proto", b"https" if self.https else exchange.scope.get("scheme", "http").encode())
        )
        if host is not None:
            headers.append((b"x-forwarded-host", host))
        headers.append((b"x-request-id", exchange.request_id.encode()))
        if exchange.app_schools is not None:
            headers.append((_APP_SCHOOLS_HEADER, ",".join(exchange.app_schools).encode()))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers.extend((name.encode(), value.encode()) for name, value in carrier.items())
        return headers

    def _response_headers(self, exchange: Exchange, *, api: bool) -> Headers:
        headers: Headers = [(b"x-request-id", exchange.request_id.encode())]
        headers += edge.API_SECURITY_HEADERS if api else edge.PAGE_SECURITY_HEADERS
        if self.https:
            headers.append(edge.HSTS)
        if exchange.origin is not None and self._origin_allowed(exchange.origin):
            headers += [
                (b"access-control-allow-origin", exchange.origin),
                (b"access-control-expose-headers", CORS_EXPOSED_HEADERS),
                (b"vary", b"Origin"),
            ]
        return headers

    def _origin_allowed(self, origin: bytes) -> bool:
        return self.installations.origin_allowed(origin.decode("latin-1"))

    async def _preflight(self, exchange: Exchange, send: Send) -> int:
        """CORS preflight (Fetch standard): only origins of registered apps may call from browsers."""
        origin = exchange.origin
        if origin is None or not self._origin_allowed(origin):
            raise Forbidden("This web origin is not registered for any app; register it in the app store.")
        requested = exchange.header(b"access-control-request-method") or b"GET"
        headers: Headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", requested.upper()),
            (b"access-control-allow-headers", CORS_ALLOWED_HEADERS),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"x-request-id", exchange.request_id.encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204

    def _observe(self, exchange: Exchange) -> None:
        elapsed = time.perf_counter() - exchange.started
        REQUEST_DURATION.labels(exchange.service, exchange.template, exchange.method, str(exchange.status)).observe(
            elapsed
        )
        principal = exchange.principal
        if principal is None or principal.claims.app_id is None:
            return
        self.usage.record(
            ApiCall(
                client_id=principal.client_id,
                app_id=principal.claims.app_id,
                school_id=exchange.school_id,
                service=exchange.service,
                route=exchange.template,
                method=exchange.method,
                status=exchange.status,
                latency_ms=round(elapsed * 1000, 3),
                request_bytes=exchange.request_bytes,
                response_bytes=exchange.response_bytes,
                at=datetime.now(UTC) - timedelta(seconds=elapsed),
                request_id=exchange.request_id,
            )
        )


def _too_many(reset_seconds: int, template: str, headers: Headers) -> TooManyRequests:
    as_text = {name.decode(): value.decode() for name, value in headers}
    as_text.setdefault("retry-after", str(max(1, reset_seconds)))
    return TooManyRequests(
        f"Rate limit reached for this client on {template}; try again in {max(1, reset_seconds)} s.",
        headers=as_text,
    )
