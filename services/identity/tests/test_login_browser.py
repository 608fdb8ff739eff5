"""In a real Chromium: an imported school admin's first login, from the login form to the account page."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyotp

from identity.accounts import service as accounts
from identity.config import IdentitySettings
from identity.main import create_app
from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.schemas import PersonCreate
from kit.crypto import FieldCipher
from kit.db import Database
from kit.testing import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

INITIAL = "Chushi#Mima2026"


def imported_school_admin(settings: IdentitySettings) -> None:
    """A school and its admin, as a bulk import leaves them: an initial password that must be changed."""
    database = Database(settings.database_url)
    cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())
    try:
        with database.session() as session:
            city = organisations.create_root(session, name="厦门市")
            district = organisations.create(session, OrganisationCreate(kind="district", name="思明区",
                                                                        parent_id=city.id))  # fmt: skip
            school = organisations.create(session, OrganisationCreate(
                kind="school", name="滨海小学", parent_id=district.id, school_code="2135020301", school_type="primary",
            ))  # fmt: skip
            data = PersonCreate(kind="staff", name="方文静", org_id=school.id, phone="13900000003",
                                username="fang.wenjing")  # fmt: skip
            admin = people.create(session, people.clean(data, school), cipher, created_by=None)
            people.grant_role(session, admin, role="school_admin", org_id=school.id, granted_by=None)
            accounts.set_password(session, settings, admin, INITIAL, must_change=True, actor=None)
    finally:
        database.dispose()


def test_first_login_of_an_imported_school_admin(settings: IdentitySettings, browser: Browser) -> None:
    imported_school_admin(settings)
    with live_server(create_app(settings)) as base_url:
        page = browser.new_page(locale="zh-CN")
        page.goto(f"{base_url}/login")
        assert page.title() == "登录 · 智慧教育平台"
        page.get_by_label("登录名").fill("fang.wenjing")
        page.get_by_label("密码").fill(INITIAL)
        page.get_by_role("button", name="登录").click()

        page.wait_for_url(f"{base_url}/account/password")
        assert "这是您第一次登录" in page.inner_text("main")
        page.get_by_label("当前密码").fill(INITIAL)
        page.get_by_label("新密码", exact=True).fill("woaini1314")
        page.get_by_label("再次输入新密码").fill("woaini1314")
        page.get_by_role("button", name="修改密码").click()
        problems = page.get_by_role("alert").inner_text()
        assert "新密码不符合要求" in problems and "这是最常见的密码之一" in problems

        page.get_by_label("当前密码").fill(INITIAL)
        page.get_by_label("新密码", exact=True).fill("Lujiang#Bay7")
        page.get_by_label("再次输入新密码").fill("Lujiang#Bay7")
        page.get_by_role("button", name="修改密码").click()

        page.wait_for_url(f"{base_url}/account/mfa/setup")
        qr = page.get_by_role("img", name=re.compile("两步验证二维码"))
        assert qr.evaluate("image => image.complete && image.naturalWidth > 0")  # the data: QR code rendered
        secret = page.inner_text("#totp-secret").replace(" ", "")
        page.get_by_label("6 位验证码").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="完成设置").click()

        page.wait_for_url(f"{base_url}/account")
        assert page.inner_text("h1") == "我的账号"
        assert page.inner_text("#account-name") == "方文静"
        assert page.get_by_role("link", name="我的应用授权").get_attribute("href") == "/account/apps"

        page.get_by_role("link", name="English").click()
        page.wait_for_url(f"{base_url}/account?lang=en")
        assert page.inner_text("h1") == "My account"
        assert page.get_by_role("link", name="My app authorisations").is_visible()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base_url}/login?notice=logged_out")
        assert "You have signed out." in page.inner_text("main")  # the choice of English is remembered
        page.close()
