"""The identity service application."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from contracts.events import StreamSpec
from identity.audit import service as audit
from identity.audit.router import router as audit_router
from identity.config import IdentitySettings, get_settings
from identity.deps import Actor
from identity.imports.router import router as imports_router
from identity.imports.service import ImportRunner
from identity.keys import service as keys
from identity.keys.router import router as keys_router
from identity.oauth import app_installations, tokens
from identity.oauth.account_router import router as account_apps_router
from identity.oauth.clients_router import router as oauth_clients_router
from identity.oauth.router import router as oauth_router
from identity.oauth.server import AuthorizationServer
from identity.organisations.router import router as organisations_router
from identity.people.router import router as people_router
from identity.web.router import install as install_pages
from kit.app import ServiceRuntime, Subscription, create_service_app
from kit.auth import JwksCache, TokenVerifier
from kit.crypto import FieldCipher
from kit.db import Database
from kit.errors import Forbidden, problem_response
from kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger("identity")


def migrate(settings: IdentitySettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


async def housekeeping(database: Database, settings: IdentitySettings) -> None:
    """Purge expired OAuth codes and token records, hourly by default."""

    def purge() -> int:
        with database.session() as session:
            return tokens.purge_expired(session)

    while True:
        try:
            purged = await asyncio.to_thread(purge)
            logger.info("purged %d expired OAuth records", purged)
        except Exception:
            logger.exception("purging expired OAuth records failed; retrying at the next interval")
        await asyncio.sleep(settings.oauth_purge_interval_seconds)


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())

    async def on_startup(runtime: ServiceRuntime) -> None:
        with runtime.database.session() as session:
            keys.ensure_signing_key(session, settings)
        if settings.run_background_workers:
            app.state.import_runner.resume_unfinished()
            app.state.housekeeping = asyncio.create_task(housekeeping(runtime.database, settings))

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        if (task := getattr(app.state, "housekeeping", None)) is not None:
            task.cancel()
        app.state.import_runner.shutdown()
        app.state.oauth_executor.shutdown(wait=True)
        await app.state.self_client.aclose()

    app = create_service_app(
        settings,
        title="Identity service",
        description=(
            "The city's directory of organisations (city → district → school), people, roles and guardians; "
            "bulk import; the audit log; and the keys that sign the platform's access tokens."
        ),
        version="0.1.0",
        routers=[
            keys_router,
            oauth_router,
            oauth_clients_router,
            account_apps_router,
            organisations_router,
            people_router,
            imports_router,
            audit_router,
        ],
        subscriptions=[
            # An app's tokens end with its installation at a school, its suspension or its retirement.
            Subscription(
                name="identity-app-installations",
                stream=StreamSpec("appstore").name,
                subjects=app_installations.APPSTORE_SUBJECTS,
                handler=app_installations.apply_appstore_event,
            ),
        ],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    app.state.cipher = cipher
    app.state.oauth_server = AuthorizationServer(settings)
    app.state.oauth_executor = ThreadPoolExecutor(settings.oauth_threads, thread_name_prefix="oauth")
    app.state.import_runner = ImportRunner(
        app.state.database, cipher, max_bytes=settings.import_max_bytes, max_rows=settings.import_max_rows
    )
    # Identity verifies its own tokens through its own JWKS endpoint, in-process.
    app.state.self_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.public_base_url)
    app.state.jwks = JwksCache(settings.jwks_url, http_client=app.state.self_client)
    app.state.token_verifier = TokenVerifier(
        app.state.jwks, issuer=settings.token_issuer, audience=settings.token_audience
    )

    async def audit_denial(request: Request, exc: Exception) -> JSONResponse:
        """Refused attempts are security events too: record them, outside the rolled-back request."""
        assert isinstance(exc, Forbidden)
        actor: Actor | None = getattr(request.state, "actor", None)
        if actor is not None:
            with app.state.database.session() as session:
                audit.record(
                    session, action=f"denied:{request.method} {request.url.path}"[:64], actor=actor,
                    result="denied", detail={"reason": exc.detail or exc.title_en},
                )  # fmt: skip
        return problem_response(request, exc)

    app.add_exception_handler(Forbidden, audit_denial)
    install_pages(app)  # login, second factor, password change, account pages; /static; the per-address throttle
    return app
