"""The app store's routes and the gateway's catalogue of them (contracts.api.appstore) never drift apart."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from contracts.api.appstore import APPSTORE_API
from kit.testing import catalogue_drift, concrete_path


async def test_every_catalogued_route_is_served_and_guarded(app: FastAPI, client: httpx.AsyncClient) -> None:
    undocumented, _ = catalogue_drift(app, APPSTORE_API)
    assert not undocumented, f"catalogued in contracts/contracts/api/appstore/ but not served: {undocumented}"
    for route in APPSTORE_API.routes:
        if not route.authenticated:
            continue
        # Without a token a served route refuses the caller; a route that is not served answers 404 or 405.
        response = await client.request(route.method, concrete_path(route.path))
        assert response.status_code == 401, (route.operation_key, response.status_code, response.text)


async def test_every_app_store_operation_is_in_the_catalogue(app: FastAPI) -> None:
    _, stray = catalogue_drift(app, APPSTORE_API)
    assert not stray, (
        f"the app store serves {stray} but the gateway does not know them: declare each in "
        "contracts/contracts/api/appstore/ with its scopes"
    )


async def test_no_vendor_app_token_reaches_the_store_itself() -> None:
    # The store is run by people (vendors' developers, schools, the city); LTI tools use the LTI endpoints.
    assert all(route.app_access == "none" for route in APPSTORE_API.routes)
