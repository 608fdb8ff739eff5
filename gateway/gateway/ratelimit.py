"""Rate limits at the gateway: per app across all routes, and per app on each route.

Strategy: limits' sliding window counter. A fixed window lets a client spend twice its quota across a
window boundary; a moving window keeps one timestamp per call (memory and Redis grow with the quota).
The sliding window counter keeps two integers per limit and weights the previous window by how much
of it still overlaps the last ``window`` seconds, so bursts at a boundary stay close to the quota at
the cost of two counters.

Both limits are read first and a call is counted only when both admit it, so a call refused by one
limit never spends the other's quota. Each count is limits' atomic acquire (a Lua script in Redis),
so concurrent checks, in this process or in other gateway replicas sharing Redis, never let more
calls through than a limit allows. The limit with less room is counted first, so a concurrent call
taking its last unit refuses ours before anything was spent; only if the roomier limit runs out in
that instant does the first keep the unit: fewer calls get through, never more. In process nothing
interleaves at all, since the in-process storage never suspends.

Storage is in process by default and Redis when ``redis://`` (or ``rediss://``) is configured. If
Redis cannot be reached the gateway lets calls through rather than failing them: the outage is
logged once, each unchecked call is counted, and Redis is not asked again for ``outage_retry_seconds``
so a dead Redis does not add a connection attempt to every call.

Headers follow draft-ietf-httpapi-ratelimit-headers-06 (the last draft with separate
``RateLimit-Limit``, ``-Remaining``, ``-Reset`` and ``-Policy`` fields): the numbers describe the
limit closest to exhaustion, and ``RateLimit-Reset`` is the time until that limit frees capacity for
another call, the same moment as ``Retry-After`` on a refusal.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.errors import StorageError
from prometheus_client import Counter

if TYPE_CHECKING:
    from gateway.config import GatewaySettings

logger = logging.getLogger("gateway.ratelimit")

UNCHECKED_CALLS = Counter(
    "edu_gateway_rate_limit_unchecked_total",
    "API calls let through without a rate-limit check because the limit storage was unreachable",
)

# Redis reports TTLs in milliseconds; waiting this much longer makes sure the capacity is really free.
_TTL_RESOLUTION_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a call may proceed, and what to tell the client about its quota."""

    allowed: bool
    limit: int  # of the most restrictive applicable limit
    remaining: int
    reset_seconds: int  # until that limit frees capacity for another call
    policy: str  # every applicable quota, e.g. '200;w=1, 30;w=60'
    checked: bool = True  # False when the storage was unreachable and the call was let through uncounted

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Response headers (ASGI form) telling the client its quota, and when to retry after a refusal."""
        policy = (b"ratelimit-policy", self.policy.encode())
        if not self.checked:
            # Nothing was counted, so only the quotas themselves are known.
            return [policy]
        headers = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
            policy,
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.reset_seconds).encode()))
        return headers


@dataclass(frozen=True, slots=True)
class _Window:
    """A sliding-window counter as the storage reports it, for one limit of one client."""

    item: RateLimitItem
    key: str
    previous_count: int
    previous_ttl: float  # seconds the previous window still weighs in
    current_count: int
    current_ttl: float  # seconds until the current window's counter expires (its end plus one window)

    @property
    def weighted_count(self) -> float:
        expiry = self.item.get_expiry()
        return self.previous_count * self.previous_ttl / expiry + self.current_count

    def admits_one_more(self) -> bool:
        # The same test limits' acquire applies.
        return math.floor(self.weighted_count) + 1 <= self.item.amount

    def counted_once_more(self) -> _Window:
        return _Window(
            self.item, self.key, self.previous_count, self.previous_ttl, self.current_count + 1, self.current_ttl
        )

    @property
    def remaining(self) -> int:
        return max(0, self.item.amount - math.floor(self.weighted_count))

    def seconds_until_below(self, target: int) -> float:
        """Seconds until the weighted count falls below ``target``, if no call is counted meanwhile."""
        weighted = self.weighted_count
        if weighted < target:
            return 0.0
        expiry = self.item.get_expiry()
        if self.current_count < target:
            # The previous window's share decays linearly and is enough on its own.
            return (weighted - target) * expiry / self.previous_count + _TTL_RESOLUTION_SECONDS
        # Only once the current window has ended and its count, now the previous one, has decayed.
        until_window_end = max(0.0, self.current_ttl - expiry)
        decay = expiry * (self.current_count - target) / self.current_count
        return until_window_end + decay + _TTL_RESOLUTION_SECONDS


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _parse_limit(notation: str) -> RateLimitItem:
    try:
        return parse(notation)
    except ValueError:
        raise ValueError(f"{notation!r} is not a rate limit; write <n>/<second|minute|hour>") from None


class _InProcessStorage(MemoryStorage):
    """limits' memory storage, expiring old counters every few seconds instead of after every call.

    limits schedules a scan of every counter after each increment, which costs about 70 µs per call
    with 1,000 live counters and 700 µs with 10,000. Counters are checked for expiry when read anyway,
    so the scan only has to reclaim memory now and then. Nothing here awaits, so each call runs
    without interleaving in the event loop and needs no lock.
    """

    SWEEP_INTERVAL_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = time.time() + self.SWEEP_INTERVAL_SECONDS

    def _sweep_if_due(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
        for key in [key for key, expires_at in self.expirations.items() if expires_at <= now]:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)

    async def get(self, key: str) -> int:
        if self.expirations.get(key, 0) <= time.time():
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
        return self.storage.get(key, 0)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        self._sweep_if_due(now)
        await self.get(key)
        self.storage[key] += amount
        if self.storage[key] == amount:
            self.expirations[key] = now + expiry
        return self.storage[key]

    async def decr(self, key: str, amount: int = 1) -> int:
        await self.get(key)
        self.storage[key] = max(self.storage[key] - amount, 0)
        return self.storage[key]


class RateLimiter:
    """Two sliding-window limits per call: the app's across all routes, and the app's on the route."""

    REDIS_CONNECTIONS = 16

    def __init__(
        self,
        storage_url: str,
        *,
        app_limit: str,
        route_limit: str,
        key_prefix: str = "gateway",
        storage_timeout_seconds: float = 0.1,
        outage_retry_seconds: float = 1.0,
    ) -> None:
        self._app_item = _parse_limit(app_limit)
        self._default_route_item = _parse_limit(route_limit)
        self._route_items: dict[str, RateLimitItem] = {}
        self._policies: dict[RateLimitItem, str] = {}
        self._key_prefix = key_prefix
        self._outage_retry_seconds = outage_retry_seconds
        self._outage_started: float | None = None
        self._retry_storage_at = 0.0
        self._unchecked_during_outage = 0
        self._redis_pool: Any = None
        self._storage: MemoryStorage | RedisStorage = self._open_storage(storage_url, storage_timeout_seconds)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> RateLimiter:
        return cls(
            settings.rate_limit_storage_url,
            app_limit=settings.app_rate_limit,
            route_limit=settings.route_rate_limit,
        )

    def _open_storage(self, storage_url: str, timeout_seconds: float) -> MemoryStorage | RedisStorage:
        scheme = urlsplit(storage_url).scheme
        if scheme in ("memory", "async+memory"):
            return _InProcessStorage()
        if scheme in ("redis", "rediss", "async+redis", "async+rediss"):
            import coredis
            from coredis.retry import NoRetryPolicy

            plain_url = storage_url.removeprefix("async+")
            # The pool is ours so that aclose() can close its sockets (limits' storage has no close). It is
            # bounded because a burst of calls would otherwise open a connection each, and a pile of
            # simultaneous handshakes times out; a check costs ~0.1 ms of client CPU, so a few
            # connections already keep up with everything this process can do.
            self._redis_pool = coredis.BlockingConnectionPool.from_url(
                plain_url,
                max_connections=self.REDIS_CONNECTIONS,
                timeout=1,
                connect_timeout=timeout_seconds,
                stream_timeout=timeout_seconds,
            )
            # Retrying would hold every call up while Redis is away; the outage pause takes care of it.
            options: dict[str, Any] = {"connection_pool": self._redis_pool, "retry_policy": NoRetryPolicy()}
            return RedisStorage(f"async+{plain_url}", wrap_exceptions=True, **options)
        raise ValueError(f"rate-limit storage must be memory:// or redis://host:port/db, got {scheme}://")

    def _route_item(self, route_limit: str | None) -> RateLimitItem:
        if route_limit is None:
            return self._default_route_item
        item = self._route_items.get(route_limit)
        if item is None:
            item = self._route_items[route_limit] = _parse_limit(route_limit)
        return item

    def _policy(self, route_item: RateLimitItem) -> str:
        policy = self._policies.get(route_item)
        if policy is None:
            quotas = (self._app_item, route_item)
            policy = self._policies[route_item] = ", ".join(f"{q.amount};w={q.get_expiry()}" for q in quotas)
        return policy

    async def check(self, client_id: str, route_key: str, route_limit: str | None = None) -> RateDecision:
        """Count one call by ``client_id`` on ``route_key`` if both its limits admit it; else refuse it."""
        route_item = self._route_item(route_limit)
        policy = self._policy(route_item)
        app_counter = self._app_item.key_for(self._key_prefix, "app", client_id)
        route_counter = route_item.key_for(self._key_prefix, "route", client_id, route_key)
        if self._outage_started is not None:
            if time.monotonic() < self._retry_storage_at:
                return self._unchecked(route_item, policy)
            # This call probes the storage; the calls arriving meanwhile do not wait for its answer.
            self._retry_storage_at = time.monotonic() + self._outage_retry_seconds
        try:
            decision = await self._decide([(self._app_item, app_counter), (route_item, route_counter)], policy)
        except (StorageError, OSError, TimeoutError) as error:
            self._storage_failed(error)
            return self._unchecked(route_item, policy)
        if self._outage_started is not None:
            self._storage_recovered()
        return decision

    async def _read(self, item: RateLimitItem, key: str) -> _Window:
        previous_count, previous_ttl, current_count, current_ttl = await self._storage.get_sliding_window(
            key, item.get_expiry()
        )
        return _Window(item, key, previous_count, previous_ttl, current_count, current_ttl)

    async def _decide(self, limits: list[tuple[RateLimitItem, str]], policy: str) -> RateDecision:
        windows = [await self._read(item, key) for item, key in limits]
        full = [window for window in windows if not window.admits_one_more()]
        if full:
            return self._refusal(full, policy)
        # The tightest limit is counted first: if a concurrent call takes its last unit, nothing was spent.
        for window in sorted(windows, key=lambda window: window.remaining):
            acquired = await self._storage.acquire_sliding_window_entry(
                window.key, window.item.amount, window.item.get_expiry()
            )
            if not acquired:
                return self._refusal([await self._read(window.item, window.key)], policy)
        counted = [window.counted_once_more() for window in windows]
        tightest = min(counted, key=lambda window: (window.remaining, -window.item.get_expiry()))
        return RateDecision(
            allowed=True,
            limit=tightest.item.amount,
            remaining=tightest.remaining,
            reset_seconds=_whole_seconds(tightest.seconds_until_below(math.floor(tightest.weighted_count))),
            policy=policy,
        )

    @staticmethod
    def _refusal(full: list[_Window], policy: str) -> RateDecision:
        # The call can succeed only once every full limit has room again.
        waits = [(window.seconds_until_below(window.item.amount), window) for window in full]
        wait, binding = max(waits, key=lambda pair: pair[0])
        return RateDecision(
            allowed=False, limit=binding.item.amount, remaining=0, reset_seconds=_whole_seconds(wait), policy=policy
        )

    def _unchecked(self, route_item: RateLimitItem, policy: str) -> RateDecision:
        UNCHECKED_CALLS.inc()
        self._unchecked_during_outage += 1
        tightest = min(self._app_item, route_item, key=lambda item: item.amount / item.get_expiry())
        return RateDecision(
            allowed=True,
            limit=tightest.amount,
            remaining=tightest.amount,
            reset_seconds=0,
            policy=policy,
            checked=False,
        )

    def _storage_failed(self, error: BaseException) -> None:
        self._retry_storage_at = time.monotonic() + self._outage_retry_seconds
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            self._unchecked_during_outage = 0
            logger.warning(
                "Rate-limit storage unreachable, letting calls through unchecked until it is back: %s", error
            )

    def _storage_recovered(self) -> None:
        assert self._outage_started is not None
        logger.warning(
            "Rate-limit storage reachable again after %.1f s; %d calls went through unchecked",
            time.monotonic() - self._outage_started,
            self._unchecked_during_outage,
        )
        self._outage_started = None

    async def aclose(self) -> None:
        if self._redis_pool is not None:
            self._redis_pool.disconnect()
            self._redis_pool = None
