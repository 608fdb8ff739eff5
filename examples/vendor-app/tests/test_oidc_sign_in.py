"""The sample app signs a teacher in through the platform's real identity provider: third-party initiated
login → authorization code + PKCE → ID token verified with the provider's keys → the page names the user by
the app's pairwise subject, school and roles. Identity runs in-process; the sample app reaches it over ASGI."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from identity.config import IdentitySettings
from identity.people.models import Person
from identity.testing import Directory, Visitor, app, directory, give_login, register_client, settings
from vendor_app.config import Settings

from .conftest import VENDOR, vendor_client

__all__ = ["app", "directory", "settings"]  # identity's fixtures, used by name below

IDENTITY = "http://identity.test"
PASSWORD = "Kexue@2026edu"


def reading_log(identity: FastAPI, vendor_settings: Settings) -> Settings:
    registered = register_client(
        identity, client_name="阅读打卡", redirect_uris=[f"{VENDOR}/oidc/callback"],
        grant_types=["authorization_code"], scope="openid profile roster.read",
    )  # fmt: skip
    return replace(
        vendor_settings, platform_url=IDENTITY, oidc_client_id=registered.client_id,
        oidc_client_secret=registered.secret or "", oidc_scopes="openid profile roster.read",
    )  # fmt: skip


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def sign_in_through_the_platform(vendor: httpx.AsyncClient, identity: FastAPI) -> httpx.Response:
    """The browser: app's login URL → provider (login, consent) → back to the app's callback."""
    start = await vendor.get(
        "/oidc/login", params={"iss": IDENTITY, "login_hint": "linhuimin", "target_link_uri": f"{VENDOR}/oidc/home"}
    )
    assert start.status_code == 302, start.text
    async with Visitor(identity) as visitor:
        page = await visitor.sign_in(start.headers["location"], "linhuimin", PASSWORD)
        if page.status_code == 200 and 'action="/oauth/authorize"' in page.text:
            page = await visitor.submit(page, "/oauth/authorize", decision="approve")
    location = page.headers["location"]
    assert location.startswith(f"{VENDOR}/oidc/callback?"), (page.status_code, location)
    return await vendor.get(location.removeprefix(VENDOR))


async def test_a_teacher_signs_in_and_the_app_sees_a_pseudonym_school_and_name(
    app: FastAPI, directory: Directory, settings: IdentitySettings, vendor_settings: Settings
) -> None:
    teacher: Person = directory.teacher_a
    give_login(app, teacher, "linhuimin", PASSWORD)
    async with vendor_client(reading_log(app, vendor_settings), transport=httpx.ASGITransport(app=app)) as vendor:
        start = await vendor.get(
            "/oidc/login", params={"iss": IDENTITY, "login_hint": "linhuimin", "target_link_uri": f"{VENDOR}/oidc/home"}
        )
        query = query_of(start.headers["location"])
        assert start.headers["location"].startswith(f"{IDENTITY}/oauth/authorize?")
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["login_hint"] == "linhuimin" and query["nonce"] and query["state"]
        assert query["redirect_uri"] == f"{VENDOR}/oidc/callback"

        back = await sign_in_through_the_platform(vendor, app)
        assert back.status_code == 303, back.text
        assert back.headers["location"] == f"{VENDOR}/oidc/home"
        home = await vendor.get("/oidc/home")
        assert home.status_code == 200
        assert "您已通过城市教育统一身份登录" in home.text
        assert "林慧敏" in home.text
        assert directory.school_a.id in home.text  # school_id, released by roster.read
        (session,) = vendor.app.state.context.sessions.values()
        assert session["user"]["sub"] in home.text
        assert teacher.id not in home.text  # a pairwise pseudonym, never the platform's id


async def test_a_callback_without_the_browser_that_started_the_login_is_refused(
    app: FastAPI, directory: Directory, vendor_settings: Settings
) -> None:
    give_login(app, directory.teacher_a, "linhuimin", PASSWORD)
    async with vendor_client(reading_log(app, vendor_settings), transport=httpx.ASGITransport(app=app)) as vendor:
        start = await vendor.get("/oidc/login", params={"iss": IDENTITY, "login_hint": "linhuimin"})
        state = query_of(start.headers["location"])["state"]
        vendor.cookies.clear()  # another browser (login CSRF): it does not hold the state cookie
        response = await vendor.get("/oidc/callback", params={"state": state, "code": "stolen-code"})
        assert response.status_code == 400
        assert "登录状态不匹配" in response.text


async def test_a_login_initiated_by_another_issuer_is_refused(app: FastAPI, vendor_settings: Settings) -> None:
    async with vendor_client(reading_log(app, vendor_settings), transport=httpx.ASGITransport(app=app)) as vendor:
        response = await vendor.get("/oidc/login", params={"iss": "https://evil.example", "login_hint": "x"})
        assert response.status_code == 400
        assert "set-cookie" not in response.headers


async def test_the_home_page_needs_a_signed_in_user(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        response = await vendor.get("/oidc/home")
        assert response.status_code == 401


async def test_a_code_the_provider_will_not_exchange_ends_in_a_clear_page(
    app: FastAPI, directory: Directory, vendor_settings: Settings
) -> None:
    """The app's secret is wrong (say, rotated by a colleague): the user sees why, the app does not crash."""
    give_login(app, directory.teacher_a, "linhuimin", PASSWORD)
    settings = replace(reading_log(app, vendor_settings), oidc_client_secret="not-the-secret")
    async with vendor_client(settings, transport=httpx.ASGITransport(app=app)) as vendor:
        back = await sign_in_through_the_platform(vendor, app)
        assert back.status_code == 400
        assert "登录凭证校验未通过" in back.text
        assert (await vendor.get("/oidc/home")).status_code == 401
