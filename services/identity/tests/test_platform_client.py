"""`python -m identity ensure-platform-client`: the app store's own client, created or brought up to date."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from identity import cli
from identity.config import IdentitySettings, get_settings
from identity.oauth.models import OAuthClient
from kit.db import Database

APPSTORE_CLIENT = ["ensure-platform-client", "--client-id", "appstore", "--scope", "clients.manage"]
PORTAL_CLIENT = ["ensure-platform-client", "--client-id", "appstore-portal", "--scope",
                 "openid profile apps.read apps.install", "--name", "应用超市门户"]  # fmt: skip


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


RunCli = Callable[[list[str], dict[str, str]], Run]


@pytest.fixture
def run_cli(settings: IdentitySettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> RunCli:
    """The command's own ``main`` in this process (the first test runs ``python -m identity`` itself): the same
    arguments, environment, output and exit code, without starting an interpreter per call."""

    def run(argv: list[str], environment: dict[str, str]) -> Run:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("IDENTITY_ENVIRONMENT", "test")
        monkeypatch.delenv("APPSTORE_IDENTITY_SECRET", raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            returncode = cli.main(argv)
        finally:
            get_settings.cache_clear()
        captured = capsys.readouterr()
        return Run(returncode, captured.out, captured.err)

    return run


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


def test_refuses_a_missing_or_short_secret_and_unknown_scopes(run_cli: RunCli) -> None:
    secret_env = ["--secret-env", "APPSTORE_IDENTITY_SECRET"]
    missing = run_cli([*APPSTORE_CLIENT, *secret_env], {})
    assert missing.returncode == 2 and "APPSTORE_IDENTITY_SECRET" in missing.stderr
    assert run_cli([*APPSTORE_CLIENT, *secret_env], {"APPSTORE_IDENTITY_SECRET": "short"}).returncode == 2
    unknown = run_cli(
        ["ensure-platform-client", "--client-id", "appstore", "--scope", "no.such.scope", *secret_env],
        {"APPSTORE_IDENTITY_SECRET": "a-long-enough-secret-value"},
    )
    assert unknown.returncode == 2
    assert "no.such.scope" in unknown.stderr


async def test_a_public_portal_client_signs_people_in_with_pkce_only(
    app: FastAPI, client: httpx.AsyncClient, run_cli: RunCli
) -> None:
    callback = "http://127.0.0.1:8100/api/appstore/portal/callback"
    created = run_cli([*PORTAL_CLIENT, "--public", "--redirect-uri", callback], {})
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"] is True
    moved = "https://edu.example.cn/api/appstore/portal/callback"
    again = run_cli([*PORTAL_CLIENT, "--public", "--redirect-uri", moved], {})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False
    database: Database = app.state.database
    with database.session() as session:
        row = session.get(OAuthClient, "appstore-portal")
        assert row is not None
        assert (row.first_party, row.client_type, row.token_endpoint_auth_method, row.client_secret_hash) == (
            True,
            "public",
            "none",
            None,
        )
        assert json.loads(row.grant_types) == ["authorization_code"]
        assert json.loads(row.redirect_uris) == [moved]
    # A public client has no secret to present: the client-credentials grant is closed to it.
    refused = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "apps.read", "client_id": "appstore-portal"}
    )
    assert refused.status_code in (400, 401), refused.text
    # Without PKCE the authorization request is refused.
    no_pkce = await client.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": "appstore-portal", "redirect_uri": moved, "scope": "openid",
                "state": "s" * 16, "nonce": "n" * 16},
    )  # fmt: skip
    assert no_pkce.status_code in (302, 303, 400)
    assert "code=" not in no_pkce.headers.get("location", "")


def test_a_public_client_needs_a_redirect_uri_and_no_secret(run_cli: RunCli) -> None:
    no_redirect = run_cli([*PORTAL_CLIENT, "--public"], {})
    assert no_redirect.returncode == 2 and "--redirect-uri" in no_redirect.stderr
    secret_env = ["--secret-env", "APPSTORE_IDENTITY_SECRET"]
    with_secret = run_cli([*PORTAL_CLIENT, "--public", "--redirect-uri", "http://127.0.0.1/cb", *secret_env], {})
    assert with_secret.returncode == 2 and "no secret" in with_secret.stderr
    bad_uri = run_cli([*PORTAL_CLIENT, "--public", "--redirect-uri", "ftp://nowhere/cb"], {})
    assert bad_uri.returncode == 2 and "redirect" in bad_uri.stderr.lower()
