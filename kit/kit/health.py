"""Liveness and readiness probes.

* ``GET /healthz``: 200 whenever the process serves requests (liveness; never checks dependencies,
  so a database outage does not get every replica restarted).
* ``GET /readyz``: 200 when the database answers and the NATS link is connected, otherwise 503
  problem+json naming each dependency and whether it is up (readiness; take the replica out of
  the load balancer until it recovers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kit.db import Database
from kit.errors import ServiceUnavailable, problem_response
from kit.messaging import NatsLink

logger = logging.getLogger("kit.health")

Check = Callable[[], Awaitable[bool]]

DATABASE_TIMEOUT_SECONDS = 3.0


def database_check(database: Database, *, timeout: float = DATABASE_TIMEOUT_SECONDS) -> Check:
    """True when ``SELECT 1`` succeeds within ``timeout`` (run in a worker thread)."""

    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.to_thread(database.ping)
        except Exception as error:
            logger.warning("readiness: database not answering (%s: %s)", type(error).__name__, error)
            return False
        return True

    return check


def nats_check(link: NatsLink) -> Check:
    """True while the NATS link is connected."""

    async def check() -> bool:
        return link.is_connected

    return check


async def run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    """Run every check concurrently; a check that raises counts as down."""
    names = list(checks)
    results = await asyncio.gather(*(checks[name]() for name in names), return_exceptions=True)
    return {name: result is True for name, result in zip(names, results, strict=True)}


def health_router(
    database: Database | None,
    link: NatsLink | None = None,
    *,
    extra_checks: Mapping[str, Check] | None = None,
) -> APIRouter:
    """Probes for a service; pass ``link=None`` for a service without NATS."""
    checks: dict[str, Check] = {}
    if database is not None:
        checks["database"] = database_check(database)
    if link is not None:
        checks["nats"] = nats_check(link)
    checks.update(extra_checks or {})

    router = APIRouter(tags=["operations"])

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        results = await run_checks(checks)
        down = [name for name, up in results.items() if not up]
        if down:
            problem = ServiceUnavailable(
                f"Not ready: {', '.join(down)} {'is' if len(down) == 1 else 'are'} unavailable.",
                checks=results,
            )
            response = problem_response(request, problem)
            response.headers["Cache-Control"] = "no-store"
            return response
        body: dict[str, Any] = {"status": "ready", "checks": results}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router
