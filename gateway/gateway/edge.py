"""Header handling at the edge: what reaches a service, what reaches a client, and problem responses."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import Scope, Send

from kit.auth import Principal
from kit.errors import PROBLEM_CONTENT_TYPE, Problem, preferred_language

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy's own.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})  # fmt: skip
# Set by the gateway alone: a client can never pass them through.
SPOOFABLE = frozenset({
    b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port",
    b"x-forwarded-prefix", b"x-real-ip", b"x-client-ip", b"x-request-id", b"traceparent", b"tracestate", b"host",
    b"content-length",
})  # fmt: skip
SPOOFABLE_PREFIXES = (b"x-principal-", b"x-edu-", b"x-gateway-", b"x-user-", b"x-auth-")
# Never shown to clients: they name internal software or addresses.
UPSTREAM_ONLY = frozenset({b"server", b"x-powered-by", b"via", b"x-request-id", b"date"})

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(value: bytes | None) -> str:
    if value:
        candidate = value.decode("latin-1").strip()
        if _SANE_REQUEST_ID.match(candidate):
            return candidate
    return uuid.uuid4().hex


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(token.strip().lower() for token in value.split(b","))
    return frozenset(listed)


def upstream_headers(headers: Headers) -> Headers:
    """The client's headers minus hop-by-hop and spoofable ones."""
    listed = _connection_listed(headers)
    forwarded: Headers = []
    for name, value in headers:
        if name in HOP_BY_HOP or name in SPOOFABLE or name in listed or name.startswith(SPOOFABLE_PREFIXES):
            continue
        forwarded.append((name, value))
    return forwarded


def client_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The service's response headers fit for the client: lower-case names, no hop-by-hop or internal ones."""
    lowered = [(name.lower(), value) for name, value in raw]
    listed = _connection_listed(lowered)
    return [
        (name, value)
        for name, value in lowered
        if name not in HOP_BY_HOP and name not in UPSTREAM_ONLY and name not in listed
    ]


API_SECURITY_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
PAGE_SECURITY_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def with_defaults(headers: Headers, defaults: Iterable[tuple[bytes, bytes]]) -> Headers:
    """``headers`` plus each default the service did not set itself."""
    present = {name for name, _ in headers}
    return headers + [(name, value) for name, value in defaults if name not in present]


def header_value(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def send_problem(
    send: Send,
    problem: Problem,
    *,
    accept_language: bytes | None,
    instance: str,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> int:
    """Answer with ``problem`` as RFC 9457 problem+json; returns the status sent."""
    language = preferred_language(accept_language.decode("latin-1") if accept_language else None)
    body = json.dumps(problem.body(language, instance), ensure_ascii=False).encode()
    headers: Headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-language", b"zh-CN" if language == "zh" else b"en"),
        *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in problem.headers.items()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return problem.status


@dataclass(slots=True)
class Exchange:
    """What is known about one request as it goes through the steps."""

    scope: Scope
    method: str
    path: str
    headers: Headers
    request_id: str
    accept_language: bytes | None
    origin: bytes | None
    started: float
    service: str = "-"
    template: str = "<unmatched>"
    status: int = 500
    principal: Principal | None = None
    school_id: str | None = None
    app_schools: list[str] | None = None  # an 'installed' route: the schools whose data an app may get
    request_bytes: int = 0
    response_bytes: int = 0

    @classmethod
    def begin(cls, scope: Scope, *, method: str, headers: Headers) -> Exchange:
        """A request as it arrives: its own request id (or a new one), language and origin."""
        return cls(
            scope=scope,
            method=method,
            path=scope["path"],
            headers=headers,
            request_id=request_id_of(header_value(headers, b"x-request-id")),
            accept_language=header_value(headers, b"accept-language"),
            origin=header_value(headers, b"origin"),
            started=time.perf_counter(),
        )

    def header(self, name: bytes) -> bytes | None:
        return header_value(self.headers, name)
