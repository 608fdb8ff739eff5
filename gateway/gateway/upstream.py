"""Calls to the services: pooled connections, retries for idempotent requests, a circuit breaker each.

The breaker counts consecutive infrastructure failures of a service (cannot connect, timed out,
502/503/504 from it); after ``failure_threshold`` of them it opens and calls fail at once for
``reset_seconds``, then one trial call decides whether it closes again. A slow or dead service so
costs its own callers a quick 503, never the other routes their connections or time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
from prometheus_client import Counter, Gauge

from gateway.config import GatewaySettings
from kit.errors import BadGateway, GatewayTimeout, Problem, ServiceUnavailable

logger = logging.getLogger("gateway.upstream")

UPSTREAM_FAILURES = Counter(
    "edu_gateway_upstream_failures_total", "Failed calls to services, by kind", ["service", "kind"]
)
BREAKER_OPEN = Gauge("edu_gateway_breaker_open", "1 while the service's circuit breaker is open", ["service"])

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_FAILURE_STATUSES = frozenset({502, 503, 504})
_RETRYABLE_STATUSES = frozenset({502, 503})  # 504: the service already waited for something


class CircuitBreaker:
    """Closed → open after consecutive failures → half-open trial after ``reset_seconds``."""

    def __init__(self, service: str, *, failure_threshold: int, reset_seconds: float) -> None:
        self.service = service
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    def retry_after(self) -> float | None:
        """None when a call may go ahead; otherwise the seconds until the breaker lets one through."""
        if self.opened_at is None:
            return None
        remaining = self.opened_at + self.reset_seconds - time.monotonic()
        if remaining > 0:
            return remaining
        if self._trial_in_flight:
            return 1.0
        self._trial_in_flight = True  # half-open: this call is the trial
        return None

    def record_success(self) -> None:
        if self.opened_at is not None:
            logger.info("circuit breaker for %s closed again", self.service)
            BREAKER_OPEN.labels(self.service).set(0)
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            if self.opened_at is None:
                logger.warning("circuit breaker for %s opened after %d failures", self.service, self.failures)
            self.opened_at = time.monotonic()
            BREAKER_OPEN.labels(self.service).set(1)


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    service: str
    method: str
    path: str  # path and query, percent-encoded as received
    headers: list[tuple[bytes, bytes]]
    body: bytes | AsyncIterator[bytes]
    timeout: float


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: bytes
    host: bytes
    port: int | None
    host_header: bytes
    base_path: str


def _origin(url: str) -> _Origin:
    parsed = urlsplit(url)
    if not parsed.hostname:
        raise ValueError(f"upstream URL {url!r} names no host")
    default_port = 443 if parsed.scheme == "https" else 80
    host_header = parsed.hostname if parsed.port in (None, default_port) else f"{parsed.hostname}:{parsed.port}"
    return _Origin(
        scheme=parsed.scheme.encode(),
        host=parsed.hostname.encode(),
        port=parsed.port,
        host_header=host_header.encode(),
        base_path=parsed.path.rstrip("/"),
    )


class Upstreams:
    """One connection pool and one breaker per service.

    The pools are httpcore's, the connection layer of httpx, used directly: the request target and
    headers are already in wire form here, and httpx's URL parsing, cookie jar and client layers
    cost more CPU per proxied call than everything else the gateway does.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._origins = {service: _origin(url) for service, url in settings.upstreams.items()}
        # Several small pools per service rather than one large one: httpcore's pool walks all its
        # connections (and polls each socket) whenever a request starts or ends, so its cost grows with
        # its size; at 32 concurrent calls one pool of 32 spent more CPU than the rest of the gateway.
        shards = max(1, settings.upstream_pool_shards)
        self._pools = {
            service: [
                httpcore.AsyncConnectionPool(
                    max_connections=max(1, settings.upstream_max_connections // shards),
                    max_keepalive_connections=max(1, settings.upstream_keepalive_connections // shards),
                    keepalive_expiry=30.0,
                )
                for _ in range(shards)
            ]
            for service in settings.upstreams
        }
        self._next_shard = itertools.count()
        self.breakers = {
            service: CircuitBreaker(
                service,
                failure_threshold=settings.breaker_failure_threshold,
                reset_seconds=settings.breaker_reset_seconds,
            )
            for service in settings.upstreams
        }

    def knows(self, service: str) -> bool:
        return service in self._pools

    def base_url(self, service: str) -> str:
        return self.settings.upstreams[service]

    def _request(self, call: UpstreamCall, timeout: dict[str, float]) -> httpcore.Request:
        origin = self._origins[call.service]
        headers = [(b"host", origin.host_header), *call.headers]
        if isinstance(call.body, bytes):
            if call.body or call.method in ("POST", "PUT", "PATCH"):
                headers.append((b"content-length", str(len(call.body)).encode()))
        else:
            headers.append((b"transfer-encoding", b"chunked"))
        target = (origin.base_path + call.path).encode("latin-1")
        return httpcore.Request(
            call.method.encode(),
            httpcore.URL(scheme=origin.scheme, host=origin.host, port=origin.port, target=target),
            headers=headers,
            content=call.body,
            extensions={"timeout": timeout},
        )

    async def send(self, call: UpstreamCall, service_label: str) -> httpcore.Response:
        """The service's response, headers read and body still streaming; failures become problems."""
        breaker = self.breakers[call.service]
        shards = self._pools[call.service]
        pool = shards[next(self._next_shard) % len(shards)]
        replayable = isinstance(call.body, bytes) and call.method in IDEMPOTENT_METHODS
        attempts = 1 + (self.settings.retries if replayable else 0)
        connect = min(self.settings.upstream_connect_timeout_seconds, call.timeout)
        timeout = {"connect": connect, "read": call.timeout, "write": call.timeout, "pool": connect}
        last_problem: Problem | None = None
        for attempt in range(attempts):
            wait = breaker.retry_after()
            if wait is not None:
                raise ServiceUnavailable(
                    f"The {service_label} service is unavailable; the gateway stopped calling it for a moment "
                    "after repeated failures. Try again shortly.",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
            if attempt:
                await asyncio.sleep(self.settings.retry_backoff_seconds * 2 ** (attempt - 1))
            try:
                response = await pool.handle_async_request(self._request(call, timeout))
            except (httpcore.ConnectTimeout, httpcore.PoolTimeout, httpcore.ConnectError):
                breaker.record_failure()
                UPSTREAM_FAILURES.labels(call.service, "connect").inc()
                last_problem = ServiceUnavailable(
                    f"The {service_label} service could not be reached; try again shortly.",
                    headers={"Retry-After": "2"},
                )
                continue
            except httpcore.TimeoutException:
                # The service has the request and is taking too long: asking again would only pile up work
                # on it and keep the caller waiting a multiple of the route's timeout.
                breaker.record_failure()
                UPSTREAM_FAILURES.labels(call.service, "timeout").inc()
                raise GatewayTimeout(f"The {service_label} service did not answer within {call.timeout:g} s.") from None
            except (httpcore.ProtocolError, httpcore.NetworkError):
                breaker.record_failure()
                UPSTREAM_FAILURES.labels(call.service, "protocol").inc()
                last_problem = BadGateway(f"The {service_label} service sent an invalid or incomplete response.")
                continue
            if response.status in _FAILURE_STATUSES:
                breaker.record_failure()
                UPSTREAM_FAILURES.labels(call.service, str(response.status)).inc()
                if response.status in _RETRYABLE_STATUSES and attempt + 1 < attempts:
                    await response.aclose()
                    continue
                return response
            breaker.record_success()
            return response
        assert last_problem is not None
        raise last_problem

    async def aclose(self) -> None:
        for shards in self._pools.values():
            for pool in shards:
                await pool.aclose()
