"""Identity's routes and the gateway's catalogue of them (contracts.api.identity) never drift apart.

A route missing from the catalogue is unreachable through the gateway and absent from the vendors' OpenAPI
document; a catalogued route identity no longer serves is a broken promise to vendors.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from contracts.api.identity import IDENTITY_API

# Operational endpoints every service has; the gateway never exposes them.
OPERATIONAL_PATHS = {"/healthz", "/readyz", "/metrics"}
METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


def documented_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation in identity's own OpenAPI document; hidden pages are not in it."""
    document = app.openapi()
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def served_at_the_root(path: str) -> bool:
    return any(path == root or (root.endswith("/") and path.startswith(root)) for root in IDENTITY_API.root_paths)


def concrete(path: str) -> str:
    return re.sub(r"\{[a-z_][a-z0-9_]*\}", "00000000-0000-4000-8000-000000000000", path)


async def test_every_catalogued_route_is_served_by_identity(app: FastAPI, client: httpx.AsyncClient) -> None:
    documented = documented_operations(app)

    undocumented = [
        route.operation_key for route in IDENTITY_API.routes if (route.method, route.path) not in documented
    ]
    assert not undocumented, f"catalogued in contracts/contracts/api/identity.py but not served: {undocumented}"
    for route in IDENTITY_API.routes:
        # Without a token a served route refuses the caller; a route that is not served answers 404 or 405.
        response = await client.request(route.method, concrete(route.path))
        expected = 401 if route.authenticated else 200
        assert response.status_code == expected, (route.operation_key, response.status_code, response.text)


async def test_every_identity_operation_is_in_the_catalogue(app: FastAPI) -> None:
    catalogued = {(route.method, route.path) for route in IDENTITY_API.routes}

    stray = sorted(
        f"{method} {path}"
        for method, path in documented_operations(app)
        if (method, path) not in catalogued and path not in OPERATIONAL_PATHS and not served_at_the_root(path)
    )
    assert not stray, (
        f"identity serves {stray} but the gateway does not know them: declare each in "
        "contracts/contracts/api/identity.py with its scopes, or list an OpenID Connect path in root_paths"
    )


async def test_every_root_path_is_served_by_identity(client: httpx.AsyncClient) -> None:
    # A prefix ("/account/") covers pages that come and go below it; only whole paths can be checked.
    for root in (path for path in IDENTITY_API.root_paths if not path.endswith("/")):
        answers = [(await client.request(method, root)).status_code for method in ("GET", "POST")]
        # Served means one of GET and POST is answered with something other than "no such route".
        assert any(status not in (404, 405) for status in answers), (root, answers)
