"""Identity's routes and the gateway's catalogue of them (contracts.api.identity) never drift apart.

A route missing from the catalogue is unreachable through the gateway and absent from the vendors' OpenAPI
document; a catalogued route identity no longer serves is a broken promise to vendors.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from contracts.api.identity import IDENTITY_API
from kit.testing import catalogue_drift, concrete_path


async def test_every_catalogued_route_is_served_by_identity(app: FastAPI, client: httpx.AsyncClient) -> None:
    undocumented, _ = catalogue_drift(app, IDENTITY_API)
    assert not undocumented, f"catalogued in contracts/contracts/api/identity.py but not served: {undocumented}"
    for route in IDENTITY_API.routes:
        # Without a token a served route refuses the caller; a route that is not served answers 404 or 405.
        response = await client.request(route.method, concrete_path(route.path))
        expected = 401 if route.authenticated else 200
        assert response.status_code == expected, (route.operation_key, response.status_code, response.text)


async def test_every_identity_operation_is_in_the_catalogue(app: FastAPI) -> None:
    _, stray = catalogue_drift(app, IDENTITY_API)
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
