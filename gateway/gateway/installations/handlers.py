"""Follows the app store's installation events into the gateway's installation tables.

``InstallationGrantedV1`` installs (or re-grants) an app's client at a school, ``InstallationRemovedV1`` uninstalls
it. The in-memory snapshot is refreshed as soon as the change commits, so an uninstalled app is refused from the
next request on rather than after the periodic refresh.

Idempotent and order-safe: each row remembers the time of the fact it holds, and an older fact (a redelivery, or
a grant overtaken by a removal) is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import event as sa_event
from sqlmodel import Session

from contracts.envelope import EventEnvelope
from contracts.events import StreamSpec
from contracts.events.appstore import InstallationGrantedV1, InstallationRemovedV1
from gateway.installations.models import AppInstallation
from gateway.installations.service import InstallationDirectory, install, uninstall
from kit.app import Subscription

logger = logging.getLogger("gateway.installations")

APPSTORE_SUBJECTS = [InstallationGrantedV1.subject(), InstallationRemovedV1.subject()]
#: How long the consumer waits for the snapshot to reload after a change; the periodic refresh catches up if not.
REFRESH_TIMEOUT_SECONDS = 10.0


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _is_stale(session: Session, client_id: str, school_id: str, at: datetime) -> bool:
    row = session.get(AppInstallation, (client_id, school_id))
    return row is not None and _utc(row.updated_at) > _utc(at)


def apply_installation_event(session: Session, envelope: EventEnvelope) -> bool:
    """Apply one app store event to the installation tables; returns whether anything changed."""
    data = envelope.data or {}
    if envelope.type == InstallationGrantedV1.event_type():
        granted = InstallationGrantedV1.model_validate(data)
        if _is_stale(session, granted.client_id, granted.school_id, granted.granted_at):
            return False
        row = install(
            session, client_id=granted.client_id, app_id=granted.app_id, school_id=granted.school_id,
            scopes=granted.scopes,
        )  # fmt: skip
        row.updated_at = granted.granted_at
        return True
    if envelope.type == InstallationRemovedV1.event_type():
        removed = InstallationRemovedV1.model_validate(data)
        if _is_stale(session, removed.client_id, removed.school_id, removed.removed_at):
            return False
        uninstall(session, client_id=removed.client_id, school_id=removed.school_id)
        row = session.get(AppInstallation, (removed.client_id, removed.school_id))
        if row is not None:
            row.updated_at = removed.removed_at
            session.add(row)
        return True
    return False


class InstallationEventFollower:
    """The gateway's consumer of installation events; refreshes the directory's snapshot after each change."""

    def __init__(self) -> None:
        self.directory: InstallationDirectory | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, directory: InstallationDirectory, loop: asyncio.AbstractEventLoop) -> None:
        """Called at startup: the snapshot to refresh, and the event loop it lives on."""
        self.directory = directory
        self._loop = loop

    def subscription(self) -> Subscription:
        return Subscription(
            name="gateway-installations",
            stream=StreamSpec("appstore").name,
            subjects=APPSTORE_SUBJECTS,
            handler=self.handle,
        )

    def handle(self, session: Session, envelope: EventEnvelope) -> None:
        """Runs in the consumer's worker thread, inside the transaction that also records the event as handled."""
        if apply_installation_event(session, envelope):
            sa_event.listen(session, "after_commit", self._refresh_now, once=True)

    def _refresh_now(self, _session: Session) -> None:
        if self.directory is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.directory.refresh(), self._loop)
        try:
            future.result(timeout=REFRESH_TIMEOUT_SECONDS)
        except Exception:
            logger.exception("could not refresh the installation snapshot after an event; the next refresh will")
