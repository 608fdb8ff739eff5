"""The sample app's memory: pending sign-ins, sessions, LTI launch data, webhook ids seen, usage tallies.

A real vendor keeps these in its database or cache; the sample keeps them in memory so it runs with no
set-up. Every entry that a browser or the platform can create expires, so nothing grows without bound.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class ExpiringStore:
    """A thread-safe dict whose entries expire (PyLTI1p3 calls it from worker threads)."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        expires = time.monotonic() + (self._ttl if ttl_seconds is None else ttl_seconds)
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            return item[1]

    def pop(self, key: str) -> Any:
        with self._lock:
            item = self._items.pop(key, None)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def values(self) -> list[Any]:
        """The entries not yet expired."""
        now = time.monotonic()
        with self._lock:
            return [value for expires, value in self._items.values() if expires >= now]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


@dataclass(frozen=True)
class ReceivedWebhook:
    """One webhook delivery the app accepted."""

    message_id: str
    event_type: str
    received_at: datetime
    data: dict[str, Any]


class WebhookInbox:
    """Deduplicates deliveries by ``webhook-id`` (retries and replays repeat it) and keeps the latest ones."""

    def __init__(self, *, remember: int = 10_000, show: int = 20) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self.latest: deque[ReceivedWebhook] = deque(maxlen=show)
        self._lock = threading.Lock()

    def accept(self, message_id: str, event_type: str, data: dict[str, Any]) -> bool:
        """Record a delivery; ``False`` when this id was already handled (a retry or a replay)."""
        with self._lock:
            if message_id in self._seen:
                return False
            self._seen[message_id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            self.latest.appendleft(ReceivedWebhook(message_id, event_type, datetime.now(UTC), data))
            return True


@dataclass
class LaunchTally:
    """Units of work done in one launch (e.g. homework marked), to report to metering."""

    launch_id: str  # the platform's launch id, or a local one when the platform sent none
    school_id: str
    started_at: datetime
    platform_launch: bool = True
    units: int = 0
    reported_units: int = 0
    last_unit_at: datetime | None = None  # when the latest unit of work was done
    # A report sent but not yet accepted keeps its idempotency id, quantity and time of use, so a retry repeats
    # them exactly.
    open_report_id: str | None = None
    open_report_quantity: int = 0
    open_report_at: datetime | None = None
    report_ids: list[str] = field(default_factory=list)
    # Why metering rejected the open report the last time it was sent (shown on the tally page).
    last_problem: str | None = None


class UsageTally:
    """Units per launch; the launches of a school are forgotten when the school uninstalls the app."""

    def __init__(self) -> None:
        self._launches: dict[str, LaunchTally] = {}
        self._lock = threading.Lock()

    def start(self, launch_id: str, school_id: str, *, platform_launch: bool = True) -> LaunchTally:
        with self._lock:
            return self._launches.setdefault(
                launch_id,
                LaunchTally(
                    launch_id=launch_id, school_id=school_id, started_at=datetime.now(UTC),
                    platform_launch=platform_launch,
                ),
            )  # fmt: skip

    def add(self, launch_id: str, units: int = 1, *, at: datetime | None = None) -> LaunchTally | None:
        """Count ``units`` of work done in the launch ``at`` (now by default)."""
        with self._lock:
            tally = self._launches.get(launch_id)
            if tally is not None:
                tally.units += units
                tally.last_unit_at = at or datetime.now(UTC)
            return tally

    def get(self, launch_id: str) -> LaunchTally | None:
        return self._launches.get(launch_id)

    def all(self) -> list[LaunchTally]:
        with self._lock:
            return sorted(self._launches.values(), key=lambda tally: tally.started_at, reverse=True)

    def forget_school(self, school_id: str) -> int:
        """Delete everything kept about a school (after uninstallation); returns how many launches went."""
        with self._lock:
            gone = [key for key, tally in self._launches.items() if tally.school_id == school_id]
            for key in gone:
                del self._launches[key]
            return len(gone)
