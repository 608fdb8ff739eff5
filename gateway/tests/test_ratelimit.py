"""Rate limits per app and per route: what a client is admitted, refused and told in the headers.

Every behaviour runs on the in-process storage and, when ``TEST_REDIS_URL`` is set, on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import coredis
import pytest
from prometheus_client import REGISTRY

from gateway.ratelimit import RateDecision, RateLimiter

REDIS_URL = os.environ.get("TEST_REDIS_URL")
ROUTE = "identity GET /people/{person_id}"
OTHER_ROUTE = "identity GET /organisations"

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture(params=["memory", "redis"])
def storage_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL is not set")
    return REDIS_URL


@pytest.fixture
async def make_limiter(storage_url: str) -> AsyncIterator[MakeLimiter]:
    """Limiters on the test's storage; those made in one test share a key prefix, like gateway replicas."""
    prefix = f"test-{uuid.uuid4().hex}"
    made: list[RateLimiter] = []

    def make(app_limit: str = "1000/hour", route_limit: str = "1000/hour") -> RateLimiter:
        limiter = RateLimiter(storage_url, app_limit=app_limit, route_limit=route_limit, key_prefix=prefix)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()
    if storage_url.startswith("redis"):
        await forget_counters(storage_url, prefix)


async def forget_counters(redis_url: str, prefix: str) -> None:
    """Delete a test's counters so a shared Redis does not fill up with them."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*")]
        if keys:
            await client.delete(tuple(keys))
    finally:
        client.connection_pool.disconnect()


def header(decision: RateDecision, name: str) -> str | None:
    values = [value.decode() for key, value in decision.headers() if key.decode() == name]
    assert len(values) <= 1, f"{name} sent twice"
    return values[0] if values else None


async def calls(limiter: RateLimiter, count: int, client_id: str = "app-1", route: str = ROUTE) -> list[RateDecision]:
    return [await limiter.check(client_id, route) for _ in range(count)]


# Hour windows keep the counts exact: a test would have to straddle the top of the hour to see a
# previous window's share.


async def test_admits_exactly_the_limit_then_refuses_with_retry_after(
    make_limiter: MakeLimiter, storage_url: str
) -> None:
    limiter = make_limiter(route_limit="5/hour")
    # Nothing was counted in the previous hour, so room comes back when the current window ends: in
    # Redis an hour after the first call, in process at the top of the clock hour.
    window_end = 3600 if storage_url.startswith("redis") else math.ceil(3600 - time.time() % 3600)

    admitted = await calls(limiter, 5)
    refused = await calls(limiter, 3)

    assert [d.allowed for d in admitted] == [True] * 5
    assert [d.allowed for d in refused] == [False] * 3
    assert [header(d, "ratelimit-remaining") for d in admitted] == ["4", "3", "2", "1", "0"]
    assert all(header(d, "retry-after") is None for d in admitted)
    retry_after = header(refused[0], "retry-after")
    assert retry_after is not None
    assert abs(int(retry_after) - window_end) <= 1
    assert header(refused[0], "ratelimit-reset") == retry_after
    assert header(refused[0], "ratelimit-remaining") == "0"
    assert header(refused[0], "ratelimit-limit") == "5"


async def test_headers_describe_the_limit_closest_to_exhaustion(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(app_limit="4/hour", route_limit="3/hour")

    first = await limiter.check("app-1", "identity GET /a")
    await limiter.check("app-1", "identity GET /b")
    third = await limiter.check("app-1", "identity GET /c")

    # After one call the route (3, 2 left) is tighter than the app (4, 3 left); after three calls on
    # three routes each route has 2 left but the app only 1.
    assert header(first, "ratelimit-limit") == "3"
    assert header(first, "ratelimit-remaining") == "2"
    assert header(third, "ratelimit-limit") == "4"
    assert header(third, "ratelimit-remaining") == "1"
    assert header(first, "ratelimit-policy") == "4;w=3600, 3;w=3600"
    reset = header(first, "ratelimit-reset")
    assert reset is not None
    assert 1 <= int(reset) <= 3600


async def test_a_route_can_set_its_own_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(app_limit="100/hour", route_limit="50/hour")

    special = [await limiter.check("app-1", ROUTE, "2/minute") for _ in range(3)]
    ordinary = await calls(limiter, 3, route=OTHER_ROUTE)

    assert [d.allowed for d in special] == [True, True, False]
    assert header(special[0], "ratelimit-limit") == "2"
    assert header(special[0], "ratelimit-policy") == "100;w=3600, 2;w=60"
    assert all(d.allowed for d in ordinary)
    assert header(ordinary[0], "ratelimit-policy") == "100;w=3600, 50;w=3600"


async def test_one_apps_exhaustion_leaves_other_apps_alone(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(app_limit="3/hour")

    await calls(limiter, 3, client_id="busy-app")
    busy = await limiter.check("busy-app", ROUTE)
    other = await calls(limiter, 3, client_id="quiet-app")

    assert not busy.allowed
    assert all(d.allowed for d in other)
    assert header(other[0], "ratelimit-remaining") == "2"


async def test_an_exhausted_route_leaves_the_apps_other_routes_usable(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(app_limit="5/hour", route_limit="2/hour")

    on_route = await calls(limiter, 2 + 10)
    elsewhere = await calls(limiter, 4, route=OTHER_ROUTE)

    assert [d.allowed for d in on_route] == [True, True] + [False] * 10
    assert [d.allowed for d in elsewhere] == [True, True, False, False]
    assert header(elsewhere[2], "ratelimit-limit") == "2"  # the other route's own limit, now spent
    # The ten refused calls did not spend the app's quota: the 5th admitted call is still to come.
    assert (await limiter.check("app-1", "identity GET /third")).allowed
    assert not (await limiter.check("app-1", "identity GET /fourth")).allowed


async def test_after_retry_after_the_call_goes_through(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(app_limit="2/second", route_limit="3/hour")

    admitted = await calls(limiter, 2)
    refused = await calls(limiter, 5)
    retry_after = header(refused[-1], "retry-after")
    assert retry_after is not None
    await asyncio.sleep(int(retry_after))
    later = await calls(limiter, 2)

    assert all(d.allowed for d in admitted)
    assert not any(d.allowed for d in refused)
    assert header(refused[-1], "ratelimit-limit") == "2"
    # Refused by the app limit, the five calls did not spend the route's quota: one of its three is left.
    assert later[0].allowed
    assert header(later[0], "ratelimit-remaining") == "0"
    assert not later[1].allowed
    assert header(later[1], "ratelimit-limit") == "3"


async def test_concurrent_calls_never_exceed_the_limit_and_the_refused_spend_nothing(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(app_limit="30/hour", route_limit="10/hour")

    decisions = await asyncio.gather(*(limiter.check("app-1", ROUTE) for _ in range(60)))
    afterwards = await limiter.check("app-1", OTHER_ROUTE, "1000/hour")

    assert sum(d.allowed for d in decisions) == 10
    # The 50 calls the route refused left the app's quota alone: 30 - 10 - 1 remain.
    assert header(afterwards, "ratelimit-limit") == "30"
    assert header(afterwards, "ratelimit-remaining") == "19"


async def test_replicas_sharing_redis_enforce_one_combined_limit(make_limiter: MakeLimiter, storage_url: str) -> None:
    if not storage_url.startswith("redis"):
        pytest.skip("in-process limits are per replica by design")
    replicas = [make_limiter(route_limit="7/hour"), make_limiter(route_limit="7/hour")]

    alternating = [await replicas[i % 2].check("app-1", ROUTE) for i in range(10)]
    concurrent = await asyncio.gather(*(replicas[i % 2].check("app-2", ROUTE) for i in range(40)))

    assert [d.allowed for d in alternating] == [True] * 7 + [False] * 3
    assert header(alternating[6], "ratelimit-remaining") == "0"
    assert sum(d.allowed for d in concurrent) == 7


def unchecked_total() -> float:
    return REGISTRY.get_sample_value("edu_gateway_rate_limit_unchecked_total") or 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_redis_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(
        f"redis://127.0.0.1:{closed_port()}/0", app_limit="100/hour", route_limit="1/hour", outage_retry_seconds=0
    )
    before = unchecked_total()

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
            decisions = await calls(limiter, 5)
    finally:
        await limiter.aclose()

    assert all(d.allowed and not d.checked for d in decisions)
    assert unchecked_total() - before == 5
    # Nothing was counted, so the client is told the quotas but no remaining count.
    assert [name for name, _ in decisions[0].headers()] == [b"ratelimit-policy"]
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


class TcpRelay:
    """A port in front of the test Redis that can be taken away and given back, like a Redis restart."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = closed_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection(*self.target)
        self._writers |= {client_writer, redis_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, redis_writer), pipe(redis_reader, client_writer))
        self._writers -= {client_writer, redis_writer}


@pytest.fixture
async def relay() -> AsyncIterator[TcpRelay]:
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL is not set")
    parts = urlsplit(REDIS_URL)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 6379)
    await relay.start()
    yield relay
    with contextlib.suppress(AssertionError):
        await relay.stop()


async def test_a_redis_outage_is_logged_once_and_counting_resumes_after_it(
    relay: TcpRelay, caplog: pytest.LogCaptureFixture
) -> None:
    assert REDIS_URL is not None
    prefix = f"test-{uuid.uuid4().hex}"
    db = urlsplit(REDIS_URL).path or "/0"
    limiter = RateLimiter(
        f"redis://127.0.0.1:{relay.port}{db}",
        app_limit="100/hour",
        route_limit="3/hour",
        key_prefix=prefix,
        outage_retry_seconds=0,
    )
    try:
        before = await calls(limiter, 1)
        await relay.stop()
        with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
            during = await calls(limiter, 4)
            await relay.start()
            after = await calls(limiter, 3)
    finally:
        await limiter.aclose()
        await forget_counters(REDIS_URL, prefix)

    assert before[0].checked
    assert all(d.allowed and not d.checked for d in during)
    # Counting resumed where it stopped: the calls during the outage were not counted.
    assert [(d.allowed, d.checked) for d in after] == [(True, True), (True, True), (False, True)]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert len([m for m in messages if "reachable again" in m]) == 1
