"""A vendor's app from the app store signs a user in: its ID token names the user's school and roles there,
under the pairwise subject the app store also uses for LTI launches; a platform client does not get them."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.config import IdentitySettings
from identity.oauth.claims import school_role_claims
from identity.people import service as people
from identity.people.schemas import PersonCreate
from identity.testing import Directory, RegisteredClient, Visitor, give_login, register_client, resident_id
from kit.identifiers import pairwise_subject

BASE = "http://identity.test"
AUTHORIZE = f"{BASE}/oauth/authorize"
TOKEN = f"{BASE}/oauth/token"
CALLBACK = "https://quiz.example.com/oidc/callback"
PASSWORD = "Kexue@2026edu"
APP_ID = "7d1c3f0e-5b2a-4c1d-9e8f-0a1b2c3d4e5f"
SECTOR = f"urn:edu-platform:app:{APP_ID}"


def quiz_app(app: FastAPI, **fields: Any) -> RegisteredClient:
    """The app as the app store registers it: its app id and its sector (shared with LTI launches)."""
    defaults: dict[str, Any] = {
        "client_name": "课堂测验",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code"],
        "scope": "openid profile",
        "app_id": APP_ID,
        "sector_identifier": SECTOR,
    }
    return register_client(app, **{**defaults, **fields})


async def sign_in_and_get_id_token(app: FastAPI, registered: RegisteredClient, username: str, scope: str) -> str:
    async with (
        Visitor(app) as visitor,
        AsyncOAuth2Client(
            client_id=registered.client_id, client_secret=registered.secret, code_challenge_method="S256",
            transport=httpx.ASGITransport(app=app), base_url=BASE, redirect_uri=CALLBACK, scope=scope,
        ) as rp,
    ):  # fmt: skip
        verifier = secrets.token_urlsafe(48)
        url, _ = rp.create_authorization_url(AUTHORIZE, code_verifier=verifier, nonce=secrets.token_urlsafe(12))
        page = await visitor.sign_in(url, username, PASSWORD)
        if page.status_code == 200 and 'action="/oauth/authorize"' in page.text:
            page = await visitor.submit(page, "/oauth/authorize", decision="approve")
        assert page.is_redirect, (page.status_code, page.text[:300])
        token = await rp.fetch_token(TOKEN, authorization_response=page.headers["location"], code_verifier=verifier)
        return str(token["id_token"])


async def claims_of(app: FastAPI, id_token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
    claims: dict[str, Any] = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    return claims


async def test_an_apps_id_token_names_the_school_and_the_roles_there(
    app: FastAPI, directory: Directory, settings: IdentitySettings
) -> None:
    teacher = directory.teacher_a
    give_login(app, teacher, "linhuimin", PASSWORD)
    registered = quiz_app(app)

    claims = await claims_of(app, await sign_in_and_get_id_token(app, registered, "linhuimin", "openid"))

    assert claims["school_id"] == directory.school_a.id
    assert claims["roles"] == ["teacher"]
    # The same pseudonym the app store derives for this app's LTI launches and roster.
    assert claims["sub"] == pairwise_subject(settings.pairwise_salt.get_secret_value(), SECTOR, teacher.id)
    assert "name" not in claims  # openid alone releases no name


async def test_a_pupil_is_a_student_of_their_school(
    app: FastAPI, directory: Directory, settings: IdentitySettings
) -> None:
    birth = date(2011, 4, 9)  # old enough (14+) to consent for themselves
    with directory.database.session() as session:
        pupil = people.create(
            session,
            people.clean(
                PersonCreate(
                    kind="student",
                    name="陈小雨",
                    org_id=directory.school_b.id,
                    sex="female",
                    birth_date=birth,
                    resident_id_number=resident_id(birth, 126),
                    student_number="G" + resident_id(birth, 126),
                ),
                directory.school_b,
            ),
            app.state.cipher,
            created_by=None,
        )
    give_login(app, pupil, "chenxiaoyu", PASSWORD)
    registered = quiz_app(app, scope="openid")

    claims = await claims_of(app, await sign_in_and_get_id_token(app, registered, "chenxiaoyu", "openid"))

    assert claims["school_id"] == directory.school_b.id
    assert claims["roles"] == ["student"]


async def test_a_platform_client_gets_no_school_or_roles(app: FastAPI, directory: Directory) -> None:
    give_login(app, directory.teacher_a, "linhuimin", PASSWORD)
    registered = register_client(
        app, client_name="作业平台", redirect_uris=[CALLBACK], grant_types=["authorization_code"], scope="openid"
    )

    claims = await claims_of(app, await sign_in_and_get_id_token(app, registered, "linhuimin", "openid"))

    assert "school_id" not in claims and "roles" not in claims


def test_a_city_official_has_no_school_to_name(directory: Directory) -> None:
    # (Officials sign in with two-step verification; the claim assembly is what matters here.)
    with directory.database.session() as session:
        assert school_role_claims(session, directory.city_admin) == {}
        assert school_role_claims(session, directory.school_admin_a) == {
            "school_id": directory.school_a.id,
            "roles": ["school_admin"],
        }
