"""Applies the city's suspensions, reinstatements and retirements when their time comes.

Every few seconds it applies the due changes in one transaction each round. The state lives in the database
(``app_status_change.applied_at``), so a restart picks up where it stopped and a change is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from appstore.review.service import apply_due_changes
from kit.db import Database

logger = logging.getLogger("appstore.review.worker")

CHECK_INTERVAL_SECONDS = 2.0


class StatusChangeWorker:
    def __init__(self, database: Database, *, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        self.database = database
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def run_once(self) -> int:
        with self.database.session() as session:
            return apply_due_changes(session)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="appstore-status-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                applied = await asyncio.to_thread(self.run_once)
                if applied:
                    logger.info("applied %d due app status change(s)", applied)
            except Exception:  # a bad round must not stop the schedule; the next round retries
                logger.exception("applying due app status changes failed")
            await asyncio.sleep(self.interval)


def build_worker(app: FastAPI) -> StatusChangeWorker:
    return StatusChangeWorker(app.state.database)
