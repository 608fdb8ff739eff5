"""Fixtures of the sample app's tests: the app on its own, with settings a vendor would give it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.webhooks import new_secret
from vendor_app.app import create_app
from vendor_app.config import Settings

VENDOR = "http://vendor.test"
PLATFORM = "http://platform.test"


@pytest.fixture
def webhook_secret() -> str:
    return new_secret()


@pytest.fixture
def vendor_settings(tmp_path: Path, webhook_secret: str) -> Settings:
    return Settings(
        base_url=VENDOR,
        platform_url=PLATFORM,
        oidc_client_id="app-reading-log",
        oidc_client_secret="reading-log-secret",
        lti_client_id="app-homework-helper",
        tool_key_file=tmp_path / "tool-key.pem",
        webhook_secrets=(webhook_secret,),
    )


@asynccontextmanager
async def vendor_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The sample app running (lifespan included), and an HTTP client that keeps its cookies."""
    app: FastAPI = create_app(replace(settings, **changes), transport=transport)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=VENDOR) as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http
