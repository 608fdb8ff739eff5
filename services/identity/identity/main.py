"""The identity service application."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from identity.audit import service as audit
from identity.audit.router import router as audit_router
from identity.config import IdentitySettings, get_settings
from identity.crypto import FieldCipher
from identity.deps import Actor
from identity.imports.router import router as imports_router
from identity.imports.service import ImportRunner
from identity.keys import service as keys
from identity.keys.router import router as keys_router
from identity.organisations.router import router as organisations_router
from identity.people.router import router as people_router
from kit.app import ServiceRuntime, create_service_app
from kit.auth import JwksCache, TokenVerifier
from kit.errors import Forbidden, problem_response
from kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: IdentitySettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())

    async def on_startup(runtime: ServiceRuntime) -> None:
        with runtime.database.session() as session:
            keys.ensure_signing_key(session, settings)
        if settings.run_background_workers:
            app.state.import_runner.resume_unfinished()

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        app.state.import_runner.shutdown()
        await app.state.self_client.aclose()

    app = create_service_app(
        settings,
        title="Identity service",
        description=(
            "The city's directory of organisations (city → district → school), people, roles and guardians; "
            "bulk import; the audit log; and the keys that sign the platform's access tokens."
        ),
        version="0.1.0",
        routers=[keys_router, organisations_router, people_router, imports_router, audit_router],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    app.state.cipher = cipher
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
    return app
