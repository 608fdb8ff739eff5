"""The metering service application."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI

from contracts.events import StreamSpec
from kit.app import ServiceRuntime, Subscription, create_service_app
from kit.migrations import upgrade
from metering.config import MeteringSettings, get_settings
from metering.projections.handlers import IDENTITY_SUBJECTS, apply_identity_event
from metering.usage.handlers import (
    APPSTORE_SUBJECTS,
    GATEWAY_SUBJECTS,
    SELF_DEDUPLICATED,
    build_appstore_handler,
    build_gateway_handler,
)
from metering.workers import build_workers

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger("metering")


def migrate(settings: MeteringSettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


def _routers() -> list[APIRouter]:
    from metering.benefit.router import router as benefit_router
    from metering.statements.router import router as statements_router
    from metering.usage.reports_router import router as reports_router
    from metering.usage.router import router as usage_router

    return [reports_router, usage_router, statements_router, benefit_router]


def create_app(settings: MeteringSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    async def on_startup(runtime: ServiceRuntime) -> None:
        if settings.run_background_workers:
            for worker in app.state.workers:
                await worker.start()

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        for worker in app.state.workers:
            await worker.stop()

    app = create_service_app(
        settings,
        title="Metering service",
        description=(
            "Metering and per-use payment (计量与结算): usage from the gateway, the app store and vendors' reports, "
            "each counted once; prices by the plan in force at the time of use, monthly caps per school; "
            "vendors' monthly statements with disputes and the city's approval; and the benefit ranking (绩效) "
            "that proposes apps for retirement."
        ),
        version="0.1.0",
        routers=_routers(),
        subscriptions=[
            Subscription(
                name="metering-gateway-usage",
                stream=StreamSpec("gateway").name,
                subjects=GATEWAY_SUBJECTS,
                batch_handler=build_gateway_handler(settings),
                batch_size=settings.gateway_batch_messages,
                deduplicated_by_handler=SELF_DEDUPLICATED,
            ),
            Subscription(
                name="metering-appstore",
                stream=StreamSpec("appstore").name,
                subjects=APPSTORE_SUBJECTS,
                batch_handler=build_appstore_handler(settings),
                batch_size=settings.ingest_batch_size,
                deduplicated_by_handler=SELF_DEDUPLICATED,
            ),
            Subscription(
                name="metering-directory",
                stream=StreamSpec("identity").name,
                subjects=IDENTITY_SUBJECTS,
                handler=apply_identity_event,
            ),
        ],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    app.state.workers = build_workers(app)
    return app
