"""In a real Chromium: an app on another origin signs a teacher in, through the login and consent pages.

The app's redirect URI is on ``localhost`` while the provider is on ``127.0.0.1``: a different origin,
so the page's Content-Security-Policy (``form-action``) must let the consent form's redirect through.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from identity.accounts import service as accounts
from identity.config import IdentitySettings
from identity.main import create_app
from identity.oauth import clients
from identity.oauth.schemas import ClientRegistration
from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.schemas import PersonCreate
from kit.crypto import FieldCipher
from kit.db import Database
from kit.testing import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

PASSWORD = "Jiaoshi#2026edu"


def teacher_and_app(settings: IdentitySettings, redirect_uri: str) -> str:
    database = Database(settings.database_url)
    cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())
    try:
        with database.session() as session:
            city = organisations.create_root(session, name="厦门市")
            district = organisations.create(
                session, OrganisationCreate(kind="district", name="湖里区", parent_id=city.id)
            )
            school = organisations.create(
                session,
                OrganisationCreate(kind="school", name="金山小学", parent_id=district.id, school_code="2135020601",
                                   school_type="primary"),
            )  # fmt: skip
            data = PersonCreate(kind="staff", name="黄志强", org_id=school.id, username="huang.zhiqiang")
            teacher = people.create(session, people.clean(data, school), cipher, created_by=None)
            people.grant_role(session, teacher, role="teacher", org_id=school.id, granted_by=None)
            accounts.set_password(session, settings, teacher, PASSWORD, must_change=False, actor=None)
            app, _ = clients.register(
                session,
                ClientRegistration(client_name="智慧作业", token_endpoint_auth_method="none",
                                   redirect_uris=[redirect_uri], scope="openid profile"),
                registered_by=None, production=False,
            )  # fmt: skip
            return app.client_id
    finally:
        database.dispose()


def test_an_app_on_another_origin_gets_its_code_through_the_consent_page(
    settings: IdentitySettings, browser: Browser
) -> None:
    app = create_app(settings)
    with live_server(app) as base_url:
        port = urlsplit(base_url).port
        redirect_uri = f"http://localhost:{port}/rp/callback"  # another origin than 127.0.0.1
        client_id = teacher_and_app(settings, redirect_uri)
        verifier = generate_token(48)
        state = secrets.token_urlsafe(12)
        query = {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid profile",
            "state": state, "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
        }  # fmt: skip
        page = browser.new_page(locale="zh-CN")
        page.goto(f"{base_url}/oauth/authorize?" + "&".join(f"{k}={v}" for k, v in query.items()))
        page.get_by_label("登录名").fill("huang.zhiqiang")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()

        page.wait_for_selector("#consent-heading")
        assert "“智慧作业”请求使用您的账号" in page.inner_text("h1")
        assert "姓名" in page.inner_text("#consent-scopes")
        page.get_by_role("button", name="同意并继续").click()

        page.wait_for_url(f"{redirect_uri}?**")
        returned = parse_qs(urlsplit(page.url).query)
        assert returned["state"] == [state]
        assert len(returned["code"][0]) >= 40

        # English on request, on the same pages.
        english = browser.new_page(locale="en-GB")
        english.goto(f"{base_url}/oauth/authorize?" + "&".join(f"{k}={v}" for k, v in query.items()))
        english.get_by_label("Username").fill("huang.zhiqiang")
        english.get_by_label("Password").fill(PASSWORD)
        english.get_by_role("button", name="Sign in").click()
        english.wait_for_url(f"{redirect_uri}?**")  # consent was given once: straight back to the app
