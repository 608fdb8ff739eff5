"""Logs, traces and metrics, wired the same way in every service.

* ``configure_logging``: one JSON line per record on stdout (``time``, ``level``, ``logger``,
  ``message``, ``service``, ``trace_id``, ``span_id``, ``request_id`` and any ``extra`` fields).
* ``configure_tracing``: an OpenTelemetry SDK tracer provider named after the service; spans are
  exported over OTLP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and an exporter is installed.
* ``instrument_app``: spans for requests, SQL and outgoing httpx calls; Prometheus request metrics
  labelled with the route template; an ``X-Request-Id`` on every response.
* ``metrics_router``: ``GET /metrics`` in the Prometheus text format.

Everything here may run several times in one process (tests build many apps): global state is
set once, metric objects are module-level singletons.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import threading
import time
import uuid
import weakref
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.settings import ServiceSettings

logger = logging.getLogger("kit.telemetry")

REQUEST_ID_HEADER = "X-Request-Id"
# Paths that are neither traced nor counted: probes and scrapes would drown the real traffic.
UNOBSERVED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")

#: The current request's id (set by the request middleware, read by the log filter).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("edu_request_id", default=None)

# Module-level singletons: prometheus_client refuses a second collector with the same name.
HTTP_REQUESTS = Counter(
    "edu_http_requests",  # exposed as edu_http_requests_total
    "HTTP requests served, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "edu_http_request_duration_seconds",
    "Time to serve an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_lock = threading.Lock()
_tracer_provider: TracerProvider | None = None
_httpx_instrumented = False
_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_sqlalchemy_connections_usage: Any = None


# --------------------------------------------------------------------------------------------- logs


class _TelemetryLogFilter(logging.Filter):
    """Adds the service name, the current span's ids and the request id to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = None
            record.span_id = None
        record.request_id = request_id_var.get()
        return True


class _StdoutHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stdout`` is at the time of the record (test capture, reloaders)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


_HANDLER_MARK = "_edu_telemetry_handler"


def configure_logging(settings: ServiceSettings) -> None:
    """Send the root logger's records to stdout, as JSON lines or (``log_json=False``) plain text.

    Idempotent: a second call replaces the handler it installed before instead of adding another.
    """
    handler = _StdoutHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(_TelemetryLogFilter(settings.service_name))
    if settings.log_json:
        handler.setFormatter(
            JsonFormatter(
                ["levelname", "name", "message"],
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(service)s trace=%(trace_id)s] %(message)s")
        )
    root = logging.getLogger()
    with _lock:
        for existing in list(root.handlers):
            if getattr(existing, _HANDLER_MARK, False):
                root.removeHandler(existing)
                existing.close()
        root.addHandler(handler)
        root.setLevel(settings.log_level.upper())


# ------------------------------------------------------------------------------------------- traces


def _otlp_exporter() -> Any | None:
    """The OTLP span exporter, if one is installed (HTTP preferred, then gRPC); it reads its env."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            return None
    return OTLPSpanExporter()


def configure_tracing(settings: ServiceSettings) -> TracerProvider:
    """Install the process's SDK tracer provider (once; later calls return the same provider)."""
    global _tracer_provider
    with _lock:
        if _tracer_provider is not None:
            return _tracer_provider
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):  # someone else (a test, a distro) got there first
            _tracer_provider = current
            return current
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            exporter = _otlp_exporter()
            if exporter is None:
                logger.warning(
                    "OTEL_EXPORTER_OTLP_ENDPOINT is set but no OTLP exporter package is installed; "
                    "spans are not exported"
                )
            else:
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _tracer_provider = provider
        return provider


# ---------------------------------------------------------------------------- request instrumentation


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/people/{person_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return "<unmatched>"


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestTelemetryMiddleware:
    """Pure ASGI middleware: X-Request-Id on every response, Prometheus request metrics."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 500
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(name, value) for name, value in message.get("headers", []) if name != b"x-request-id"]
                headers.append(header)
                message["headers"] = headers
            await send(message)

        started = time.perf_counter()
        try:
            # An exception after the response started keeps the status the client saw; one before
            # it (ServerErrorMiddleware re-raises after sending its 500) leaves the 500.
            await self.app(scope, receive, send_with_request_id)
        finally:
            request_id_var.reset(token)
            if scope.get("path") not in UNOBSERVED_PATHS:
                route = _route_template(scope)
                method = scope.get("method", "GET")
                method = method if method in _KNOWN_METHODS else "OTHER"  # bounded label values
                HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                HTTP_REQUEST_DURATION.labels(self.service, method, route).observe(time.perf_counter() - started)


def _service_name_of(app: FastAPI) -> str:
    settings = getattr(app.state, "settings", None)
    name = getattr(settings, "service_name", None)
    return name if isinstance(name, str) and name else app.title


def _install_request_middleware(app: FastAPI, service_name: str | None) -> None:
    """Wrap the whole middleware stack, so even the 500 sent by ServerErrorMiddleware is counted
    and carries an X-Request-Id (``app.add_middleware`` would sit inside that handler)."""
    if getattr(app, "_edu_request_middleware", False):
        return
    original_build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return RequestTelemetryMiddleware(original_build(), service=service_name or _service_name_of(app))

    # Instance attribute shadows the method, as the OpenTelemetry FastAPI instrumentation does.
    setattr(app, "build_middleware_stack", build_middleware_stack)  # noqa: B010
    setattr(app, "_edu_request_middleware", True)  # noqa: B010


def _instrument_engine(engine: Engine) -> None:
    """Spans for the engine's statements (once per engine).

    ``EngineTracer`` is what ``SQLAlchemyInstrumentor().instrument(engine=...)`` attaches; it is used
    directly because the instrumentor can run only once per process (tests build many engines),
    also patches ``create_async_engine`` (importing greenlet, which the platform does not need),
    and refuses SQLAlchemy 2.1 by its declared version range although the engine events are the same.
    """
    global _sqlalchemy_connections_usage
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__

    with _lock:
        if engine in _instrumented_engines:
            return
        if _sqlalchemy_connections_usage is None:
            _sqlalchemy_connections_usage = metrics.get_meter(
                "opentelemetry.instrumentation.sqlalchemy", __version__
            ).create_up_down_counter(
                "db.client.connections.usage",
                unit="connections",
                description="The number of connections that are currently in the state described by the "
                "state attribute.",
            )
        EngineTracer(
            trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__),
            engine,
            _sqlalchemy_connections_usage,
        )
        _instrumented_engines.add(engine)


def _instrument_httpx() -> None:
    global _httpx_instrumented
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    with _lock:
        if _httpx_instrumented:
            return
        instrumentor = HTTPXClientInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        _httpx_instrumented = True


def instrument_app(app: FastAPI, database_engine: Engine | None = None, *, service_name: str | None = None) -> None:
    """Trace requests, SQL and httpx calls; count requests; give every response an X-Request-Id.

    ``service_name`` labels the metrics; by default ``app.state.settings.service_name``, else the
    app's title. Call once per app, before it serves (the stack is built on the first request).
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        excluded = ",".join(f"^[^/]*//[^/]*{re.escape(path)}$" for path in sorted(UNOBSERVED_PATHS))
        FastAPIInstrumentor.instrument_app(app, excluded_urls=excluded)
    # After the OpenTelemetry instrumentation, which insists on finding Starlette's own stack.
    _install_request_middleware(app, service_name)
    if database_engine is not None:
        _instrument_engine(database_engine)
    _instrument_httpx()


def metrics_router() -> APIRouter:
    """``GET /metrics``: the process's Prometheus metrics in the text exposition format."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
