"""The installation check: may this app's token reach this school's data, with these scopes?

The gateway answers from an in-memory snapshot of the installation tables, refreshed every
``installation_refresh_seconds`` and at once after each installation event from the app store (see
:mod:`gateway.installations.handlers`), so no request waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from gateway.installations.models import AppInstallation, AppOrigin
from kit.db import Database

logger = logging.getLogger("gateway.installations")

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    granted: dict[tuple[str, str], frozenset[str]]  # (client_id, school_id) -> scopes
    origins: frozenset[str]
    by_client: dict[str, dict[str, frozenset[str]]]  # client_id -> school_id -> scopes


class InstallationDirectory:
    """Read side of the installation tables, as of the last refresh."""

    def __init__(self, database: Database, *, refresh_seconds: float, extra_origins: list[str] | None = None) -> None:
        self.database = database
        self.refresh_seconds = refresh_seconds
        self.extra_origins = frozenset(origin.rstrip("/") for origin in extra_origins or [])
        self._snapshot = Snapshot({}, self.extra_origins, {})
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.loaded = False

    def granted_scopes(self, client_id: str, school_id: str) -> frozenset[str] | None:
        """The scopes ``school_id`` granted the app's client, or None when it has not installed it."""
        return self._snapshot.granted.get((client_id, school_id))

    def schools_granting(self, client_id: str, scopes: tuple[str, ...]) -> list[str]:
        """The schools that installed the app's client and granted it every one of ``scopes``, sorted."""
        schools = self._snapshot.by_client.get(client_id, {})
        return sorted(school for school, granted in schools.items() if granted.issuperset(scopes))

    def origin_allowed(self, origin: str) -> bool:
        return origin in self._snapshot.origins

    async def refresh(self) -> None:
        self._snapshot = await asyncio.to_thread(self._load)
        self.loaded = True

    def _load(self) -> Snapshot:
        with self.database.read_session() as session:
            rows = session.exec(
                select(AppInstallation.client_id, AppInstallation.school_id, AppInstallation.scopes).where(
                    AppInstallation.active == True  # noqa: E712
                )
            ).all()
            origins = session.exec(select(AppOrigin.origin)).all()
        granted = {(client_id, school_id): frozenset(scopes.split()) for client_id, school_id, scopes in rows}
        by_client: dict[str, dict[str, frozenset[str]]] = {}
        for (client_id, school_id), scopes in granted.items():
            by_client.setdefault(client_id, {})[school_id] = scopes
        return Snapshot(granted, self.extra_origins | frozenset(origins), by_client)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="installation-refresh")

    async def _refresh_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                await self.refresh()
            except Exception:
                logger.exception("could not refresh the installation snapshot; keeping the previous one")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.refresh_seconds)

    async def stop(self) -> None:
        """Stop refreshing; a read in progress finishes first, so its connection goes back before disposal."""
        self._stopped.set()
        if self._task is not None:
            await self._task
            self._task = None


def install(session: Session, *, client_id: str, app_id: str, school_id: str, scopes: list[str]) -> AppInstallation:
    """Record (or update) an installation of an app's client at a school with the granted scopes."""
    row = session.get(AppInstallation, (client_id, school_id))
    if row is None:
        row = AppInstallation(client_id=client_id, school_id=school_id, app_id=app_id, scopes="")
    row.app_id = app_id
    row.scopes = " ".join(sorted(set(scopes)))
    row.active = True
    row.updated_at = datetime.now(UTC)
    session.add(row)
    return row


def uninstall(session: Session, *, client_id: str, school_id: str) -> None:
    row = session.get(AppInstallation, (client_id, school_id))
    if row is not None:
        row.active = False
        row.updated_at = datetime.now(UTC)
        session.add(row)


def register_origin(session: Session, *, client_id: str, origin: str) -> None:
    """Allow browsers on ``origin`` (scheme://host[:port]) to call the API for this app's client."""
    origin = origin.rstrip("/")
    if not _ORIGIN.match(origin):
        raise ValueError(f"{origin!r} is not a web origin (scheme://host[:port])")
    if session.get(AppOrigin, (client_id, origin)) is None:
        session.add(AppOrigin(client_id=client_id, origin=origin))
