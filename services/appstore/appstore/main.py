"""The app store service application."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI

from appstore.config import AppStoreSettings, get_settings
from appstore.identity_client import IdentityClient
from appstore.review.proposals import BENEFIT_SUBJECTS, apply_benefit_event
from appstore.roster.handlers import ENROLLMENT_SUBJECTS, IDENTITY_SUBJECTS, apply_roster_event
from appstore.webhooks import fanout as webhook_fanout
from appstore.workers import build_workers
from contracts.events import StreamSpec
from kit.app import ServiceRuntime, Subscription, create_service_app
from kit.crypto import FieldCipher
from kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger("appstore")


def migrate(settings: AppStoreSettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


def _routers() -> list[APIRouter]:
    from appstore.apps.router import router as apps_router
    from appstore.catalog.router import router as catalog_router
    from appstore.installations.router import router as installations_router
    from appstore.launch.router import router as launch_router
    from appstore.review.router import router as review_router
    from appstore.vendors.router import router as vendors_router
    from appstore.web.router import router as web_router
    from appstore.webhooks.router import router as webhooks_router

    return [
        vendors_router, apps_router, review_router, catalog_router, installations_router, launch_router,
        webhooks_router, web_router,
    ]  # fmt: skip


def create_app(settings: AppStoreSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    cipher = FieldCipher(
        settings.secrets_encryption_key.get_secret_value(), settings.secrets_hash_key.get_secret_value()
    )

    async def on_startup(runtime: ServiceRuntime) -> None:
        if settings.run_background_workers:
            for worker in app.state.workers:
                await worker.start()

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        for worker in app.state.workers:
            await worker.stop()
        app.state.identity_client.close()

    app = create_service_app(
        settings,
        title="App store service",
        description=(
            "The app store (应用超市): vendors and their app manifests, the city's review (审核准入) and retirement "
            "(淘汰), the catalog, installations at schools, OIDC and LTI 1.3 launches with Names and Role "
            "Provisioning, and signed webhooks."
        ),
        version="0.1.0",
        routers=_routers(),
        subscriptions=[
            Subscription(
                name="appstore-directory",
                stream=StreamSpec("identity").name,
                subjects=IDENTITY_SUBJECTS,
                handler=apply_roster_event,
            ),
            Subscription(
                name="appstore-rosters",
                stream=StreamSpec("enrollment").name,
                subjects=ENROLLMENT_SUBJECTS,
                handler=apply_roster_event,
            ),
            Subscription(
                name="appstore-webhooks-own",
                stream=StreamSpec("appstore").name,
                subjects=webhook_fanout.APPSTORE_SUBJECTS,
                handler=webhook_fanout.build_handler(settings),
            ),
            Subscription(
                name="appstore-webhooks-rosters",
                stream=StreamSpec("enrollment").name,
                subjects=webhook_fanout.ENROLLMENT_SUBJECTS,
                handler=webhook_fanout.build_handler(settings),
            ),
            Subscription(
                name="appstore-benefit-flags",
                stream=StreamSpec("metering").name,
                subjects=BENEFIT_SUBJECTS,
                handler=apply_benefit_event,
            ),
        ],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    app.state.cipher = cipher
    app.state.identity_client = IdentityClient(settings)
    app.state.workers = build_workers(app)
    return app
