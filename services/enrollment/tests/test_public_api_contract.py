"""Enrollment's routes and the gateway's catalogue of them (contracts.api.enrollment) never drift apart."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from contracts.api.enrollment import ENROLLMENT_API
from kit.testing import catalogue_drift, concrete_path


async def test_every_catalogued_route_is_served_and_guarded(app: FastAPI, client: httpx.AsyncClient) -> None:
    undocumented, _ = catalogue_drift(app, ENROLLMENT_API)
    assert not undocumented, f"catalogued in contracts/contracts/api/enrollment.py but not served: {undocumented}"
    for route in ENROLLMENT_API.routes:
        if not route.authenticated:
            continue
        # Without a token a served route refuses the caller; a route that is not served answers 404 or 405.
        response = await client.request(route.method, concrete_path(route.path))
        assert response.status_code == 401, (route.operation_key, response.status_code, response.text)


async def test_every_enrollment_operation_is_in_the_catalogue(app: FastAPI) -> None:
    _, stray = catalogue_drift(app, ENROLLMENT_API)
    assert not stray, (
        f"enrollment serves {stray} but the gateway does not know them: declare each in "
        "contracts/contracts/api/enrollment.py with its scopes and app access"
    )


async def test_the_public_draw_pages_need_no_token(client: httpx.AsyncClient) -> None:
    for route in ENROLLMENT_API.routes:
        if route.authenticated:
            continue
        response = await client.request(route.method, concrete_path(route.path))
        assert response.status_code == 404, (route.operation_key, response.text)  # an unknown season, not a 401
