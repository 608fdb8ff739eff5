"""The gateway application: the proxy in front of a small FastAPI app for health, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterable
from pathlib import Path

import httpx

from contracts.api import SERVICE_APIS, ServiceApi
from gateway.config import GatewaySettings, get_settings
from gateway.edge_auth import EdgeAuthenticator
from gateway.installations.handlers import InstallationEventFollower
from gateway.installations.service import InstallationDirectory
from gateway.openapi import MergedOpenApi, http_document_source, openapi_router
from gateway.proxy import GatewayProxy
from gateway.ratelimit import RateLimiter
from gateway.revocations import RevocationFollower, RevocationList
from gateway.routing import RouteTable
from gateway.upstream import Upstreams
from gateway.usage import UsageRecorder
from kit.app import ServiceRuntime, create_service_app
from kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger("gateway")


def migrate(settings: GatewaySettings) -> None:
    upgrade(settings.database_url, MIGRATIONS)


def create_app(settings: GatewaySettings | None = None, *, apis: Iterable[ServiceApi] | None = None) -> GatewayProxy:
    """The gateway as an ASGI app; ``apis`` defaults to every service's catalogue in ``contracts.api``."""
    settings = settings or get_settings()
    catalogue = list(apis if apis is not None else SERVICE_APIS.values())
    revocations = RevocationList()
    # The app store's installation events keep the installation tables, and at once the snapshot, current.
    installation_events = InstallationEventFollower()
    parts: dict[str, object] = {}

    async def revocations_current() -> bool:
        follower = parts.get("follower")
        return isinstance(follower, RevocationFollower) and follower.caught_up.is_set()

    async def installations_loaded() -> bool:
        return installations.loaded

    async def on_startup(runtime: ServiceRuntime) -> None:
        installation_events.bind(installations, asyncio.get_running_loop())
        await installations.refresh()
        await installations.start()
        if settings.run_background_workers:
            follower = RevocationFollower(
                runtime.link, revocations, lookback_seconds=settings.revocation_lookback_seconds
            )
            parts["follower"] = follower
            await follower.start()
            await usage.start()
            await docs.start()
        # Everything loaded so far lives as long as the process: keep it out of the collector's full
        # passes, which otherwise stop the event loop for ~80 ms and decide the gateway's p99.
        gc.collect()
        gc.freeze()

    async def on_shutdown(runtime: ServiceRuntime) -> None:
        follower = parts.get("follower")
        if isinstance(follower, RevocationFollower):
            await follower.stop()
        await docs.stop()
        await docs_client.aclose()
        await usage.stop()
        await installations.stop()
        await limiter.aclose()
        await upstreams.aclose()

    app = create_service_app(
        settings,
        title="API gateway",
        description="The platform's one public entry: routing, token and scope checks, rate limits, usage metering.",
        version="0.1.0",
        routers=[],
        subscriptions=[installation_events.subscription()],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        readiness_checks={"revocations": revocations_current, "installations": installations_loaded},
        serve_openapi=False,
    )
    installations = InstallationDirectory(
        app.state.database,
        refresh_seconds=settings.installation_refresh_seconds,
        extra_origins=settings.cors_extra_origins,
    )
    authenticator = EdgeAuthenticator(
        app.state.token_verifier,
        revocations,
        cache_size=settings.token_cache_size,
        max_token_bytes=settings.max_authorization_bytes,
    )
    limiter = RateLimiter(
        settings.rate_limit_storage_url, app_limit=settings.app_rate_limit, route_limit=settings.route_rate_limit
    )
    usage = UsageRecorder(
        app.state.runtime.link,
        batch_size=settings.usage_batch_size,
        flush_interval=settings.usage_flush_interval_seconds,
        memory_limit=settings.usage_memory_limit,
        spool_dir=settings.usage_spool_dir,
    )
    upstreams = Upstreams(settings)
    docs_client = httpx.AsyncClient(trust_env=False)
    docs = MergedOpenApi(
        catalogue,
        http_document_source(
            docs_client,
            {api.service: settings.upstreams[api.service] for api in catalogue if api.service in settings.upstreams},
        ),
        public_base_url=settings.public_base_url,
        issuer=settings.token_issuer,
        route_rate_limit=settings.route_rate_limit,
        app_rate_limit=settings.app_rate_limit,
        refresh_seconds=settings.openapi_refresh_seconds,
    )
    app.state.openapi = docs
    app.include_router(openapi_router(docs))
    proxy = GatewayProxy(
        app,
        settings=settings,
        table=RouteTable(catalogue),
        authenticator=authenticator,
        installations=installations,
        limiter=limiter,
        usage=usage,
        upstreams=upstreams,
    )
    app.state.revocations = revocations
    app.state.proxy = proxy
    return proxy
