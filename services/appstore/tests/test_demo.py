"""`python -m appstore load-demo`: the demo vendor with the sample app approved and installed at a school, a
catalog worth browsing, each through the store's own service functions (events included); loaded once, and
every later run only hands out fresh credentials for the sample app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, col, select

from appstore import demo
from appstore.apps.models import App, AppVersion
from appstore.config import AppStoreSettings
from appstore.identity_client import IdentityClient
from appstore.installations.models import Installation
from appstore.review.models import ReviewDecision
from appstore.testing_identity import IdentityServer, identity_server
from appstore.vendors.models import Vendor, VendorMember
from contracts.manifest import AppManifestV1
from kit.crypto import FieldCipher
from kit.db import Database
from kit.identifiers import validate_credit_code
from kit.outbox import OutboxEvent
from kit.testing import TestCity

__all__ = ["identity_server"]

REVIEWER = "市教育局管理员"  # the test city's city_admin


@pytest.fixture
def settings(settings: AppStoreSettings, identity_server: IdentityServer) -> AppStoreSettings:
    return identity_server.configure(settings)


@pytest.fixture
def developer_id(city: TestCity) -> str:
    """Identity's demo vendor developer, as the directory projection knows it."""
    person = city.add_person(
        "demo_developer", kind="staff", name=demo.DEMO_DEVELOPER_NAME, org_id=city.city_id, role="vendor_developer"
    )
    return person.id


def load(app: FastAPI, settings: AppStoreSettings) -> demo.DemoResult:
    identity = IdentityClient(settings)
    try:
        return demo.load(
            app.state.database, settings, app.state.cipher, identity, wait_seconds=5, reviewer_name=REVIEWER
        )
    finally:
        identity.close()


def event_types(database: Database) -> list[str]:
    with database.session() as session:
        return [row.event_type for row in session.exec(select(OutboxEvent)).all()]


async def test_the_demo_lists_the_sample_app_and_a_catalog_and_installs_the_sample_at_a_school(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, developer_id: str, identity_server: IdentityServer,
    settings: AppStoreSettings,
) -> None:  # fmt: skip
    result = load(app, settings)
    assert result.loaded and result.developer_found
    assert result.listed_apps == 2 + len(demo.CATALOG) >= 12

    database: Database = app.state.database
    with database.session() as session:
        vendors = session.exec(select(Vendor)).all()
        assert len(vendors) == 1 + len(demo.CATALOG_VENDORS)
        for vendor in vendors:
            assert validate_credit_code(vendor.unified_social_credit_code) == vendor.unified_social_credit_code
        owner = session.exec(select(VendorMember).where(VendorMember.vendor_id == result.vendor_id)).one()
        assert (owner.person_id, owner.role) == (developer_id, "owner")

        apps = session.exec(select(App)).all()
        assert len(apps) == result.listed_apps
        assert all(row.status == "listed" and row.published_version_id for row in apps)
        assert len({manifest_category(session, row) for row in apps}) >= 8  # categories worth browsing
        reviewer = city.people["city_admin"].id
        decisions = session.exec(select(ReviewDecision)).all()
        assert len(decisions) == len(apps)
        assert {(row.decision, row.reviewer_id) for row in decisions} == {("approved", reviewer)}

        installed = session.exec(select(Installation).where(Installation.status == "active")).all()
        assert sorted(row.client_id for row in installed) == sorted(demo.SAMPLE_CLIENT_IDS.values())
        assert {row.school_id for row in installed} == {result.school_id}
        assert result.school_id in (city.school_a1, city.school_a2, city.school_b1)

    types = event_types(database)
    assert types.count("edu.appstore.vendor.registered.v1") == len(vendors)
    assert types.count("edu.appstore.app.published.v1") == len(apps)
    assert types.count("edu.appstore.installation.granted.v1") == 2

    # The catalog shows them to a school administrator.
    page = await client.get("/catalog/apps", params={"limit": 50}, headers=city.token("a1_admin", "apps.read"))
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(apps)
    found = await client.get("/catalog/apps", params={"q": "作业"}, headers=city.token("a1_admin", "apps.read"))
    assert "课后作业小助手" in found.text

    # The sample app is registered at identity, and the secret handed out works.
    lti = result.sample_apps["lti"]
    assert identity_server.client(lti["client_id"]) is not None
    token = identity_server.client_credentials_token(lti["client_id"], lti["client_secret"], "metering.report")
    assert token.status_code == 200, token.text
    env = result.vendor_app_env
    assert env["VENDOR_APP_OIDC_CLIENT_ID"] == "demo-reading-log"
    assert env["VENDOR_APP_OIDC_CLIENT_SECRET"] == result.sample_apps["oidc"]["client_secret"]
    assert env["VENDOR_APP_WEBHOOK_SECRET"].split() == [
        result.sample_apps["lti"]["webhook_secret"], result.sample_apps["oidc"]["webhook_secret"],
    ]  # fmt: skip
    assert all(secret.startswith("whsec_") for secret in env["VENDOR_APP_WEBHOOK_SECRET"].split())


def manifest_category(session: Session, row: App) -> str:
    version = session.get(AppVersion, row.published_version_id)
    assert version is not None
    return AppManifestV1.model_validate_json(version.manifest).category


async def test_loading_again_changes_nothing_but_renews_the_sample_apps_secrets(
    app: FastAPI, city: TestCity, developer_id: str, identity_server: IdentityServer, settings: AppStoreSettings
) -> None:
    first = load(app, settings)
    database: Database = app.state.database
    events_before = len(event_types(database))
    second = load(app, settings)
    assert not second.loaded
    assert second.vendor_id == first.vendor_id and second.listed_apps == first.listed_apps
    assert second.developer_found
    with database.session() as session:
        assert len(session.exec(select(Vendor)).all()) == 1 + len(demo.CATALOG_VENDORS)
        assert len(session.exec(select(Installation)).all()) == 2
    assert len(event_types(database)) == events_before

    old, new = first.sample_apps["lti"]["client_secret"], second.sample_apps["lti"]["client_secret"]
    assert old != new
    assert identity_server.client_credentials_token("demo-homework-helper", new, "metering.report").status_code == 200
    assert identity_server.client_credentials_token("demo-homework-helper", old, "metering.report").status_code != 200
    assert second.sample_apps["lti"]["webhook_secret"] == first.sample_apps["lti"]["webhook_secret"]


async def test_without_the_demo_developer_the_vendor_is_still_loaded_and_says_so(
    app: FastAPI, city: TestCity, identity_server: IdentityServer, settings: AppStoreSettings
) -> None:
    result = load(app, settings)
    assert result.loaded and not result.developer_found
    with app.state.database.session() as session:
        owner = session.exec(select(VendorMember).where(VendorMember.vendor_id == result.vendor_id)).one()
        assert owner.person_id == demo.LOADER_ID


async def test_the_demo_waits_for_the_directory_and_gives_up_clearly(app: FastAPI, settings: AppStoreSettings) -> None:
    with pytest.raises(TimeoutError, match="directory"):
        demo.load(app.state.database, settings, app.state.cipher, None, wait_seconds=0.6)
    with app.state.database.session() as session:
        assert session.exec(select(col(Vendor.id))).first() is None


def test_demo_data_is_refused_outside_local_development(settings: AppStoreSettings) -> None:
    production = settings.model_copy(update={"environment": "production"})
    with pytest.raises(demo.DemoNotAllowed):
        demo.load(Database("sqlite://"), production, FieldCipher("k" * 32, "h" * 32), None)
