"""The one way a service becomes a running FastAPI app.

``create_service_app`` wires what every service has: problem+json errors, telemetry, health and
metrics, the database, the NATS link, the outbox relay and the service's event consumers, all
started and stopped by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI

from contracts.events import StreamSpec
from kit.auth import JwksCache, TokenVerifier
from kit.db import Database
from kit.errors import install_problem_handlers
from kit.health import Check, health_router
from kit.inbox import BatchHandler, EventConsumer, Handler
from kit.messaging import NatsLink
from kit.outbox import OutboxRelay
from kit.settings import ServiceSettings
from kit.telemetry import configure_logging, configure_tracing, instrument_app, metrics_router

logger = logging.getLogger("kit.app")


@dataclass(frozen=True)
class Subscription:
    """An event consumer a service declares: durable name, stream, subjects and handler.

    ``batch_handler`` instead of ``handler`` applies each fetched batch (up to ``batch_size`` events) in one
    transaction, for high-volume streams; a batch that fails is applied again one event at a time.
    ``deduplicated_by_handler``: event types the handler itself keeps from taking effect twice (a unique key of its
    own on what the event records); the consumer keeps no processed-id row for them (see ``EventConsumer``).
    """

    name: str
    stream: str
    subjects: list[str]
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    batch_size: int = 100
    deduplicated_by_handler: frozenset[str] = frozenset()


@dataclass
class ServiceRuntime:
    """What the lifespan started; kept on ``app.state.runtime``."""

    settings: ServiceSettings
    database: Database
    link: NatsLink
    relay: OutboxRelay
    consumers: list[EventConsumer] = field(default_factory=list)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    version: str,
    routers: Sequence[APIRouter],
    publishes: bool = True,
    subscriptions: Sequence[Subscription] = (),
    on_startup: Callable[[ServiceRuntime], Awaitable[None]] | None = None,
    on_shutdown: Callable[[ServiceRuntime], Awaitable[None]] | None = None,
    openapi_tags: list[dict[str, str]] | None = None,
    readiness_checks: Mapping[str, Check] | None = None,
    serve_openapi: bool = True,
) -> FastAPI:
    configure_logging(settings)
    configure_tracing(settings)
    database = Database(settings.database_url, echo=settings.database_echo)
    streams = [StreamSpec(settings.service_name)] if publishes else []
    link = NatsLink(settings.nats_url, name=settings.service_name, streams=streams)
    relay = OutboxRelay(database, link, service=settings.service_name, batch_size=settings.outbox_batch_size)
    runtime = ServiceRuntime(settings=settings, database=database, link=link, relay=relay)
    for subscription in subscriptions:
        runtime.consumers.append(
            EventConsumer(
                service=settings.service_name,
                name=subscription.name,
                stream=subscription.stream,
                subjects=subscription.subjects,
                handler=subscription.handler,
                batch_handler=subscription.batch_handler,
                batch_size=subscription.batch_size,
                deduplicated_by_handler=subscription.deduplicated_by_handler,
                database=database,
                link=link,
                max_attempts=settings.consumer_max_attempts,
                fetch_timeout=settings.consumer_fetch_timeout_seconds,
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.run_background_workers:
            await link.start()
            await relay.start()
            for consumer in runtime.consumers:
                await consumer.start()
        if on_startup is not None:
            await on_startup(runtime)
        logger.info("%s started", settings.service_name)
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown(runtime)
            # Together: each finishes the message in hand or waits out its current fetch, so one after another
            # would add a fetch timeout per consumer to every shutdown.
            await asyncio.gather(*(consumer.stop() for consumer in runtime.consumers))
            await relay.stop()
            await link.close()
            await app.state.jwks.aclose()
            database.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        openapi_url="/openapi.json" if serve_openapi else None,
        docs_url="/docs" if serve_openapi else None,
        redoc_url="/redoc" if serve_openapi else None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.runtime = runtime
    app.state.jwks = JwksCache(settings.jwks_url)
    app.state.token_verifier = TokenVerifier(
        app.state.jwks, issuer=settings.token_issuer, audience=settings.token_audience
    )
    install_problem_handlers(app)
    instrument_app(app, database.engine)
    app.include_router(
        health_router(database, link if settings.run_background_workers else None, extra_checks=readiness_checks)
    )
    app.include_router(metrics_router())
    for router in routers:
        app.include_router(router)
    return app


def serve(factory: str, settings: ServiceSettings, *, reload: bool = False) -> None:
    """Run a service's app factory (``"identity.main:create_app"``) with uvicorn on its configured address."""
    import uvicorn

    uvicorn.run(
        factory, factory=True, host=settings.http_host, port=settings.http_port, reload=reload, log_config=None,
        server_header=False,
    )  # fmt: skip
