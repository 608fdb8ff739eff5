"""Billing periods: calendar months in China Standard Time, and the days usage is grouped by.

The city pays by the month as its finance office keeps it, so a month runs from 00:00 on its first day to 00:00 on
the next month's first day in UTC+8 (China has kept one offset all year since 1991), whatever time zone an event
was stamped in.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
# PostgreSQL advisory lock: closing a period takes it exclusively, recording usage shared, so no usage commits into a
# period in the moment it closes (it would be billed nowhere).
PERIOD_LOCK_KEY = 0x6D657465  # "mete"
PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def local_day(at: datetime) -> date:
    """The calendar day in China of an aware moment."""
    return at.astimezone(CHINA_STANDARD_TIME).date()


def period_of(at: datetime) -> str:
    """The billing period ("YYYY-MM") an aware moment falls in."""
    day = local_day(at)
    return f"{day.year:04d}-{day.month:02d}"


def period_of_day(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def parse_period(period: str) -> tuple[int, int]:
    match = PERIOD_PATTERN.match(period)
    if match is None:
        raise ValueError(f"{period!r} is not a period: use YYYY-MM, e.g. 2026-10")
    return int(match.group(1)), int(match.group(2))


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def period_start(period: str) -> datetime:
    """The first moment of the period, in UTC."""
    year, month = parse_period(period)
    return datetime(year, month, 1, tzinfo=CHINA_STANDARD_TIME).astimezone(UTC)


def period_end(period: str) -> datetime:
    """The first moment after the period, in UTC."""
    return period_start(next_period(period))


def grace_ends(period: str, grace_days: int) -> datetime:
    """When a period's grace for late usage ends and it may close on its own."""
    return period_end(period) + timedelta(days=grace_days)


def first_day(period: str) -> date:
    year, month = parse_period(period)
    return date(year, month, 1)


def last_day(period: str) -> date:
    return local_day(period_end(period) - timedelta(seconds=1))
