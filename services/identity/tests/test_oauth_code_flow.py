"""Apps signing people in: authorization code + PKCE end to end, with authlib's OAuth client as the
relying party and a cookie-keeping HTTP visitor as the person's browser.

discovery → login form → consent → code → token (PKCE) → ID token → userinfo → refresh with
rotation → reuse detection → revocation → introspection; and every way the flow is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import col, select

from identity.config import IdentitySettings
from identity.oauth.models import AuthorizationCode
from identity.people import service as people
from identity.people.models import Person
from identity.people.schemas import PersonCreate
from identity.testing import (
    Directory,
    RegisteredClient,
    TokenFactory,
    Visitor,
    all_published,
    bearer,
    give_login,
    register_client,
    resident_id,
)
from kit.audit import AuditEntry

BASE = "http://identity.test"
AUTHORIZE = f"{BASE}/oauth/authorize"
TOKEN = f"{BASE}/oauth/token"
CALLBACK = "https://homework.example.com/oidc/callback"
PASSWORD = "Kexue@2026edu"


def homework_app(app: FastAPI, **fields: Any) -> RegisteredClient:
    defaults: dict[str, Any] = {
        "client_name": "智慧作业",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": ["https://homework.example.com/bye"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile phone offline_access roster.read",
    }
    return register_client(app, **{**defaults, **fields})


def relying_party(app: FastAPI, registered: RegisteredClient, **kwargs: Any) -> AsyncOAuth2Client:
    kwargs.setdefault("redirect_uri", CALLBACK)
    return AsyncOAuth2Client(
        client_id=registered.client_id,
        client_secret=registered.secret,
        code_challenge_method="S256",
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
        **kwargs,
    )


def query_of(response: httpx.Response) -> dict[str, str]:
    assert response.is_redirect, (response.status_code, response.text[:500])
    return {key: values[0] for key, values in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def id_token_claims(app: FastAPI, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
    claims: dict[str, Any] = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    return claims


@pytest.fixture
def teacher(app: FastAPI, directory: Directory) -> Person:
    give_login(app, directory.teacher_a, "linhuimin", PASSWORD)
    return directory.teacher_a


async def authorize(
    app: FastAPI,
    visitor: Visitor,
    rp: AsyncOAuth2Client,
    *,
    username: str = "linhuimin",
    approve: bool = True,
    **params: Any,
) -> tuple[httpx.Response, str, str]:
    """Run the browser part: returns the redirect back to the app, the PKCE verifier and the state."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    url, _ = rp.create_authorization_url(AUTHORIZE, state=state, code_verifier=verifier, **params)
    page = await visitor.sign_in(url, username, PASSWORD)
    if page.status_code == 200 and 'action="/oauth/authorize"' in page.text:
        page = await visitor.submit(page, "/oauth/authorize", decision="approve" if approve else "deny")
    return page, verifier, state


async def test_the_whole_flow_with_a_real_oauth_client(
    app: FastAPI, client: httpx.AsyncClient, teacher: Person, settings: IdentitySettings
) -> None:
    homework = homework_app(app)
    gateway = register_client(
        app, client_name="网关", grant_types=["client_credentials"], scope="tokens.introspect", first_party=True
    )
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["authorization_endpoint"] == AUTHORIZE and discovery["token_endpoint"] == TOKEN

    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid profile phone offline_access") as rp:
        verifier = secrets.token_urlsafe(48)
        url, state = rp.create_authorization_url(AUTHORIZE, code_verifier=verifier, nonce="n-0S6_WzA2Mj")
        login_page = await visitor.open(url)
        assert login_page.status_code == 200 and 'action="/login"' in login_page.text
        consent = await visitor.submit(login_page, "/login", username="linhuimin", password=PASSWORD)
        assert consent.status_code == 200 and "智慧作业" in consent.text
        assert "手机号码" in consent.text and "姓名" in consent.text  # what the app gets, named
        assert "form-action 'self' https://homework.example.com" in consent.headers["content-security-policy"]
        back = await visitor.submit(consent, "/oauth/authorize", decision="approve")
        location = back.headers["location"]
        assert location.startswith(CALLBACK + "?")
        assert query_of(back)["state"] == state

        token = await rp.fetch_token(TOKEN, authorization_response=location, code_verifier=verifier)
        assert token["token_type"].lower() == "bearer" and token["refresh_token"] and token["id_token"]
        assert set(token["scope"].split()) == {"openid", "profile", "phone", "offline_access"}

        id_claims = await id_token_claims(app, token["id_token"])
        assert id_claims["iss"] == settings.token_issuer
        assert id_claims["aud"] == [homework.client_id]
        assert id_claims["nonce"] == "n-0S6_WzA2Mj"
        assert id_claims["sub"] != teacher.id  # pairwise: the app never learns the platform's id
        assert id_claims["name"] == "林慧敏" and id_claims["amr"] == ["pwd"]
        digest = hashlib.sha256(token["access_token"].encode()).digest()
        assert id_claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

        userinfo = (await rp.get("/oauth/userinfo")).json()
        assert userinfo == {
            "sub": id_claims["sub"],
            "name": "林慧敏",
            "person_kind": "staff",
            "locale": "zh-CN",
            "phone_number": "+8613900000006",
            "phone_number_verified": False,
        }

        # Refresh rotates: a new refresh token each time, and the old one is spent.
        first_refresh = token["refresh_token"]
        rotated = await rp.refresh_token(TOKEN, refresh_token=first_refresh)
        assert rotated["refresh_token"] != first_refresh and rotated["access_token"] != token["access_token"]
        narrowed = await rp.refresh_token(TOKEN, refresh_token=rotated["refresh_token"], scope="openid profile")
        assert narrowed["scope"] == "openid profile"

        # Reuse of a spent refresh token: the whole family is revoked, the thief's and the owner's.
        with pytest.raises(OAuthError) as reuse:
            await rp.refresh_token(TOKEN, refresh_token=first_refresh)
        assert reuse.value.error == "invalid_grant"
        with pytest.raises(OAuthError):
            await rp.refresh_token(TOKEN, refresh_token=narrowed["refresh_token"])
        introspected = await client.post(
            "/oauth/introspect",
            data={"token": narrowed["access_token"]},
            auth=(gateway.client_id, gateway.secret or ""),
        )
        assert introspected.json() == {"active": False}
        assert (await rp.get("/oauth/userinfo")).status_code == 401

    await all_published(app)
    with app.state.database.session() as session:
        actions = [row.action for row in session.exec(select(AuditEntry)).all()]
    for action in (
        "login.success",
        "consent.granted",
        "oauth.token_issued",
        "oauth.token_refreshed",
        "oauth.refresh_reused",
        "oauth.userinfo",
    ):
        assert action in actions, (action, sorted(set(actions)))


async def test_revocation_then_introspection(app: FastAPI, client: httpx.AsyncClient, teacher: Person) -> None:
    homework = homework_app(app)
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid offline_access") as rp:
        back, verifier, _ = await authorize(app, visitor, rp)
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        auth = (homework.client_id, homework.secret or "")
        active = await client.post("/oauth/introspect", data={"token": token["access_token"]}, auth=auth)
        assert active.json()["active"] is True and active.json()["sub"] != teacher.id
        refresh_seen = await client.post(
            "/oauth/introspect", auth=auth, data={"token": token["refresh_token"], "token_type_hint": "refresh_token"}
        )
        assert refresh_seen.json()["active"] is True and refresh_seen.json()["token_type"] == "refresh_token"

        api = bearer(token["access_token"])
        assert (await client.get("/organisations", headers=api)).status_code == 403  # valid, but not its scope
        await rp.revoke_token(f"{BASE}/oauth/revoke", token=token["refresh_token"], token_type_hint="refresh_token")
        refused = await client.get("/organisations", headers=api)  # the issuer honours its revocation at once
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        for value in (token["access_token"], token["refresh_token"]):
            seen = await client.post("/oauth/introspect", data={"token": value}, auth=auth)
            assert seen.json() == {"active": False}


async def test_two_apps_see_different_subjects_for_one_person(app: FastAPI, teacher: Person) -> None:
    homework = homework_app(app)
    reading = homework_app(app, client_name="阅读打卡", redirect_uris=["https://reading.example.org/cb"])
    subjects = []
    async with Visitor(app) as visitor:
        for registered, redirect_uri in ((homework, CALLBACK), (reading, "https://reading.example.org/cb")):
            async with relying_party(app, registered, scope="openid", redirect_uri=redirect_uri) as rp:
                back, verifier, _ = await authorize(app, visitor, rp)
                token = await rp.fetch_token(
                    TOKEN, authorization_response=back.headers["location"], code_verifier=verifier
                )
                subjects.append((await id_token_claims(app, token["id_token"]))["sub"])
    assert subjects[0] != subjects[1]
    assert teacher.id not in subjects


async def test_consent_is_remembered_and_withdrawal_revokes_the_apps_tokens(
    app: FastAPI, client: httpx.AsyncClient, teacher: Person
) -> None:
    homework = homework_app(app)
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid profile") as rp:
        back, verifier, _ = await authorize(app, visitor, rp)
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        # Signed in and consented: the next authorization goes straight back, no screen.
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=secrets.token_urlsafe(48))
        again = await visitor.open(url)
        assert again.is_redirect and again.headers["location"].startswith(CALLBACK)
        # Asking for more than was consented to shows the screen again.
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=secrets.token_urlsafe(48), scope="openid phone")
        assert (await visitor.open(url)).status_code == 200

        apps = await visitor.open("/account/apps")
        assert "智慧作业" in apps.text
        withdrawn = await visitor.submit(apps, "/account/apps/withdraw")
        assert "已撤回对“智慧作业”的授权" in withdrawn.text
        assert f'data-client="{homework.client_id}"' not in withdrawn.text
        assert (await rp.get("/oauth/userinfo")).status_code == 401
        seen = await client.post(
            "/oauth/introspect", data={"token": token["access_token"]}, auth=(homework.client_id, homework.secret or "")
        )
        assert seen.json() == {"active": False}


async def test_a_child_under_14_needs_a_guardian_for_personal_information(app: FastAPI, directory: Directory) -> None:
    cipher = app.state.cipher
    with directory.database.session() as session:
        school = directory.school_a
        child = people.create(
            session,
            people.clean(
                PersonCreate(
                    kind="student",
                    name="王雨桐",
                    org_id=school.id,
                    sex="female",
                    birth_date=date(2016, 3, 5),
                    resident_id_number=resident_id(date(2016, 3, 5), 124),
                    student_number="G" + resident_id(date(2016, 3, 5), 124),
                ),
                school,
            ),
            cipher,
            created_by=None,
        )
        mother = people.create(
            session,
            people.clean(PersonCreate(kind="guardian", name="王丽娟", org_id=school.id, phone="13700000001"), school),
            cipher,
            created_by=None,
        )
        people.link_guardian(session, child, mother, relationship="mother", linked_by=None)
    give_login(app, child, "wangyutong", PASSWORD)
    give_login(app, mother, "wanglijuan", PASSWORD)
    homework = homework_app(app)

    async with Visitor(app) as child_browser, relying_party(app, homework, scope="openid profile") as rp:
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=(verifier := secrets.token_urlsafe(48)))
        consent = await child_browser.sign_in(url, "wangyutong", PASSWORD)
        assert 'id="guardian-needed"' in consent.text
        back = await child_browser.submit(consent, "/oauth/authorize", decision="approve")
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        assert token["scope"] == "openid"  # the name waits for a guardian
        assert "name" not in (await rp.get("/oauth/userinfo")).json()
        # Signing in again while the guardian has not decided: no screen, straight back to the app.
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=secrets.token_urlsafe(48))
        again = await child_browser.open(url)
        assert again.is_redirect and again.headers["location"].startswith(CALLBACK)

    async with Visitor(app) as mother_browser:
        apps = await mother_browser.sign_in("/account/apps", "wanglijuan", PASSWORD)
        assert "智慧作业" in apps.text and "王雨桐" in apps.text
        decided = await mother_browser.submit(apps, _request_action(apps.text), decision="approve")
        assert "已同意" in decided.text

    async with Visitor(app) as child_browser, relying_party(app, homework, scope="openid profile") as rp:
        back, verifier, _ = await authorize(app, child_browser, rp, username="wangyutong")
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        assert set(token["scope"].split()) == {"openid", "profile"}
        assert (await rp.get("/oauth/userinfo")).json()["name"] == "王雨桐"
    with directory.database.session() as session:
        granted = session.exec(select(AuditEntry).where(AuditEntry.action == "consent.granted")).all()
        assert any(json.loads(row.detail)["granted_by"] == mother.id for row in granted)


def _request_action(page: str) -> str:
    marker = 'action="/account/apps/requests/'
    start = page.index(marker) + len('action="')
    return page[start : page.index('"', start)]


async def test_refused_authorization_requests(app: FastAPI, teacher: Person) -> None:
    homework = homework_app(app)
    public_app = register_client(
        app, client_name="家长助手", token_endpoint_auth_method="none", redirect_uris=[CALLBACK], scope="openid profile"
    )
    async with Visitor(app) as visitor:
        await visitor.sign_in("/account", "linhuimin", PASSWORD)

        def url(**params: str) -> str:
            base = {
                "response_type": "code",
                "client_id": homework.client_id,
                "redirect_uri": CALLBACK,
                "scope": "openid",
                "state": "s1",
            }
            return "/oauth/authorize?" + httpx.QueryParams({**base, **params}).__str__()

        # The app cannot be told apart from an attacker: an error page, never a redirect.
        for params in (
            {"redirect_uri": CALLBACK + "/evil"},
            {"redirect_uri": "https://homework.example.com/oidc"},
            {"client_id": "no-such-app"},
        ):
            page = await visitor.open(url(**params))
            assert page.status_code == 400 and 'id="oauth-error"' in page.text, params
        # Once the app is known, errors go back to it with the state.
        cases = {
            "unsupported_response_type": {"response_type": "token"},
            "invalid_scope": {"scope": "openid people.write"},
        }
        for error, params in cases.items():
            back = await visitor.open(url(**params))
            assert query_of(back)["error"] == error and query_of(back)["state"] == "s1", error
        no_pkce = await visitor.open(url(client_id=public_app.client_id))
        assert query_of(no_pkce)["error"] == "invalid_request"
        plain = await visitor.open(
            url(client_id=public_app.client_id, code_challenge="a" * 43, code_challenge_method="plain")
        )
        assert query_of(plain)["error"] == "invalid_request"
        oversized = await visitor.open(url(state="s" * 5000))
        assert oversized.status_code == 400
        denied_rp = relying_party(app, homework, scope="openid profile")
        denied, _, state = await authorize(app, visitor, denied_rp, approve=False)
        assert query_of(denied)["error"] == "access_denied" and query_of(denied)["state"] == state
        await denied_rp.aclose()

    async with Visitor(app) as stranger:  # nobody signed in
        silent = await stranger.open(url(prompt="none"))
        assert query_of(silent)["error"] == "login_required"


async def test_refused_code_redemptions(app: FastAPI, client: httpx.AsyncClient, teacher: Person) -> None:
    homework = homework_app(app)
    gateway = register_client(
        app, client_name="网关", grant_types=["client_credentials"], scope="tokens.introspect", first_party=True
    )
    auth = (homework.client_id, homework.secret or "")
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid") as rp:

        async def fresh_code() -> tuple[str, str]:
            back, verifier, _ = await authorize(app, visitor, rp)
            return query_of(back)["code"], verifier

        def form(code: str, **extra: str) -> dict[str, str]:
            return {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **extra}

        code, verifier = await fresh_code()
        for name, data, error in (
            ("missing verifier", form(code), "invalid_request"),
            ("wrong verifier", form(code, code_verifier=secrets.token_urlsafe(48)), "invalid_grant"),
            ("wrong redirect_uri", form(code, code_verifier=verifier, redirect_uri=CALLBACK + "/x"), "invalid_grant"),
        ):
            refused = await client.post("/oauth/token", data=data, auth=auth)
            assert refused.status_code == 400 and refused.json()["error"] == error, (name, refused.text)
            assert "access_token" not in refused.json()

        code, verifier = await fresh_code()
        first = await client.post("/oauth/token", data=form(code, code_verifier=verifier), auth=auth)
        assert first.status_code == 200
        replay = await client.post("/oauth/token", data=form(code, code_verifier=verifier), auth=auth)
        assert replay.json()["error"] == "invalid_grant"
        # The replay withdrew what the first redemption bought.
        seen = await client.post(
            "/oauth/introspect",
            data={"token": first.json()["access_token"]},
            auth=(gateway.client_id, gateway.secret or ""),
        )
        assert seen.json() == {"active": False}

        code, verifier = await fresh_code()
        with app.state.database.session() as session:
            row = session.exec(select(AuthorizationCode).order_by(col(AuthorizationCode.created_at).desc())).first()
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(row)
        expired = await client.post("/oauth/token", data=form(code, code_verifier=verifier), auth=auth)
        assert expired.json()["error"] == "invalid_grant"


async def test_rp_initiated_logout(app: FastAPI, teacher: Person) -> None:
    homework = homework_app(app)
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid") as rp:
        back, verifier, _ = await authorize(app, visitor, rp)
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        page = await visitor.open(
            "/oauth/logout?"
            + str(
                httpx.QueryParams(
                    {
                        "id_token_hint": token["id_token"],
                        "post_logout_redirect_uri": "https://homework.example.com/bye",
                        "state": "bye-1",
                    }
                )
            )
        )
        assert page.status_code == 200
        tampered = await visitor.submit(page, "/oauth/logout", redirect="https://evil.example/")
        assert tampered.status_code == 400  # the form's redirect is checked again, against the client's URIs
        assert 'action="/login"' not in (await visitor.open("/account")).text  # still signed in
        gone = await visitor.submit(page, "/oauth/logout")
        assert gone.headers["location"] == "https://homework.example.com/bye?state=bye-1"
        assert 'action="/login"' in (await visitor.open("/account")).text  # signed out
        unregistered = await visitor.open(
            "/oauth/logout?"
            + str(
                httpx.QueryParams(
                    {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/"}
                )
            )
        )
        assert unregistered.status_code == 400


async def test_deactivating_an_account_revokes_its_tokens(
    app: FastAPI, client: httpx.AsyncClient, teacher: Person, directory: Directory, token_for: TokenFactory
) -> None:
    homework = homework_app(app)
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid offline_access") as rp:
        back, verifier, _ = await authorize(app, visitor, rp)
        token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        admin = bearer(token_for(directory.school_admin_a, scopes=("people.write",)))
        deactivated = await client.post(f"/people/{teacher.id}/deactivate", json={"reason": "调离本市"}, headers=admin)
        assert deactivated.status_code == 200, deactivated.text
        seen = await client.post("/oauth/introspect", data={"token": token["access_token"]},
                                 auth=(homework.client_id, homework.secret or ""))  # fmt: skip
        assert seen.json() == {"active": False}
        with pytest.raises(OAuthError) as refused:
            await rp.refresh_token(TOKEN, refresh_token=token["refresh_token"])
        assert refused.value.error == "invalid_grant"
        assert 'action="/login"' in (await visitor.open("/account")).text  # the browser session ended too


async def test_prompt_login_and_max_age_ask_for_the_password_again(app: FastAPI, teacher: Person) -> None:
    homework = homework_app(app)
    async with Visitor(app) as visitor, relying_party(app, homework, scope="openid") as rp:
        back, verifier, _ = await authorize(app, visitor, rp)
        first = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
        first_auth_time = (await id_token_claims(app, first["id_token"]))["auth_time"]
        for params in ({"prompt": "login"}, {"max_age": "300"}):
            with app.state.database.session() as session:  # the password was checked a while ago
                session.execute(sa.text("UPDATE browser_session SET password_verified_at = :t"),
                                {"t": datetime.now(UTC) - timedelta(minutes=10)})  # fmt: skip
            verifier = secrets.token_urlsafe(48)
            url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=verifier, **params)
            page = await visitor.open(url)
            assert page.status_code == 200 and 'action="/login"' in page.text, params
            back = await visitor.submit(page, "/login", username="linhuimin", password=PASSWORD)
            assert back.is_redirect, (params, back.status_code, back.text[-1500:])
            assert back.headers["location"].startswith(CALLBACK), params
            token = await rp.fetch_token(TOKEN, authorization_response=back.headers["location"], code_verifier=verifier)
            assert (await id_token_claims(app, token["id_token"]))["auth_time"] > first_auth_time - 1

        verifier = secrets.token_urlsafe(48)
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=verifier, max_age="300")
        recent = await visitor.open(url)  # signed in a moment ago: no new login needed
        assert recent.is_redirect and recent.headers["location"].startswith(CALLBACK)
