"""The merged OpenAPI document vendors read, built from the real identity service's own document."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from contracts.api import RouteSpec, ServiceApi
from contracts.api.identity import IDENTITY_API
from contracts.scopes import SCOPES
from gateway.openapi import MergedOpenApi, http_document_source, merged_openapi, openapi_router
from identity import testing as identity_testing

PUBLIC_BASE_URL = "https://api.edu.example"
ISSUER = "https://id.edu.example"
GATEWAY_SCHEMAS = {"Problem", "ProblemFieldError"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The identity service's own fixtures: its real settings, a migrated database and the app with its lifespan.
app = identity_testing.app
settings = identity_testing.settings


@pytest.fixture
def identity_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


# A second, real service whose schema names clash with identity's, with nested and discriminated references.
class PersonRead(BaseModel):
    id: str
    class_id: str


class ClassRead(BaseModel):
    id: str
    students: list[PersonRead]
    head_teacher: PersonRead | None = None


class InPersonLesson(BaseModel):
    kind: Literal["in_person"]
    room: str


class OnlineLesson(BaseModel):
    kind: Literal["online"]
    meeting_url: str


class InternalStats(BaseModel):
    queue_depth: int


Lesson = Annotated[InPersonLesson | OnlineLesson, Field(discriminator="kind")]


def roster_document() -> dict[str, Any]:
    """The OpenAPI document of a second service; only the routes' signatures matter, nothing calls them."""
    roster = FastAPI(title="Roster", version="0.3.0")

    @roster.get("/classes/{class_id}")
    def read_class(class_id: str) -> ClassRead:
        raise NotImplementedError

    @roster.get("/people/{person_id}")
    def read_student(person_id: str) -> PersonRead:
        raise NotImplementedError

    @roster.get("/lessons/{lesson_id}")
    def read_lesson(lesson_id: str) -> Lesson:
        raise NotImplementedError

    @roster.get("/timetable")
    def public_timetable() -> list[str]:
        raise NotImplementedError

    @roster.get("/internal/stats")
    def internal_stats() -> InternalStats:
        raise NotImplementedError

    return roster.openapi()


ROSTER_API = ServiceApi(
    service="roster",
    title="Roster: classes and timetables",
    routes=(
        RouteSpec(method="GET", path="/classes/{class_id}", summary="Read a class", scopes=("roster.read",)),
        RouteSpec(
            method="GET",
            path="/people/{person_id}",
            summary="Read a <script>student</script>",
            scopes=("roster.students.read",),
            rate_limit="30/minute",
        ),
        RouteSpec(method="GET", path="/lessons/{lesson_id}", summary="Read a lesson", scopes=("classroom.read",)),
        RouteSpec(method="GET", path="/timetable", summary="The public timetable", authenticated=False),
        RouteSpec(
            method="GET", path="/live", summary="Follow a lesson live", scopes=("classroom.read",), websocket=True
        ),
    ),
)


def merge(apis: list[ServiceApi], documents: dict[str, Any]) -> dict[str, Any]:
    return merged_openapi(
        apis, documents, public_base_url=PUBLIC_BASE_URL, issuer=ISSUER, route_rate_limit="100/second"
    )


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "mapping" and isinstance(value, dict):
                yield from (target for target in value.values() if isinstance(target, str))
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def deref(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    return resolve(document, node["$ref"]) if "$ref" in node else node


def test_merged_document_is_valid_openapi_3_1(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})

    validate(document)
    assert document["openapi"] == "3.1.0"
    assert [server["url"] for server in document["servers"]] == [PUBLIC_BASE_URL]
    assert document["x-unavailable-services"] == []


def test_every_catalogue_route_with_its_scopes_and_nothing_else(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})
    merged = operations(document)

    assert set(merged) == {(route.method, f"/api/identity{route.path}") for route in IDENTITY_API.routes}
    for route in IDENTITY_API.routes:
        operation = merged[route.method, f"/api/identity{route.path}"]
        scopes = list(route.scopes)
        assert operation["security"] == [{"oauth2": scopes}, {"bearerJwt": scopes}], route.operation_key
        assert operation["x-required-scopes"] == scopes
        assert operation["x-app-access"] == route.app_access
        assert operation["x-rate-limit"] == (route.rate_limit or "100/second")
        assert operation["x-max-body-bytes"] == route.max_body_bytes
        assert operation["summary"] == route.summary
        assert operation["tags"] == ["identity"]
        # Found in identity's own document, not made up from the catalogue.
        assert "x-documented-by-service" not in operation, route.operation_key
    paths = " ".join(document["paths"])
    for internal in ("/healthz", "/readyz", "/metrics", "/.well-known", "/oauth/token", "/login", "/account"):
        assert internal not in paths
    assert merged["GET", "/api/identity/organisations/{org_id}"]["x-tenant"] == {"in": "path", "name": "org_id"}
    assert merged["POST", "/api/identity/imports"]["x-max-body-bytes"] == 20 * 1_048_576


def test_operations_keep_what_identity_says_about_them(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})
    operation = operations(document)["GET", "/api/identity/people/{person_id}"]
    source = identity_document["paths"]["/people/{person_id}"]["get"]

    assert operation["description"] == source["description"]
    assert operation["parameters"] == source["parameters"]
    schema = deref(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert schema == identity_document["components"]["schemas"]["PersonRead"]
    # Identity answers invalid input with problem+json, whatever FastAPI's generated document says.
    invalid = deref(document, operation["responses"]["422"])
    assert list(invalid["content"]) == ["application/problem+json"]


def test_every_reference_resolves_and_components_are_named_by_service(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})

    found = list(references(document))
    assert found
    for ref in found:
        resolve(document, ref)
    schemas = set(document["components"]["schemas"])
    assert schemas >= GATEWAY_SCHEMAS
    assert all(name.startswith("identity.") for name in schemas - GATEWAY_SCHEMAS)
    assert "identity.HTTPValidationError" not in schemas


def test_two_services_with_the_same_schema_names_do_not_collide(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API, ROSTER_API], {"identity": identity_document, "roster": roster_document()})
    merged = operations(document)
    schemas = document["components"]["schemas"]

    validate(document)
    for ref in references(document):
        resolve(document, ref)
    assert "class_id" in schemas["roster.PersonRead"]["properties"]
    assert "class_id" not in schemas["identity.PersonRead"]["properties"]
    read_class = merged["GET", "/api/roster/classes/{class_id}"]["responses"]["200"]["content"]["application/json"]
    assert read_class["schema"] == {"$ref": "#/components/schemas/roster.ClassRead"}
    assert schemas["roster.ClassRead"]["properties"]["students"]["items"] == {
        "$ref": "#/components/schemas/roster.PersonRead"
    }
    lesson = merged["GET", "/api/roster/lessons/{lesson_id}"]["responses"]["200"]["content"]["application/json"]
    mapping = lesson["schema"]["discriminator"]["mapping"]
    assert mapping == {
        "in_person": "#/components/schemas/roster.InPersonLesson",
        "online": "#/components/schemas/roster.OnlineLesson",
    }
    # Only what public routes use is published.
    assert "roster.InternalStats" not in schemas
    assert ("GET", "/api/roster/internal/stats") not in merged
    ids = [operation["operationId"] for operation in merged.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", operation_id) for operation_id in ids)
    assert [tag["name"] for tag in document["tags"]] == ["identity", "roster"]
    assert document["info"]["x-service-versions"] == {"identity": "0.1.0", "roster": "0.3.0"}


def test_routes_without_a_token_and_websockets() -> None:
    document = merge([ROSTER_API], {"roster": roster_document()})
    merged = operations(document)

    public = merged["GET", "/api/roster/timetable"]
    assert public["security"] == []
    assert public["x-required-scopes"] == []
    assert "401" not in public["responses"]
    assert "403" not in public["responses"]
    live = merged["GET", "/api/roster/live"]
    assert live["x-websocket"] is True
    assert live["security"] == [{"oauth2": ["classroom.read"]}, {"bearerJwt": ["classroom.read"]}]


def test_security_schemes_name_the_identity_provider_and_every_scope(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})
    schemes = document["components"]["securitySchemes"]

    flows = schemes["oauth2"]["flows"]
    assert flows["authorizationCode"]["authorizationUrl"] == f"{ISSUER}/oauth/authorize"
    assert flows["authorizationCode"]["tokenUrl"] == f"{ISSUER}/oauth/token"
    assert flows["clientCredentials"]["tokenUrl"] == f"{ISSUER}/oauth/token"
    expected = {scope.id: scope.description_en for scope in SCOPES}
    assert flows["authorizationCode"]["scopes"] == expected
    assert flows["clientCredentials"]["scopes"] == expected
    assert "PKCE" in schemes["oauth2"]["description"]
    assert schemes["openIdConnect"] == {
        "type": "openIdConnect",
        "openIdConnectUrl": f"{ISSUER}/.well-known/openid-configuration",
        "description": schemes["openIdConnect"]["description"],
    }
    assert schemes["bearerJwt"]["scheme"] == "bearer"
    assert schemes["bearerJwt"]["bearerFormat"] == "JWT"
    used = {scope for operation in operations(document).values() for scope in operation["x-required-scopes"]}
    assert used <= set(expected)


def test_every_operation_has_the_gateways_problem_responses(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API], {"identity": identity_document})

    for (method, path), operation in operations(document).items():
        for status in ("401", "403", "413", "429", "502", "503", "504"):
            response = deref(document, operation["responses"][status])
            assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            problem = deref(document, response["content"]["application/problem+json"]["schema"])
            assert {"type", "title", "status"} <= set(problem["required"])
            assert response["content"]["application/problem+json"]["example"]["status"] == int(status)
    too_many = resolve(document, "#/components/responses/TooManyRequests")
    assert set(too_many["headers"]) == {
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "RateLimit-Policy",
        "Retry-After",
    }
    insufficient = resolve(document, "#/components/responses/InsufficientScope")
    assert insufficient["content"]["application/problem+json"]["example"]["missing_scopes"] == ["people.read"]
    assert "WWW-Authenticate" in insufficient["headers"]


def test_a_missing_service_document_is_reported_not_fatal(identity_document: dict[str, Any]) -> None:
    document = merge([IDENTITY_API, ROSTER_API], {"identity": identity_document, "roster": None})

    validate(document)
    assert document["x-unavailable-services"] == ["roster"]
    assert "`roster`" in document["info"]["description"]
    assert not any(path.startswith("/api/roster/") for path in document["paths"])
    assert len(operations(document)) == len(IDENTITY_API.routes)
    assert [tag["name"] for tag in document["tags"]] == ["identity"]


@pytest.mark.parametrize(
    "broken",
    [
        {"openapi": "3.0.3", "paths": {}},
        {"openapi": "3.1.0", "paths": []},
        {"openapi": "3.1.0", "paths": {"/timetable": {"get": "not an operation"}}},
        {"openapi": "3.1.0", "paths": {}, "components": {"schemas": ["PersonRead"]}},
    ],
)
def test_a_malformed_service_document_is_reported_not_fatal(
    identity_document: dict[str, Any], broken: dict[str, Any]
) -> None:
    document = merge([IDENTITY_API, ROSTER_API], {"identity": identity_document, "roster": broken})

    validate(document)
    assert document["x-unavailable-services"] == ["roster"]
    assert len(operations(document)) == len(IDENTITY_API.routes)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def upstreams(app: FastAPI, identity_document: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """A client reaching the real identity app in-process, and the network for everything else."""
    async with httpx.AsyncClient(mounts={"http://identity.test": httpx.ASGITransport(app=app)}) as client:
        yield client


async def test_served_with_a_docs_page_and_a_service_that_is_down(upstreams: httpx.AsyncClient) -> None:
    source = http_document_source(
        upstreams,
        {"identity": "http://identity.test", "roster": f"http://127.0.0.1:{closed_port()}"},
        timeout_seconds=2.0,
    )
    docs = MergedOpenApi([IDENTITY_API, ROSTER_API], source, public_base_url=PUBLIC_BASE_URL, issuer=ISSUER)
    gateway = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    gateway.include_router(openapi_router(docs))
    await docs.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=PUBLIC_BASE_URL) as client:
            response = await client.get("/openapi.json")
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            document = response.json()
            validate(document)
            assert document["x-unavailable-services"] == ["roster"]
            assert len(operations(document)) == len(IDENTITY_API.routes)

            unchanged = await client.get("/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
            assert unchanged.status_code == 304
            assert unchanged.content == b""

            page = await client.get("/docs")
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            text = page.text
            assert re.search(r"<title>智慧教育平台开放接口文档", text)
            assert text.index("智慧教育平台开放接口文档") < text.index("Platform API reference")
            assert 'href="/openapi.json"' in text
            for route in IDENTITY_API.routes:
                assert f"<code>/api/identity{route.path}</code>" in text, route.operation_key
                for scope in route.scopes:
                    assert f"<code>{scope}</code>" in text
            assert "roster" in text
            # Nothing is loaded from elsewhere: no scripts, and every link stays on the gateway.
            assert "<script" not in text
            assert all(
                not link.startswith(("http:", "https:", "//")) for link in re.findall(r'(?:src|href)="([^"]*)"', text)
            )

            assert page.headers["ETag"] != response.headers["ETag"]
            cached_page = await client.get("/docs", headers={"If-None-Match": page.headers["ETag"]})
            assert cached_page.status_code == 304

            stylesheet = await client.get("/docs/docs.css")
            assert stylesheet.status_code == 200
            assert stylesheet.headers["content-type"].startswith("text/css")
    finally:
        await docs.stop()


async def test_the_docs_page_escapes_what_it_shows() -> None:
    document = roster_document()

    async def source() -> dict[str, Any]:
        return {"roster": document}

    docs = MergedOpenApi([ROSTER_API], source, public_base_url=PUBLIC_BASE_URL, issuer=ISSUER)
    page = (await docs.refresh()).docs_page.decode()

    assert "<script>student</script>" not in page
    assert "Read a &lt;script&gt;student&lt;/script&gt;" in page
    assert "频率 rate 30/minute" in page


async def test_a_service_that_comes_back_is_merged_and_one_that_blips_is_kept(
    identity_document: dict[str, Any],
) -> None:
    current: dict[str, Any] = {"identity": None}

    async def source() -> dict[str, Any]:
        return dict(current)

    docs = MergedOpenApi(
        [IDENTITY_API], source, public_base_url=PUBLIC_BASE_URL, issuer=ISSUER, refresh_seconds=60, retry_seconds=0.05
    )
    await docs.start()
    try:
        assert docs.published.unavailable_services == ("identity",)
        current["identity"] = identity_document
        # Missing services are retried every retry_seconds, without waiting for refresh_seconds.
        for _ in range(150):
            if not docs.published.unavailable_services:
                break
            await asyncio.sleep(0.02)
        assert len(operations(docs.published.document)) == len(IDENTITY_API.routes)

        current["identity"] = None
        published = await docs.refresh()
        assert published.unavailable_services == ()
        assert len(operations(json.loads(published.json))) == len(IDENTITY_API.routes)
    finally:
        await docs.stop()
