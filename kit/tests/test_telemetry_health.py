"""Metrics, request ids, JSON logs with trace ids, spans, and the health probes against real NATS."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from kit.db import Database
from kit.errors import PROBLEM_CONTENT_TYPE, NotFound, install_problem_handlers
from kit.health import health_router
from kit.messaging import NatsLink
from kit.natsserver import NatsServer
from kit.settings import ServiceSettings
from kit.telemetry import configure_logging, configure_tracing, instrument_app, metrics_router

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def settings_for(service: str, *, log_json: bool = True) -> ServiceSettings:
    return ServiceSettings(service_name=service, environment="test", log_json=log_json)


def make_app(service: str, database: Database | None = None, link: NatsLink | None = None) -> FastAPI:
    settings = settings_for(service)
    configure_tracing(settings)
    app = FastAPI(title=service)
    app.state.settings = settings
    install_problem_handlers(app)
    instrument_app(app, database.engine if database is not None else None)
    app.include_router(metrics_router())
    app.include_router(health_router(database, link))
    log = logging.getLogger(f"test.{service}")

    @app.get("/people/{person_id}")
    async def person(person_id: str) -> dict[str, str]:
        if person_id == "missing":
            raise NotFound("no such person")
        return {"id": person_id}

    @app.get("/traced")
    async def traced() -> dict[str, str]:
        context = trace.get_current_span().get_span_context()
        log.info("inside the request", extra={"person_id": "p-1"})
        return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    @app.get("/query")
    def query() -> dict[str, int]:
        assert database is not None
        with database.session() as session:
            return {"one": int(session.execute(text("SELECT 1")).scalar_one())}

    return app


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    clients: list[httpx.AsyncClient] = []

    def open_client(app: FastAPI) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://service.test")
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.aclose()


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """Put the root logger back as it was: configure_logging changes process-wide state."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]


# ------------------------------------------------------------------------------------------- metrics


async def test_metrics_count_requests_by_route_template(client_for) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    client = client_for(make_app(service))
    for person_id in ("p1", "p2", "p3", "missing"):
        await client.get(f"/people/{person_id}")
    await client.get("/no/such/path")
    await client.get("/healthz")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts = {
        (labels["route"], labels["status"]): value
        for labels, value in samples(response.text, "edu_http_requests_total")
        if labels["service"] == service
    }
    assert counts == {
        ("/people/{person_id}", "200"): 3.0,
        ("/people/{person_id}", "404"): 1.0,
        ("<unmatched>", "404"): 1.0,
    }
    durations = [
        labels
        for labels, _ in samples(response.text, "edu_http_request_duration_seconds_count")
        if labels["service"] == service
    ]
    assert {labels["route"] for labels in durations} == {"/people/{person_id}", "<unmatched>"}
    assert "/people/p1" not in response.text


async def test_two_apps_in_one_process_share_the_metric_singletons(client_for) -> None:
    first, second = f"svc-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
    await client_for(make_app(first)).get("/people/x")
    second_client = client_for(make_app(second))
    await second_client.get("/people/y")
    exposition = (await second_client.get("/metrics")).text
    services = {labels["service"] for labels, _ in samples(exposition, "edu_http_requests_total")}
    assert {first, second} <= services


async def test_an_unhandled_error_is_counted_and_still_has_a_request_id(client_for) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    client = client_for(make_app(service))
    response = await client.get("/boom", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["x-request-id"] == "req-500"
    exposition = (await client.get("/metrics")).text
    assert ({"service": service, "method": "GET", "route": "/boom", "status": "500"}, 1.0) in samples(
        exposition, "edu_http_requests_total"
    )


# --------------------------------------------------------------------------------------- request ids


async def test_a_sane_request_id_is_echoed(client_for) -> None:
    client = client_for(make_app("ids"))
    response = await client.get("/people/p1", headers={"X-Request-Id": "3f2a-9c:gateway.42"})
    assert response.headers["x-request-id"] == "3f2a-9c:gateway.42"
    assert response.headers.get_list("x-request-id") == ["3f2a-9c:gateway.42"]


@pytest.mark.parametrize(
    "incoming", [None, "", "x" * 65, "has space", 'quote"d', "<script>", "-leading-dash", "中文".encode()]
)
async def test_a_missing_or_insane_request_id_is_replaced(client_for, incoming: str | bytes | None) -> None:
    client = client_for(make_app("ids"))
    headers = {} if incoming is None else {"X-Request-Id": incoming}
    response = await client.get("/people/p1", headers=headers)
    generated = response.headers["x-request-id"]
    assert HEX32.match(generated)
    assert generated != incoming
    other = await client.get("/people/p1", headers=headers)
    assert other.headers["x-request-id"] != generated


async def test_probes_and_problems_carry_a_request_id_too(client_for) -> None:
    client = client_for(make_app("ids"))
    for path in ("/healthz", "/readyz", "/metrics", "/people/missing", "/nowhere"):
        assert HEX32.match((await client.get(path)).headers["x-request-id"]), path


# ------------------------------------------------------------------------------------------- logging


async def test_json_log_lines_carry_the_request_span(client_for, root_logger, capsys) -> None:
    configure_logging(settings_for("logs"))
    configure_logging(settings_for("logs"))  # idempotent: still one handler
    ours = [handler for handler in root_logger.handlers if getattr(handler, "_edu_telemetry_handler", False)]
    assert len(ours) == 1

    response = await client_for(make_app("logs")).get("/traced", headers={"X-Request-Id": "req-log-1"})
    ids = response.json()
    logging.getLogger("test.outside").warning("outside any request")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    inside = next(line for line in lines if line["message"] == "inside the request")
    assert HEX32.match(inside["trace_id"]) and inside["trace_id"] == ids["trace_id"]
    assert HEX16.match(inside["span_id"]) and inside["span_id"] == ids["span_id"]
    assert inside["service"] == "logs"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "test.logs"
    assert inside["request_id"] == "req-log-1"
    assert inside["person_id"] == "p-1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inside["time"])
    outside = next(line for line in lines if line["message"] == "outside any request")
    assert outside["trace_id"] is None and outside["span_id"] is None
    assert outside["level"] == "WARNING"


def test_plain_text_logs_when_json_is_off(root_logger, capsys) -> None:
    configure_logging(settings_for("plain", log_json=False))
    logging.getLogger("test.plain").warning("hello %s", "world")
    out = capsys.readouterr().out
    assert "hello world" in out
    assert "WARNING" in out and "[plain" in out
    assert not out.lstrip().startswith("{")


# ------------------------------------------------------------------------------------------- tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = configure_tracing(settings_for("spans"))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def test_tracing_is_configured_once_per_process() -> None:
    provider = configure_tracing(settings_for("first"))
    assert configure_tracing(settings_for("second")) is provider
    assert trace.get_tracer_provider() is provider


async def test_requests_and_sql_are_traced_but_probes_are_not(
    client_for, spans: InMemorySpanExporter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("one", "two"):  # the second engine takes the already-instrumented path
        database = Database(f"sqlite:///{tmp_path / name}.db")
        try:
            client = client_for(make_app(f"traced-{name}", database))
            spans.clear()
            assert (await client.get("/query")).json() == {"one": 1}
            await client.get("/healthz")
            await client.get("/metrics")
            finished = spans.get_finished_spans()
            server = [span for span in finished if span.kind == trace.SpanKind.SERVER]
            assert [span.name for span in server] == ["GET /query"]
            sql = [
                span
                for span in finished
                if span.attributes and "SELECT" in str(span.attributes.get("db.statement", ""))
            ]
            assert sql, [span.name for span in finished]
            assert sql[0].context.trace_id == server[0].context.trace_id
        finally:
            database.dispose()
    # The instrumentations refuse silently (an ERROR log) when they cannot apply; none may have.
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


# -------------------------------------------------------------------------------------------- health


async def wait_until(predicate, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def link(nats_server: NatsServer) -> AsyncIterator[NatsLink]:
    link = NatsLink(nats_server.url, name="health-test")
    await link.start()
    assert await link.wait_connected(10)
    try:
        yield link
    finally:
        await link.close()


async def test_healthz_is_always_ok(client_for, tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'gone' / 'x.db'}")
    shutil.rmtree(tmp_path / "gone")
    try:
        response = await client_for(make_app("health", database, NatsLink("nats://127.0.0.1:1", name="x"))).get(
            "/healthz"
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    finally:
        database.dispose()


async def test_readyz_is_200_when_database_and_nats_answer(client_for, database_url: str, link: NatsLink) -> None:
    database = Database(database_url)
    try:
        response = await client_for(make_app("ready", database, link)).get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"database": True, "nats": True}}
    finally:
        database.dispose()


async def test_readyz_is_503_while_nats_is_down_and_recovers(
    client_for, database_url: str, link: NatsLink, nats_server: NatsServer
) -> None:
    database = Database(database_url)
    try:
        client = client_for(make_app("ready", database, link))
        nats_server.stop()
        await wait_until(lambda: not link.is_connected)
        response = await client.get("/readyz", headers={"Accept-Language": "en"})
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["type"].endswith("/service-unavailable")
        assert body["title"] == "Service unavailable"
        assert body["status"] == 503
        assert body["checks"] == {"database": True, "nats": False}
        assert "nats" in body["detail"]

        nats_server.start()
        await wait_until(lambda: link.is_connected)
        assert (await client.get("/readyz")).status_code == 200
    finally:
        database.dispose()


async def test_readyz_is_503_when_the_database_file_is_unreachable(client_for, tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'gone' / 'service.db'}")
    shutil.rmtree(tmp_path / "gone")  # the directory of the database file disappears
    try:
        response = await client_for(make_app("ready", database)).get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": False}
        assert "database" in response.json()["detail"]
    finally:
        database.dispose()


async def test_readyz_reports_every_dependency_that_is_down(client_for, tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'gone' / 'service.db'}")
    shutil.rmtree(tmp_path / "gone")
    never_connected = NatsLink("nats://127.0.0.1:1", name="never")
    try:
        response = await client_for(make_app("ready", database, never_connected)).get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": False, "nats": False}
    finally:
        database.dispose()
