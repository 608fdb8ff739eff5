"""`python -m identity ensure-platform-client`: the app store's own client, created or brought up to date."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from fastapi import FastAPI

from identity.config import IdentitySettings
from identity.oauth.models import OAuthClient
from kit.db import Database


def ensure(settings: IdentitySettings, secret: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "IDENTITY_DATABASE_URL": settings.database_url, "IDENTITY_ENVIRONMENT": "test"}
    environment.pop("APPSTORE_IDENTITY_SECRET", None)
    if secret is not None:
        environment["APPSTORE_IDENTITY_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "identity", "ensure-platform-client", "--client-id", "appstore",
         "--scope", "clients.manage", "--secret-env", "APPSTORE_IDENTITY_SECRET", *extra],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def client_credentials(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    return await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "clients.manage"}, auth=("appstore", secret)
    )


async def test_creates_then_updates_the_client_and_only_the_latest_secret_works(
    app: FastAPI, client: httpx.AsyncClient, settings: IdentitySettings
) -> None:
    created = ensure(settings, "first-secret-of-the-app-store")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"client_id": "appstore", "scope": "clients.manage", "created": True}
    token = await client_credentials(client, "first-secret-of-the-app-store")
    assert token.status_code == 200, token.text
    # The token manages clients: the app store can read a client's registration.
    missing = await client.get(
        "/oauth/clients/no-such-client", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert missing.status_code == 404

    again = ensure(settings, "second-secret-of-the-app-store", "--name", "应用超市")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False
    assert (await client_credentials(client, "first-secret-of-the-app-store")).status_code == 401
    assert (await client_credentials(client, "second-secret-of-the-app-store")).status_code == 200
    database: Database = app.state.database
    with database.session() as session:
        row = session.get(OAuthClient, "appstore")
        assert row is not None
        assert (row.first_party, row.client_type, row.active, row.client_name) == (
            True,
            "confidential",
            True,
            "应用超市",
        )
        assert json.loads(row.grant_types) == ["client_credentials"]


def test_refuses_a_missing_or_short_secret_and_unknown_scopes(settings: IdentitySettings) -> None:
    missing = ensure(settings, None)
    assert missing.returncode == 2 and "APPSTORE_IDENTITY_SECRET" in missing.stderr
    assert ensure(settings, "short").returncode == 2
    unknown = subprocess.run(
        [sys.executable, "-m", "identity", "ensure-platform-client", "--client-id", "appstore",
         "--scope", "no.such.scope", "--secret-env", "APPSTORE_IDENTITY_SECRET"],
        env={**os.environ, "IDENTITY_DATABASE_URL": settings.database_url, "IDENTITY_ENVIRONMENT": "test",
             "APPSTORE_IDENTITY_SECRET": "a-long-enough-secret-value"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "no.such.scope" in unknown.stderr
