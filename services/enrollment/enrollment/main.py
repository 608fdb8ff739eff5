"""The enrollment service application."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI

from contracts.events import StreamSpec
from enrollment.admission.verification import Verifier
from enrollment.config import EnrollmentSettings, get_settings
from enrollment.dataexchange import DEMO_RECORDS_CSV, DataExchange, HttpDataExchange
from enrollment.directory.handlers import SUBJECTS as IDENTITY_SUBJECTS
from enrollment.directory.handlers import identity_event_handler
from kit.app import ServiceRuntime, Subscription, create_service_app
from kit.crypto import FieldCipher
from kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger("enrollment")


def migrate(settings: EnrollmentSettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


def _routers() -> list[APIRouter]:
    from enrollment.academics.router import router as academics_router
    from enrollment.admission.router import router as admission_router
    from enrollment.changes.router import router as changes_router
    from enrollment.oneroster.router import router as oneroster_router

    return [admission_router, academics_router, oneroster_router, changes_router]


def create_app(settings: EnrollmentSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())

    async def on_startup(runtime: ServiceRuntime) -> None:
        if settings.run_background_workers:
            await app.state.verifier.start()

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        await app.state.verifier.stop()
        await app.state.data_exchange.aclose()

    app = create_service_app(
        settings,
        title="Enrollment service",
        description=(
            "Online admission (入学一件事) with verification through the city's data-sharing platform and an "
            "auditable lottery; school years, classes and class membership; OneRoster 1.2 rosters and a change feed."
        ),
        version="0.1.0",
        routers=_routers(),
        subscriptions=[
            Subscription(
                name="enrollment-directory",
                stream=StreamSpec("identity").name,
                subjects=IDENTITY_SUBJECTS,
                handler=identity_event_handler(cipher),
            )
        ],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    app.state.cipher = cipher
    app.state.data_exchange = data_exchange(settings)
    app.state.verifier = Verifier(
        app.state.database, app.state.cipher, app.state.data_exchange,
        retry_seconds=settings.verification_retry_seconds, poll_seconds=settings.verification_poll_seconds,
        insurance_city=settings.insurance_city,
    )  # fmt: skip
    return app


def data_exchange(settings: EnrollmentSettings) -> DataExchange:
    """The city's data-sharing platform over signed HTTP, or the simulator in-process (development, tests)."""
    if settings.data_exchange == "http":
        return HttpDataExchange(
            settings.data_exchange_url, app_id=settings.data_exchange_app_id,
            secret=settings.data_exchange_secret.get_secret_value(),
            timeout_seconds=settings.data_exchange_timeout_seconds, retries=settings.data_exchange_retries,
        )  # fmt: skip
    from enrollment.dataexchange.simulator import SimulatedDataExchange, load_records

    return SimulatedDataExchange(load_records(settings.data_exchange_records_csv or DEMO_RECORDS_CSV))
