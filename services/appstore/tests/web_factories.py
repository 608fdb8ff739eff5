"""Test support for the portal pages: a signed-in browser session without running identity, and form tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from appstore.config import AppStoreSettings
from appstore.web import sessions
from kit.testing import TestCity

PORTAL = "/portal"


@pytest.fixture
def settings(settings: AppStoreSettings) -> AppStoreSettings:
    """The pages served at the app's root, as the ASGI test client reaches them."""
    return settings.model_copy(update={"portal_base_url": f"http://appstore.test{PORTAL}"})


def sign_in(app: FastAPI, client: httpx.AsyncClient, city: TestCity, who: str, scopes: str | None = None) -> str:
    """Start a portal session for ``who`` holding the token identity would issue (what the sign-in callback
    stores), and give the client its cookie; returns the person's id."""
    header = city.token(who, scopes)["Authorization"].removeprefix("Bearer ")
    request = Request({"type": "http", "app": app, "headers": [], "method": "GET", "path": "/"})
    response = Response()
    with app.state.database.session() as session:
        token = sessions.create_session(
            request, response, session, person_id=city.people[who].id, access_token=header,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
    client.cookies.set(sessions.SESSION_COOKIE, token, domain="appstore.test", path=PORTAL)
    return city.people[who].id


def form_token(page: httpx.Response) -> str:
    """The CSRF token of the page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)
