"""A vendor's developers get the app's OAuth client credentials once; they work at identity until rotated."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlmodel import select

from appstore.subjects import sector_identifier
from appstore.testing_identity import IdentityServer
from kit.audit import AuditEntry
from kit.testing import TestCity

from .installations_factories import app_database, identity_server, listed_app, settings, vendor

__all__ = ["identity_server", "settings"]

DEVELOPER = "apps.develop"


async def test_anonymous_other_vendors_and_non_developers_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, identity_server: IdentityServer
) -> None:
    database = app_database(app)
    listed = listed_app(database, vendor(database, city, "developer"))
    vendor(database, city, "other_developer")
    path = f"/apps/{listed.app_id}/credentials"
    assert (await client.post(path)).status_code == 401
    assert (await client.post(path, headers=city.token("other_developer", DEVELOPER))).status_code == 403
    assert (await client.post(path, headers=city.token("a1_admin", DEVELOPER))).status_code == 403
    assert (await client.post(path, headers=city.token("developer", "apps.read"))).status_code == 403
    unknown = await client.post("/apps/no-such-app/credentials", headers=city.token("developer", DEVELOPER))
    assert unknown.status_code == 404
    assert identity_server.client(listed.client_id) is None


async def test_credentials_work_at_identity_and_rotate(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, identity_server: IdentityServer
) -> None:
    database = app_database(app)
    # Before publication too: the vendor integrates against the platform while the version is in review.
    listed = listed_app(database, vendor(database, city, "developer", "developer2"), launch="lti", publish=False)
    path = f"/apps/{listed.app_id}/credentials"
    first = await client.post(path, headers=city.token("developer", DEVELOPER))
    assert first.status_code == 200, first.text
    credentials = first.json()
    assert credentials["client_id"] == listed.client_id
    registered = identity_server.client(listed.client_id)
    assert registered is not None
    assert registered["sector_identifier"] == sector_identifier(listed.app_id)
    assert registered["redirect_uris"] == "[]"  # an LTI tool is launched by the app store

    token = identity_server.client_credentials_token(credentials["client_id"], credentials["client_secret"], "openid")
    assert token.status_code == 200, token.text
    assert token.json()["access_token"]

    second = await client.post(path, headers=city.token("developer2", DEVELOPER))
    assert second.status_code == 200
    assert second.json()["client_secret"] != credentials["client_secret"]
    stale = identity_server.client_credentials_token(credentials["client_id"], credentials["client_secret"], "openid")
    assert stale.status_code == 401
    fresh = identity_server.client_credentials_token(
        credentials["client_id"], second.json()["client_secret"], "roster.read"
    )
    assert fresh.status_code == 200, fresh.text

    with database.session() as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.action == "appstore.app_credentials_issued")).all()
    assert [entry.actor_id for entry in entries] == [city.people["developer"].id, city.people["developer2"].id]
    assert all(credentials["client_secret"] not in str(entry.detail) for entry in entries)


async def test_an_app_without_any_version_has_no_credentials_yet(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    import uuid

    from appstore.apps.models import App

    database = app_database(app)
    vendor_id = vendor(database, city, "developer")
    app_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(App(id=app_id, vendor_id=vendor_id, client_id=f"app-{uuid.uuid4().hex[:12]}", created_by="seed"))
    response = await client.post(f"/apps/{app_id}/credentials", headers=city.token("developer", DEVELOPER))
    assert response.status_code == 409
    assert response.json()["type"].endswith("appstore/app-has-no-version")
