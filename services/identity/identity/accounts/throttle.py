"""Failed logins per client address."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque


class IpThrottle:
    """Refuses further attempts from an address once it has failed ``limit`` times within ``window_seconds``.

    Kept in memory, per process: a restart forgets it and each replica counts on its own, so N
    replicas allow up to N x ``limit``. That is acceptable because the per-account lockout, which is
    what actually protects an account, lives in the database; this only slows a single noisy address.
    At most ``max_addresses`` addresses are tracked (the least recently failing are forgotten first),
    so a flood of spoofed addresses cannot exhaust memory. Thread-safe (page handlers run in a pool).
    """

    def __init__(self, limit: int, window_seconds: int, *, max_addresses: int = 100_000) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def retry_after(self, address: str | None, *, now: float | None = None) -> int | None:
        """Seconds until ``address`` may try again, or None if it may try now."""
        if address is None:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._recent(address, now)
            if failures is None or len(failures) < self.limit:
                return None
            # Allowed again once enough of the failures have left the window.
            release = failures[len(failures) - self.limit] + self.window_seconds
            return max(1, math.ceil(release - now))

    def record_failure(self, address: str | None, *, now: float | None = None) -> None:
        if address is None:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._recent(address, now)
            if failures is None:
                failures = self._failures[address] = deque()
            failures.append(now)
            # Bounded per address too: only the newest ``limit`` failures matter to the decision.
            while len(failures) > self.limit:
                failures.popleft()
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
