"""Closes billing periods on their own once their grace for late usage has passed.

Every ``period_check_seconds`` it looks at the last three months and closes, oldest first, each one whose grace
ended and that is still open, one transaction per period. The state lives in the database (a ``billing_period``
row, whose primary key refuses a second close), so a restart, or two instances, never close a period twice.
The first look happens one interval after start, not at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from kit.db import Database
from kit.errors import Conflict
from metering.config import MeteringSettings
from metering.statements import service

logger = logging.getLogger("metering.statements.worker")


class PeriodCloser:
    def __init__(self, database: Database, settings: MeteringSettings) -> None:
        self.database = database
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def run_once(self, now: datetime | None = None) -> list[str]:
        """Close every due period; returns the periods it closed."""
        moment = now or service.utcnow()
        with self.database.read_session() as session:
            due = service.periods_due(session, now=moment, grace_days=self.settings.grace_days)
        closed: list[str] = []
        for period in due:
            try:
                with self.database.session() as session:
                    record = service.close_period(session, period=period, settings=self.settings, now=moment)
                    statements = record.statements
            except (Conflict, IntegrityError):  # another instance closed it first
                logger.info("period %s was closed elsewhere", period)
                continue
            logger.info("closed period %s: %d statement(s) issued", period, statements)
            closed.append(period)
        return closed

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metering-period-closer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.period_check_seconds)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # a bad round must not stop the schedule; the next round retries
                logger.exception("closing due billing periods failed")


def build_worker(app: FastAPI) -> PeriodCloser:
    return PeriodCloser(app.state.database, app.state.settings)
