"""Test support: the real identity service, served over HTTP, with the app store's platform client registered.

``identity_server`` runs identity (its own database, the test's nats-server) with uvicorn in a thread. Override
the app store's ``settings`` fixture in a test module to point the app store at it::

    @pytest.fixture
    def settings(settings: AppStoreSettings, identity_server: IdentityServer) -> AppStoreSettings:
        return identity_server.configure(settings)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from appstore.config import AppStoreSettings
from kit.db import Database
from kit.natsserver import NatsServer
from kit.testing import live_server

PLATFORM_CLIENT_ID = "appstore"


@dataclass
class IdentityServer:
    """The running identity service and the app store's credentials at it."""

    url: str
    app: FastAPI
    client_id: str
    client_secret: str

    @property
    def database(self) -> Database:
        database: Database = self.app.state.database
        return database

    def configure(self, settings: AppStoreSettings) -> AppStoreSettings:
        """The app store's settings, calling this identity with the platform client."""
        return settings.model_copy(
            update={
                "identity_internal_url": self.url,
                "identity_client_id": self.client_id,
                "identity_client_secret": SecretStr(self.client_secret),
            }
        )

    def client(self, client_id: str) -> dict[str, Any] | None:
        """An OAuth client as identity stores it (None when it does not exist)."""
        from identity.oauth.models import OAuthClient

        with self.database.session() as session:
            row = session.get(OAuthClient, client_id)
            return row.model_dump() if row is not None else None

    def client_credentials_token(self, client_id: str, secret: str, scope: str) -> httpx.Response:
        """Ask identity's token endpoint for a client-credentials token, as a vendor's back end would."""
        return httpx.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, secret),
            timeout=10,
            trust_env=False,
        )


@pytest.fixture
def identity_server(migrated_database: Callable[[Path], str], nats_server: NatsServer) -> Iterator[IdentityServer]:
    """The identity service over HTTP, with the app store's platform client (scope clients.manage)."""
    from identity.main import MIGRATIONS, create_app
    from identity.oauth.clients import ensure_platform_client
    from identity.testing import settings_for_tests

    settings = settings_for_tests(migrated_database(MIGRATIONS), nats_server.url)
    application = create_app(settings)
    secret = secrets.token_urlsafe(24)
    with application.state.database.session() as session:
        ensure_platform_client(session, client_id=PLATFORM_CLIENT_ID, scope="clients.manage", secret=secret)
    with live_server(application) as url:
        yield IdentityServer(url=url, app=application, client_id=PLATFORM_CLIENT_ID, client_secret=secret)
