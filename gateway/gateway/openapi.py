"""The one OpenAPI 3.1 document vendors read: every public route of every service, as the gateway serves it.

Each service documents its own API at ``/openapi.json``; the catalogue in ``contracts.api`` says which of its
routes are public and what they need. The merge keeps only the catalogue's routes, moves them under
``/api/<service>``, replaces the service's security with the gateway's (OAuth 2.0 scopes checked at the edge),
prefixes operation ids and component names with the service so that two services never collide, and adds the
problem+json errors the gateway itself answers with. A service whose document cannot be had is left out and
named in ``x-unavailable-services``; the rest is served.

:func:`merged_openapi` is the pure merge; :class:`MergedOpenApi` keeps the published document fresh from a
:data:`DocumentSource` (normally :func:`http_document_source`); :func:`openapi_router` serves it at
``/openapi.json`` with a docs page at ``/docs`` that is rendered on the server and loads nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import html
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from contracts.api import RouteSpec, ServiceApi
from contracts.scopes import SCOPES
from kit.errors import (
    PROBLEM_CONTENT_TYPE,
    BadGateway,
    GatewayTimeout,
    InsufficientScope,
    InvalidInput,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)

logger = logging.getLogger("gateway.openapi")

OPENAPI_VERSION = "3.1.0"
OAUTH2_SCHEME = "oauth2"
BEARER_SCHEME = "bearerJwt"
OPENID_CONNECT_SCHEME = "openIdConnect"

ServiceDocuments = Mapping[str, Mapping[str, Any] | None]
#: Returns each service's own OpenAPI document, or None for a service whose document could not be had.
DocumentSource = Callable[[], Awaitable[ServiceDocuments]]

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_COMPONENT_KINDS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "links",
    "callbacks",
    "pathItems",
)
_COMPONENTS_REF = "#/components/"
_APP_ACCESS_TEXT = {
    "none": "Not callable by third-party apps: first-party platform clients only.",
    "school": "Third-party apps: only for a school that installed the app and granted it these scopes.",
    "open": "Any app holding these scopes: the route serves no school's personal data.",
}


# ------------------------------------------------------------------------------------------ the gateway's own parts


def _problem_response(description: str, example: dict[str, Any], headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example},
        },
    }
    if headers:
        response["headers"] = headers
    return response


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"$ref": "#/components/headers/RateLimit-Limit"},
    "RateLimit-Remaining": {"$ref": "#/components/headers/RateLimit-Remaining"},
    "RateLimit-Reset": {"$ref": "#/components/headers/RateLimit-Reset"},
    "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
}


def _gateway_components() -> dict[str, dict[str, Any]]:
    """Schemas, headers and responses of the errors the gateway answers with before a call reaches a service."""
    schemas = {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem: what went wrong, in Simplified Chinese unless Accept-Language "
            "prefers English.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "format": "uri", "description": "Stable URI of the kind of problem"},
                "title": {"type": "string", "description": "Short summary of the kind of problem"},
                "status": {"type": "integer", "description": "The HTTP status code"},
                "detail": {"type": "string", "description": "What happened and what to change"},
                "instance": {"type": "string", "description": "The request path"},
                "errors": {
                    "type": "array",
                    "description": "Each offending field, for invalid input",
                    "items": {"$ref": "#/components/schemas/ProblemFieldError"},
                },
                "missing_scopes": {
                    "type": "array",
                    "description": "For insufficient-scope: the scopes the token lacks",
                    "items": {"type": "string"},
                },
                "required_scope": {
                    "type": "string",
                    "description": "For insufficient-scope: the lacking scopes, space-separated as in OAuth",
                },
            },
            "additionalProperties": True,
        },
        "ProblemFieldError": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "description": "Dotted path of the field, or the column of a file"},
                "message": {"type": "string"},
                "code": {"type": "string"},
                "row": {"type": "integer", "description": "Row of an uploaded file"},
            },
        },
    }
    headers = {
        "RateLimit-Limit": _header("Requests allowed in the current window of the tightest quota", {"type": "integer"}),
        "RateLimit-Remaining": _header("Requests left in that window", {"type": "integer"}),
        "RateLimit-Reset": _header("Seconds until that window frees capacity", {"type": "integer"}),
        "RateLimit-Policy": _header(
            "The quotas that apply, e.g. `200;w=1, 30;w=60` (IETF draft-ietf-httpapi-ratelimit-headers)",
            {"type": "string"},
        ),
        "Retry-After": _header("Seconds to wait before trying again", {"type": "integer"}),
        "WWW-Authenticate": _header("The Bearer challenge of RFC 6750 §3", {"type": "string"}),
    }
    retry_after = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    www_authenticate = {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}
    responses = {
        "Unauthenticated": _problem_response(
            "No valid access token: it is missing, expired, revoked, for another audience or wrongly signed.",
            {"type": Unauthenticated.type_uri(), "title": Unauthenticated.title_zh, "status": 401},
            www_authenticate,
        ),
        "InsufficientScope": _problem_response(
            "The token lacks a scope the route needs (named in `detail` and `missing_scopes`), or a third-party "
            "app calls for a school that did not install it or grant it those scopes.",
            {
                "type": InsufficientScope.type_uri(),
                "title": InsufficientScope.title_zh,
                "status": 403,
                "detail": "The access token lacks the scope(s) people.read this API needs.",
                "required_scope": "people.read",
                "missing_scopes": ["people.read"],
            },
            www_authenticate,
        ),
        "InvalidInput": _problem_response(
            "Some fields are missing or have the wrong type; `errors` names each one.",
            {
                "type": InvalidInput.type_uri(),
                "title": InvalidInput.title_zh,
                "status": 422,
                "errors": [{"field": "name", "message": "Field required", "code": "missing"}],
            },
        ),
        "PayloadTooLarge": _problem_response(
            "The request body is larger than the route accepts (`x-max-body-bytes` on the operation).",
            {"type": PayloadTooLarge.type_uri(), "title": PayloadTooLarge.title_zh, "status": 413},
        ),
        "TooManyRequests": _problem_response(
            "The app's quota, overall or on this route, is used up; wait `Retry-After` seconds.",
            {"type": TooManyRequests.type_uri(), "title": TooManyRequests.title_zh, "status": 429},
            {**_RATE_LIMIT_HEADERS, **retry_after},
        ),
        "BadGateway": _problem_response(
            "The service behind the gateway failed or answered with something unusable.",
            {"type": BadGateway.type_uri(), "title": BadGateway.title_zh, "status": 502},
        ),
        "ServiceUnavailable": _problem_response(
            "The service is down or shedding load; try again after `Retry-After` seconds.",
            {"type": ServiceUnavailable.type_uri(), "title": ServiceUnavailable.title_zh, "status": 503},
            retry_after,
        ),
        "GatewayTimeout": _problem_response(
            "The service did not answer within the route's time (`x-timeout-seconds` on the operation).",
            {"type": GatewayTimeout.type_uri(), "title": GatewayTimeout.title_zh, "status": 504},
            retry_after,
        ),
    }
    return {"schemas": schemas, "headers": headers, "responses": responses}


def _security_schemes(issuer: str) -> dict[str, Any]:
    scopes = {item.id: item.description_en for item in SCOPES}
    token_url = f"{issuer}/oauth/token"
    return {
        OAUTH2_SCHEME: {
            "type": "oauth2",
            "description": "Access tokens of the platform's identity provider. Users sign in with the authorization "
            "code flow, which requires PKCE with S256 for every client; services and apps acting for themselves use "
            "client credentials. Scopes marked platform-only in `x-scope-audience` are never granted to "
            "third-party apps.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{issuer}/oauth/authorize",
                    "tokenUrl": token_url,
                    "refreshUrl": token_url,
                    "scopes": scopes,
                },
                "clientCredentials": {"tokenUrl": token_url, "scopes": scopes},
            },
            "x-pkce": {"required": True, "code_challenge_methods": ["S256"]},
            "x-scope-audience": {item.id: list(item.audience) for item in SCOPES},
        },
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An RFC 9068 JWT access token from the same identity provider, sent as "
            "`Authorization: Bearer <token>`; the gateway checks its signature, expiry, audience and scopes.",
        },
        OPENID_CONNECT_SCHEME: {
            "type": "openIdConnect",
            "openIdConnectUrl": f"{issuer}/.well-known/openid-configuration",
            "description": "OpenID Connect discovery of the identity provider.",
        },
    }


# ------------------------------------------------------------------------------------------ references


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _component_of(ref: str) -> tuple[str, str] | None:
    """``("schemas", "PersonRead")`` for ``#/components/schemas/PersonRead``; None for any other reference."""
    if not ref.startswith(_COMPONENTS_REF):
        return None
    kind, _, name = ref[len(_COMPONENTS_REF) :].partition("/")
    if not name or "/" in name:
        return None
    return kind, _unescape(name)


def _rewrite_references(node: Any, rename: Callable[[str, str], str | None]) -> Any:
    """A deep copy of ``node`` with every component reference renamed, discriminator mappings included."""
    if isinstance(node, list):
        return [_rewrite_references(item, rename) for item in node]
    if not isinstance(node, Mapping):
        return copy.deepcopy(node)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            result[key] = _renamed_ref(value, rename)
        elif key == "discriminator" and isinstance(value, Mapping) and isinstance(value.get("mapping"), Mapping):
            result[key] = {
                **{k: copy.deepcopy(v) for k, v in value.items() if k != "mapping"},
                "mapping": {
                    tag: _renamed_mapping_target(target, rename) if isinstance(target, str) else target
                    for tag, target in value["mapping"].items()
                },
            }
        else:
            result[key] = _rewrite_references(value, rename)
    return result


def _renamed_ref(ref: str, rename: Callable[[str, str], str | None]) -> str:
    component = _component_of(ref)
    if component is None:
        return ref
    new_name = rename(*component)
    return ref if new_name is None else f"{_COMPONENTS_REF}{component[0]}/{new_name}"


def _renamed_mapping_target(target: str, rename: Callable[[str, str], str | None]) -> str:
    # A discriminator mapping value is either a reference or the bare name of a schema component.
    if target.startswith("#"):
        return _renamed_ref(target, rename)
    return rename("schemas", target) or target


def _references(node: Any) -> Iterator[tuple[str, str]]:
    """Every component a node refers to, discriminator mappings included."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                if (component := _component_of(value)) is not None:
                    yield component
            elif key == "discriminator" and isinstance(value, Mapping) and isinstance(value.get("mapping"), Mapping):
                for target in value["mapping"].values():
                    if isinstance(target, str):
                        yield _component_of(target) or ("schemas", target)
            else:
                yield from _references(value)


# ------------------------------------------------------------------------------------------ the merge


class _UnusableDocument(ValueError):
    """A service's document cannot be merged; the service is reported unavailable."""


def _check_document(document: Any) -> None:
    if not isinstance(document, Mapping):
        raise _UnusableDocument("its OpenAPI document is not a JSON object")
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith("3.1."):
        raise _UnusableDocument(f"its document is OpenAPI {version!r}; the merge needs 3.1")
    if not isinstance(document.get("paths", {}), Mapping):
        raise _UnusableDocument("its document's paths are not an object")
    components = document.get("components", {})
    if not isinstance(components, Mapping) or not all(
        isinstance(components.get(kind, {}), Mapping) for kind in _COMPONENT_KINDS
    ):
        raise _UnusableDocument("its document's components are malformed")


def _identifier(text: str) -> str:
    # Component names must match ^[a-zA-Z0-9.\-_]+$; code generators want operation ids to be identifiers too.
    return "".join(char if char.isascii() and char.isalnum() else "_" for char in text)


@dataclass
class _ServiceMerge:
    """One service's contribution: its routes under the gateway and the components they use."""

    paths: dict[str, dict[str, Any]]
    components: dict[str, dict[str, Any]]
    version: str | None


def _merge_service(
    api: ServiceApi,
    document: Mapping[str, Any],
    *,
    operation_ids: set[str],
    route_rate_limit: str | None,
) -> _ServiceMerge:
    _check_document(document)
    source_components: Mapping[str, Mapping[str, Any]] = document.get("components", {})
    names = {
        (kind, name): f"{api.service}.{_identifier(name)}"
        for kind in _COMPONENT_KINDS
        for name in source_components.get(kind, {})
    }
    if len(set(names.values())) != len(names):
        raise _UnusableDocument("two of its component names differ only in punctuation")

    def rename(kind: str, name: str) -> str | None:
        return names.get((kind, name))

    source_paths: Mapping[str, Any] = document.get("paths", {})
    paths: dict[str, dict[str, Any]] = {}
    for route in api.routes:
        path_item = source_paths.get(route.path)
        if path_item is not None and not isinstance(path_item, Mapping):
            raise _UnusableDocument(f"its path item {route.path!r} is not an object")
        source_operation = (path_item or {}).get(route.method.lower())
        if source_operation is not None and not isinstance(source_operation, Mapping):
            raise _UnusableDocument(f"its operation {route.operation_key!r} is not an object")
        operation = _gateway_operation(api, route, source_operation, rename, operation_ids, route_rate_limit)
        merged_item = paths.setdefault(f"{api.prefix}{route.path}", {})
        if path_item is not None and "parameters" in path_item:
            merged_item["parameters"] = _rewrite_references(path_item["parameters"], rename)
        merged_item[route.method.lower()] = operation

    components: dict[str, dict[str, Any]] = {}
    pending = list(_references(paths))
    seen: set[tuple[str, str]] = set()
    inverse = {(kind, new): old for (kind, old), new in names.items()}
    # Only what the public routes use is published: schemas of internal routes stay internal.
    while pending:
        kind, new_name = pending.pop()
        if (kind, new_name) in seen or (kind, new_name) not in inverse:
            continue
        seen.add((kind, new_name))
        body = _rewrite_references(source_components[kind][inverse[kind, new_name]], rename)
        components.setdefault(kind, {})[new_name] = body
        pending.extend(_references(body))
    info = document.get("info")
    version = info.get("version") if isinstance(info, Mapping) else None
    return _ServiceMerge(paths=paths, components=components, version=version if isinstance(version, str) else None)


def _is_fastapi_validation_error(response: Any) -> bool:
    # Every service answers invalid input with kit's problem+json, not with FastAPI's default body that its
    # generated document announces; vendors are shown what they will get.
    if not isinstance(response, Mapping) or not isinstance(response.get("content"), Mapping):
        return False
    schemas = [media.get("schema") for media in response["content"].values() if isinstance(media, Mapping)]
    return any(
        isinstance(schema, Mapping) and schema.get("$ref") == "#/components/schemas/HTTPValidationError"
        for schema in schemas
    )


def _gateway_operation(
    api: ServiceApi,
    route: RouteSpec,
    source: Mapping[str, Any] | None,
    rename: Callable[[str, str], str | None],
    operation_ids: set[str],
    route_rate_limit: str | None,
) -> dict[str, Any]:
    original_id = source.get("operationId") if source is not None else None
    operation: dict[str, Any] = {
        "tags": [api.service],
        "summary": route.summary,
        "operationId": _unique_operation_id(api, route, original_id, operation_ids),
    }
    if source is None:
        operation.update(_undocumented_operation(route))
    else:
        operation.update(
            (key, _rewrite_references(value, rename))
            for key, value in source.items()
            if key not in ("tags", "summary", "operationId", "security", "servers", "responses")
        )
        responses = source.get("responses", {})
        operation["responses"] = {
            str(status): (
                {"$ref": "#/components/responses/InvalidInput"}
                if _is_fastapi_validation_error(response)
                else _rewrite_references(response, rename)
            )
            for status, response in (responses.items() if isinstance(responses, Mapping) else ())
        }
    gateway_responses = {
        "413": "PayloadTooLarge",
        "429": "TooManyRequests",
        "502": "BadGateway",
        "503": "ServiceUnavailable",
        "504": "GatewayTimeout",
    }
    if route.authenticated:
        gateway_responses = {"401": "Unauthenticated", "403": "InsufficientScope", **gateway_responses}
    for status, name in gateway_responses.items():
        # A service's own description of the same status is the more specific one.
        operation["responses"].setdefault(status, {"$ref": f"#/components/responses/{name}"})
    operation["responses"] = dict(sorted(operation["responses"].items()))
    scopes = list(route.scopes)
    operation["security"] = [{OAUTH2_SCHEME: scopes}, {BEARER_SCHEME: scopes}] if route.authenticated else []
    operation["x-required-scopes"] = scopes
    operation["x-app-access"] = route.app_access
    if route.tenant is not None:
        operation["x-tenant"] = {"in": route.tenant.source, "name": route.tenant.name}
    effective_rate_limit = route.rate_limit or route_rate_limit
    if effective_rate_limit is not None:
        operation["x-rate-limit"] = effective_rate_limit
    operation["x-max-body-bytes"] = route.max_body_bytes
    operation["x-timeout-seconds"] = route.timeout_seconds
    if route.websocket:
        operation["x-websocket"] = True
    return operation


def _undocumented_operation(route: RouteSpec) -> dict[str, Any]:
    """What the catalogue alone says about a route its service does not document (WebSockets, HEAD)."""
    operation: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.path_parameters
        ],
        "responses": {"default": {"description": "The service's answer"}},
    }
    if route.websocket:
        operation["description"] = "Opens a WebSocket: send `GET` with `Upgrade: websocket`."
    else:
        operation["x-documented-by-service"] = False
    return operation


def _unique_operation_id(api: ServiceApi, route: RouteSpec, original: Any, operation_ids: set[str]) -> str:
    local = original if isinstance(original, str) and original else f"{route.method.lower()}_{route.path}"
    base = f"{_identifier(api.service)}_{_identifier(local)}"
    candidate, counter = base, 1
    while candidate in operation_ids:
        counter += 1
        candidate = f"{base}_{counter}"
    operation_ids.add(candidate)
    return candidate


def _description(unavailable: Mapping[str, str], app_rate_limit: str | None) -> str:
    lines = [
        "城市智慧教育平台的全部开放接口，均经由本网关访问：先向统一身份认证获取访问令牌（OAuth 2.0 授权码 + PKCE，"
        "或客户端凭证），以 `Authorization: Bearer` 携带；每个接口列出所需的授权范围（scope）。"
        "出错时返回 RFC 9457 problem+json。",
        "",
        "Every public API of the city's smart-education platform, served through this gateway. Get an access token "
        "from the identity provider (OAuth 2.0 authorization code with PKCE, or client credentials) and send it as "
        "`Authorization: Bearer`; each operation lists the scopes it needs (`security`, `x-required-scopes`). "
        "`x-app-access` says whether and for which schools a third-party app may call it. Errors are RFC 9457 "
        "problem+json; rate limits are announced in `RateLimit-*` headers.",
    ]
    if app_rate_limit:
        lines += ["", f"Each app may make at most {app_rate_limit} calls in all, besides each route's `x-rate-limit`."]
    if unavailable:
        lines += [
            "",
            "**暂缺 / Currently missing** (their documents could not be used; their routes may still work):",
        ]
        lines += [f"- `{service}`: {reason}" for service, reason in unavailable.items()]
    return "\n".join(lines)


def merged_openapi(
    apis: Iterable[ServiceApi],
    documents: ServiceDocuments,
    *,
    public_base_url: str,
    issuer: str,
    route_rate_limit: str | None = None,
    app_rate_limit: str | None = None,
) -> dict[str, Any]:
    """The merged OpenAPI 3.1 document of the catalogue's routes, from each service's own document.

    ``documents`` maps a service to its document, None (or no entry) when it could not be fetched: that service
    is left out and named in ``x-unavailable-services``. ``route_rate_limit`` is the gateway's default per-route
    limit, shown on routes that declare none; ``app_rate_limit`` the per-app limit across all routes.
    """
    issuer = issuer.rstrip("/")
    operation_ids: set[str] = set()
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {kind: dict(items) for kind, items in _gateway_components().items()}
    tags: list[dict[str, str]] = []
    versions: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    for api in apis:
        document = documents.get(api.service)
        if document is None:
            unavailable[api.service] = "its OpenAPI document could not be fetched"
            continue
        try:
            merged = _merge_service(api, document, operation_ids=set(operation_ids), route_rate_limit=route_rate_limit)
        except (_UnusableDocument, AttributeError, TypeError, KeyError, ValueError) as error:
            # One service's malformed document must not take every other service's documentation down.
            logger.warning("leaving %s out of the merged OpenAPI document: %s", api.service, error)
            unavailable[api.service] = (
                str(error) if isinstance(error, _UnusableDocument) else "its document is malformed"
            )
            continue
        for path_item in merged.paths.values():
            operation_ids.update(
                operation["operationId"] for method, operation in path_item.items() if method in _HTTP_METHODS
            )
        paths.update(merged.paths)
        for kind, items in merged.components.items():
            components.setdefault(kind, {}).update(items)
        tags.append({"name": api.service, "description": api.title})
        if merged.version is not None:
            versions[api.service] = merged.version
    components["securitySchemes"] = _security_schemes(issuer)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "智慧教育平台开放接口 · Smart-education platform API",
            "version": ", ".join(f"{service} {version}" for service, version in versions.items()) or "unavailable",
            "description": _description(unavailable, app_rate_limit),
            "x-service-versions": versions,
        },
        "servers": [{"url": public_base_url.rstrip("/") or "/", "description": "The platform's API gateway"}],
        "tags": tags,
        "paths": paths,
        "components": components,
        "x-unavailable-services": list(unavailable),
    }


# ------------------------------------------------------------------------------------------ fetching and caching


def http_document_source(
    client: httpx.AsyncClient,
    upstreams: Mapping[str, str],
    *,
    timeout_seconds: float = 5.0,
    max_bytes: int = 16 * 1_048_576,
) -> DocumentSource:
    """Fetches ``<upstream>/openapi.json`` of every service concurrently; None for each one that fails."""

    async def fetch(service: str, base_url: str) -> dict[str, Any] | None:
        url = f"{base_url.rstrip('/')}/openapi.json"
        try:
            async with asyncio.timeout(timeout_seconds), client.stream("GET", url) as response:
                if response.status_code != 200:
                    logger.warning("OpenAPI document of %s: HTTP %d from %s", service, response.status_code, url)
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        logger.warning("OpenAPI document of %s is larger than %d bytes", service, max_bytes)
                        return None
            document = json.loads(body)
        except (httpx.HTTPError, TimeoutError, ValueError) as error:
            logger.warning("OpenAPI document of %s not fetched from %s: %s", service, url, type(error).__name__)
            return None
        return document if isinstance(document, dict) else None

    async def fetch_all() -> dict[str, dict[str, Any] | None]:
        services = list(upstreams)
        documents = await asyncio.gather(*(fetch(service, upstreams[service]) for service in services))
        return dict(zip(services, documents, strict=True))

    return fetch_all


@dataclass(frozen=True)
class PublishedOpenApi:
    """The merged document as served: its JSON and the docs page, each with its entity tag."""

    document: dict[str, Any]
    json: bytes
    etag: str
    docs_page: bytes
    docs_etag: str
    unavailable_services: tuple[str, ...]


def publish(document: dict[str, Any], *, openapi_url: str = "/openapi.json", stylesheet_url: str) -> PublishedOpenApi:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    page = render_docs_page(document, openapi_url=openapi_url, stylesheet_url=stylesheet_url).encode()
    return PublishedOpenApi(
        document=document,
        json=body,
        etag=_entity_tag(body),
        docs_page=page,
        docs_etag=_entity_tag(page),
        unavailable_services=tuple(document.get("x-unavailable-services", ())),
    )


def _entity_tag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class MergedOpenApi:
    """Keeps the published merged document fresh.

    A service's last good document is kept when a later fetch fails, so a service that blips does not vanish
    from the docs; while a service has never been fetched, refreshes come every ``retry_seconds`` instead of
    every ``refresh_seconds``.
    """

    def __init__(
        self,
        apis: Iterable[ServiceApi],
        source: DocumentSource,
        *,
        public_base_url: str,
        issuer: str,
        route_rate_limit: str | None = None,
        app_rate_limit: str | None = None,
        refresh_seconds: float = 300.0,
        retry_seconds: float = 10.0,
        openapi_url: str = "/openapi.json",
        docs_url: str = "/docs",
    ) -> None:
        self._apis = tuple(apis)
        self._source = source
        self._merge_options: dict[str, Any] = {
            "public_base_url": public_base_url,
            "issuer": issuer,
            "route_rate_limit": route_rate_limit,
            "app_rate_limit": app_rate_limit,
        }
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds
        self.openapi_url = openapi_url
        self.docs_url = docs_url
        self._documents: dict[str, Mapping[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._published = self._build({})
        self._merged_from: dict[str, Mapping[str, Any]] = {}

    @property
    def published(self) -> PublishedOpenApi:
        return self._published

    @property
    def stylesheet_url(self) -> str:
        return f"{self.docs_url.rstrip('/')}/docs.css"

    def _build(self, documents: Mapping[str, Mapping[str, Any]]) -> PublishedOpenApi:
        document = merged_openapi(self._apis, documents, **self._merge_options)
        return publish(document, openapi_url=self.openapi_url, stylesheet_url=self.stylesheet_url)

    async def refresh(self) -> PublishedOpenApi:
        """Fetch every service's document again and publish the merge."""
        fetched = await self._source()
        for api in self._apis:
            document = fetched.get(api.service)
            if document is None:
                continue
            try:
                _check_document(document)
            except _UnusableDocument as error:
                logger.warning("keeping the previous OpenAPI document of %s: %s", api.service, error)
                continue
            self._documents[api.service] = document
        snapshot = dict(self._documents)
        if snapshot == self._merged_from:
            return self._published
        # The merge is plain CPU work, done only when a document changed: even in a worker thread it holds
        # the interpreter for a few milliseconds, which the proxied requests feel at their p99.
        self._published = await asyncio.to_thread(self._build, snapshot)
        self._merged_from = snapshot
        return self._published

    async def start(self) -> None:
        """Publish a first merge, then keep refreshing in the background."""
        try:
            await self.refresh()
        except Exception:
            logger.exception("first OpenAPI refresh failed; retrying in the background")
        self._task = asyncio.create_task(self._keep_fresh(), name="openapi-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep_fresh(self) -> None:
        while True:
            missing = self._published.unavailable_services
            await asyncio.sleep(min(self.retry_seconds, self.refresh_seconds) if missing else self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.exception("OpenAPI refresh failed; serving the previous document")


# ------------------------------------------------------------------------------------------ serving


def openapi_router(docs: MergedOpenApi) -> APIRouter:
    """GET ``docs.openapi_url`` (the merged document) and ``docs.docs_url`` (its docs page) for the gateway app."""
    router = APIRouter(include_in_schema=False)
    stylesheet = resources.files("gateway").joinpath("static", "docs.css").read_bytes()
    stylesheet_etag = _entity_tag(stylesheet)

    def cached(request: Request, body: bytes, etag: str, media_type: str) -> Response:
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    @router.get(docs.openapi_url)
    async def merged_openapi_document(request: Request) -> Response:
        published = docs.published
        return cached(request, published.json, published.etag, "application/json")

    @router.get(docs.docs_url)
    async def api_docs_page(request: Request) -> Response:
        published = docs.published
        return cached(request, published.docs_page, published.docs_etag, "text/html; charset=utf-8")

    @router.get(docs.stylesheet_url)
    async def api_docs_stylesheet(request: Request) -> Response:
        return cached(request, stylesheet, stylesheet_etag, "text/css; charset=utf-8")

    return router


_APP_ACCESS_LABEL = {
    "none": "仅平台自有客户端 · platform clients only",
    "school": "已安装并授权的学校 · schools that installed the app",
    "open": "任何持有该范围的应用 · any app with the scopes",
}


def _size_text(size: int) -> str:
    for unit, factor in (("MiB", 1_048_576), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def render_docs_page(document: Mapping[str, Any], *, openapi_url: str, stylesheet_url: str) -> str:
    """The docs page: every operation grouped by service with its scopes and limits, plus the OAuth endpoints."""
    escape = html.escape
    schemes = document.get("components", {}).get("securitySchemes", {})
    flows = schemes.get(OAUTH2_SCHEME, {}).get("flows", {})
    code_flow = flows.get("authorizationCode", {})
    discovery = schemes.get(OPENID_CONNECT_SCHEME, {}).get("openIdConnectUrl", "")
    servers = document.get("servers") or [{"url": ""}]
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>智慧教育平台开放接口文档 · Platform API reference</title>",
        f'<link rel="stylesheet" href="{escape(stylesheet_url)}">',
        "</head><body><main>",
        "<h1>智慧教育平台开放接口文档 <small>Platform API reference</small></h1>",
        f'<p>机器可读的完整文档 · Machine-readable document: <a href="{escape(openapi_url)}">'
        f"<code>{escape(openapi_url)}</code></a> (OpenAPI {escape(str(document.get('openapi', '')))})</p>",
        "<section><h2>访问地址与授权 <small>Base URL and authorisation</small></h2><dl>",
        f"<dt>接口地址 · Base URL</dt><dd><code>{escape(servers[0].get('url', ''))}</code></dd>",
        f"<dt>授权端点 · Authorization endpoint</dt><dd><code>{escape(code_flow.get('authorizationUrl', ''))}</code>"
        " (授权码 + PKCE S256 · authorization code with PKCE S256)</dd>",
        f"<dt>令牌端点 · Token endpoint</dt><dd><code>{escape(code_flow.get('tokenUrl', ''))}</code></dd>",
        f"<dt>OpenID Connect</dt><dd><code>{escape(discovery)}</code></dd>",
        "</dl></section>",
    ]
    unavailable = document.get("x-unavailable-services") or []
    if unavailable:
        names = ", ".join(f"<code>{escape(str(service))}</code>" for service in unavailable)
        parts.append(
            f'<p class="warning">以下服务的接口文档暂时无法获取 · Documentation currently missing for: {names}</p>'
        )
    operations_by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            if method in _HTTP_METHODS:
                for tag in operation.get("tags", ["other"]):
                    operations_by_tag.setdefault(tag, []).append((method, path, operation))
    for tag in document.get("tags", []):
        name = tag.get("name", "")
        parts.append(
            f'<section id="service-{escape(name)}"><h2>{escape(name)} <small>{escape(tag.get("description", ""))}'
            "</small></h2><table><thead><tr><th>接口 · Operation</th><th>授权范围 · Scopes</th>"
            "<th>第三方应用 · Apps</th><th>限制 · Limits</th></tr></thead><tbody>"
        )
        for method, path, operation in operations_by_tag.get(name, []):
            scopes = operation.get("x-required-scopes") or []
            scope_cells = " ".join(f"<code>{escape(scope)}</code>" for scope in scopes) or (
                "无需令牌 · no token" if operation.get("security") == [] else "令牌 · token"
            )
            limits: list[str] = [f"请求体 body ≤ {_size_text(operation.get('x-max-body-bytes', 0))}"]
            if operation.get("x-rate-limit"):
                limits.insert(0, f"频率 rate {escape(str(operation['x-rate-limit']))}")
            access = operation.get("x-app-access", "none")
            parts.append(
                f'<tr id="{escape(str(operation.get("operationId", "")))}"><td><span class="method '
                f'{escape(method)}">{escape(method.upper())}</span> <code>{escape(path)}</code>'
                f"<br>{escape(str(operation.get('summary', '')))}</td><td>{scope_cells}</td>"
                f'<td title="{escape(_APP_ACCESS_TEXT.get(access, ""))}">'
                f"{escape(_APP_ACCESS_LABEL.get(access, access))}</td><td>{' · '.join(limits)}</td></tr>"
            )
        parts.append("</tbody></table></section>")
    parts.append(
        "<section><h2>授权范围 <small>Scopes</small></h2><table><thead><tr><th>Scope</th><th>说明</th>"
        "<th>Description</th><th>可申请方 · Who may request</th></tr></thead><tbody>"
    )
    for item in SCOPES:
        audience = "应用与平台 · apps and platform" if "app" in item.audience else "仅平台服务 · platform only"
        parts.append(
            f"<tr><td><code>{escape(item.id)}</code></td><td>{escape(item.description_zh)}</td>"
            f"<td>{escape(item.description_en)}</td><td>{audience}</td></tr>"
        )
    parts.append("</tbody></table></section></main></body></html>")
    return "\n".join(parts)
