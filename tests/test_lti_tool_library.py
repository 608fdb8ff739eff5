"""An LTI 1.3 tool built on a standard tool library (PyLTI1p3) works with the app store as its platform.

Both run as real HTTP servers: the tool (a small FastAPI app using PyLTI1p3's OIDCLogin, MessageLaunch and
NamesRolesProvisioningService, with its own request, cookie and session adapters) and the app store (under the
gateway's /api/appstore prefix). A teacher launches from a class: the tool's login initiation redirects to our
authorize endpoint, the id_token is posted back and validated by the library against our JWKS, and the tool
reads the class roster with NRPS (token endpoint with its signed assertion, then the paged memberships).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pylti1p3.cookie import CookieService
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.request import Request as LtiRequest
from pylti1p3.session import SessionService
from pylti1p3.tool_config import ToolConfDict
from starlette.concurrency import run_in_threadpool

from appstore import testing_launch
from appstore.subjects import user_pseudonym
from appstore.testing_launch import ServedStore, form_fields, served_app_store
from kit.natsserver import NatsServer
from kit.testing import live_server

PREFIX = "/api/appstore"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


# ----------------------------------------------------------------------------------------- the tool


class ToolRequest(LtiRequest):
    def __init__(self, params: dict[str, str], session: dict[str, Any]) -> None:
        self._params = params
        self._session = session

    @property
    def session(self) -> dict[str, Any]:
        return self._session

    def is_secure(self) -> bool:
        return False

    def get_param(self, key: str) -> str:
        return self._params.get(key, "")


class ToolCookies(CookieService):
    def __init__(self, incoming: dict[str, str]) -> None:
        self.incoming = incoming
        self.outgoing: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return f"{self._cookie_prefix}-{name}"

    def get_cookie(self, name: str) -> str | None:
        return self.incoming.get(self._name(name))

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self.outgoing[self._name(name)] = str(value)


class ToolRedirect(Redirect[Response]):
    def __init__(self, location: str, cookies: ToolCookies) -> None:
        self.location = location
        self.cookies = cookies

    def do_redirect(self) -> Response:
        response = RedirectResponse(self.location, status_code=302)
        for name, value in self.cookies.outgoing.items():
            response.set_cookie(name, value, httponly=True)
        return response

    def do_js_redirect(self) -> Response:
        return self.do_redirect()

    def set_redirect_url(self, location: str) -> None:
        self.location = location

    def get_redirect_url(self) -> str:
        return self.location


class ToolLogin(OIDCLogin[ToolRequest, ToolConfDict, SessionService, ToolCookies, Response]):
    def get_redirect(self, url: str) -> ToolRedirect:
        return ToolRedirect(url, self._cookie_service)


class ToolLaunch(MessageLaunch[ToolRequest, ToolConfDict, SessionService, ToolCookies]):
    def _get_request_param(self, key: str) -> str:
        return self._request.get_param(key)


@dataclass
class Tool:
    """A vendor's LTI tool written with PyLTI1p3; its registration is filled in once the platform knows it."""

    base: str = ""
    config: ToolConfDict | None = None
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    private_pem: str = ""
    public_pem: str = ""
    issuer: str = ""
    client_id: str = ""

    def register(self, *, issuer: str, platform: str, client_id: str, deployment_id: str) -> None:
        self.issuer, self.client_id = issuer, client_id
        self.config = ToolConfDict(
            {
                issuer: {
                    "default": True,
                    "client_id": client_id,
                    "auth_login_url": f"{platform}{PREFIX}/lti/authorize",
                    "auth_token_url": f"{platform}{PREFIX}/lti/token",
                    "key_set_url": f"{platform}{PREFIX}/lti/jwks",
                    "deployment_ids": [deployment_id],
                }
            }
        )
        self.config.set_private_key(issuer, self.private_pem)
        self.config.set_public_key(issuer, self.public_pem)

    def session_of(self, request: Request) -> tuple[str, dict[str, Any]]:
        session_id = request.cookies.get("tool-session") or uuid.uuid4().hex
        return session_id, self.sessions.setdefault(session_id, {})


def build_tool() -> tuple[Tool, FastAPI]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tool = Tool(
        private_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        public_pem=key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    web = FastAPI()

    async def params_of(request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        return params

    @web.api_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        assert tool.config is not None
        session_id, session = tool.session_of(request)
        lti_request = ToolRequest(await params_of(request), session)
        cookies = ToolCookies(dict(request.cookies))
        oidc = ToolLogin(lti_request, tool.config, SessionService(lti_request), cookies)
        response: Response = oidc.redirect(lti_request.get_param("target_link_uri"))
        response.set_cookie("tool-session", session_id, httponly=True)
        return response

    @web.get("/jwks")
    def jwks() -> dict[str, Any]:
        assert tool.config is not None
        keys: dict[str, Any] = tool.config.get_jwks(tool.issuer)
        return keys

    @web.post("/launch")
    async def launch(request: Request) -> Response:
        params = await params_of(request)
        _, session = tool.session_of(request)
        # PyLTI1p3 and its HTTP calls to the platform are synchronous: keep them off the event loop.
        response: Response = await run_in_threadpool(launched, tool, params, session, dict(request.cookies))
        return response

    return tool, web


def launched(tool: Tool, params: dict[str, str], session: dict[str, Any], cookies: dict[str, str]) -> Response:
    """What the tool does with a launch: validate it (the library), then read the class roster page by page."""
    assert tool.config is not None
    lti_request = ToolRequest(params, session)
    message = ToolLaunch(lti_request, tool.config, SessionService(lti_request), ToolCookies(cookies))
    data = message.get_launch_data()  # validates state, nonce, signature (our JWKS), deployment, message
    nrps = message.get_nrps()
    members_url = data["https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"]["context_memberships_url"]
    pages, members = 0, []
    url: str | None = members_url + "?limit=2"
    while url:
        page, url = nrps.get_members_page(url)
        members += page
        pages += 1
    return JSONResponse(
        {
            "sub": data["sub"],
            "is_teacher": message.check_teacher_access(),
            "deployment_id": data["https://purl.imsglobal.org/spec/lti/claim/deployment_id"],
            "context": data["https://purl.imsglobal.org/spec/lti/claim/context"],
            "pages": pages,
            "members": members,
            "all_members": nrps.get_members(),
        }
    )


# ------------------------------------------------------------------------------------- the platform


Platform = ServedStore


@pytest.fixture
def tool() -> Iterator[tuple[Tool, str]]:
    tool, web = build_tool()
    with live_server(web) as base:
        tool.base = base
        yield tool, base


@pytest.fixture
async def platform(database_url: str, nats_server: NatsServer) -> AsyncIterator[ServedStore]:
    async with served_app_store(database_url, nats_server.url) as store:
        yield store


async def test_a_pylti1p3_tool_launches_and_reads_the_class_roster(platform: Platform, tool: tuple[Tool, str]) -> None:
    factories = testing_launch
    lti_tool, tool_base = tool
    city, database = platform.city, platform.app.state.database
    scopes = ("openid", "roster.read", "roster.students.read")
    document = factories.manifest(launch=factories.lti_launch(tool_base, jwks_url=f"{tool_base}/jwks"), scopes=scopes)
    document["launch"]["initiate_login_uri"] = f"{tool_base}/login"
    document["launch"]["target_link_uri"] = f"{tool_base}/launch"
    document["launch"]["redirect_uris"] = [f"{tool_base}/launch"]
    quiz = factories.listed_app(database, document)
    installation = factories.install(database, city, quiz, city.school_a1, scopes=" ".join(scopes))
    class_id = factories.add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    for key, name in (("p1", "刘小明"), ("p2", "陈小雨"), ("p3", "王一一")):
        factories.add_pupil(city, key, name, city.school_a1, class_id)
    lti_tool.register(
        issuer=platform.settings.platform_base_url, platform=platform.base, client_id=quiz.client_id,
        deployment_id=installation,
    )  # fmt: skip

    # The teacher clicks the app in the portal (through the gateway, with their token).
    started = await platform.client.post(
        "/launches", json={"installation_id": installation, "class_id": class_id},
        headers=city.token("a1_teacher", "apps.read"),
    )  # fmt: skip
    assert started.status_code == 201, started.text

    async with httpx.AsyncClient(timeout=30) as browser:
        login = await browser.get(started.json()["url"])  # the tool's OIDC login initiation
        assert login.status_code == 302, login.text
        authorize_url = login.headers["location"]
        assert authorize_url.startswith(f"{platform.base}{PREFIX}/lti/authorize?")
        action, fields = form_fields(await browser.get(authorize_url))  # our auto-posting form
        assert action == f"{tool_base}/launch" and "id_token" in fields
        result = await browser.post(action, data=fields)

        assert result.status_code == 200, result.text
        body = result.json()
        salt = platform.settings.pairwise_salt.get_secret_value()
        assert body["sub"] == user_pseudonym(salt, quiz.id, city.people["a1_teacher"].id)
        assert body["is_teacher"] is True and body["deployment_id"] == installation
        assert body["context"]["id"] == class_id and body["context"]["label"] == "五年级2班"
        assert body["pages"] == 2  # four members, two a page, followed through the Link header
        names = {member["name"]: member["roles"] for member in body["members"]}
        assert names == {"王老师": [INSTRUCTOR], "刘小明": [LEARNER], "陈小雨": [LEARNER], "王一一": [LEARNER]}
        assert {member["user_id"] for member in body["all_members"]} == {
            member["user_id"] for member in body["members"]
        }

        # The tool's login initiation sent the same hints again (a replay): refused, at the tool.
        replay = await browser.get(authorize_url.replace("nonce=", "nonce=x"))
        _, refused = form_fields(replay)
        assert refused["error"] == "invalid_request" and "already used" in refused["error_description"]
