"""The gateway's catalogue of installation routes matches what the app store serves, scopes included."""

from __future__ import annotations

from fastapi import FastAPI

from appstore.installations.router import router
from contracts.api.appstore import installations
from kit.testing import documented_operations


def test_every_installation_route_is_catalogued_and_served(app: FastAPI) -> None:
    served = {(method, route.path) for route in router.routes for method in getattr(route, "methods", ())}
    catalogued = {(route.method, route.path) for route in installations.ROUTES}
    assert served == catalogued
    assert catalogued <= documented_operations(app)


def test_no_installation_route_admits_vendor_apps() -> None:
    assert {route.app_access for route in installations.ROUTES} == {"none"}
    assert all(route.authenticated and route.scopes for route in installations.ROUTES)
