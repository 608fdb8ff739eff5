"""Every table of the metering service, for migrations: each sub-domain's ``models`` module, collected."""

from __future__ import annotations

import importlib

from sqlmodel import SQLModel

from kit.audit import AuditEntry
from kit.db import service_metadata
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

SUB_DOMAINS = ("projections", "usage", "statements", "benefit")


def _tables() -> list[type[SQLModel]]:
    found: list[type[SQLModel]] = []
    for name in SUB_DOMAINS:
        module = importlib.import_module(f"metering.{name}.models")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, SQLModel)
                and hasattr(value, "__table__")
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


metadata = service_metadata(*_tables(), AuditEntry, OutboxEvent, ProcessedEvent)
