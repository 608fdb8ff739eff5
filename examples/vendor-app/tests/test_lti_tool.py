"""The sample app as an LTI 1.3 tool on PyLTI1p3: the login initiation redirect it builds, the launch it
validates (signature, nonce, deployment, message), a replayed id_token refused, and the class roster read
through Names and Role Provisioning with a signed client assertion.

The app store's LTI platform endpoints are built in parallel; here the test plays the platform with a real
HTTP server (its JWKS, token and memberships endpoints), as the IMS certification suite does for tools.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Header, HTTPException
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from kit.testing import live_server
from vendor_app.config import Settings

from .conftest import PLATFORM, VENDOR, vendor_client

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


@dataclass
class PlatformDouble:
    url: str
    key: RSAKey
    tool_jwks: dict[str, Any] = field(default_factory=dict)  # what the platform fetched from the tool's jwks_url
    assertions: list[dict[str, Any]] = field(default_factory=list)

    def id_token(self, nonce: str, *, deployment_id: str = "inst-1", with_nrps: bool = False, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": PLATFORM, "aud": "app-homework-helper", "sub": "pw-teacher-7f3a", "iat": now, "exp": now + 300,
            "nonce": nonce, CLAIM + "message_type": "LtiResourceLinkRequest", CLAIM + "version": "1.3.0",
            CLAIM + "deployment_id": deployment_id, CLAIM + "target_link_uri": f"{VENDOR}/lti/launch",
            CLAIM + "resource_link": {"id": "rl-1", "title": "课后作业"}, CLAIM + "roles": [INSTRUCTOR],
            CLAIM + "context": {"id": "class-3-2", "label": "三年级2班", "title": "滨海实验小学 三年级2班"},
            CLAIM + "custom": {"launch_id": "launch-42", "school_id": "school-1"},
        }  # fmt: skip
        if with_nrps:
            body["https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"] = {
                "context_memberships_url": f"{self.url}/lti/nrps/inst-1/contexts/class-3-2/memberships",
                "service_versions": ["2.0"],
            }
        body.update(claims)
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, body, self.key)


def platform_app(platform: PlatformDouble) -> FastAPI:
    app = FastAPI()

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [platform.key.as_dict(private=False, alg="RS256", use="sig")]}

    @app.post("/token")
    def token(
        grant_type: str = Form(...), client_assertion_type: str = Form(...), client_assertion: str = Form(...),
        scope: str = Form(...),
    ) -> dict[str, Any]:  # fmt: skip
        tool_keys = KeySet.import_key_set(platform.tool_jwks)  # type: ignore[arg-type]
        claims = jwt.decode(client_assertion, tool_keys, algorithms=["RS256"]).claims
        platform.assertions.append(claims)
        assert grant_type == "client_credentials"
        assert client_assertion_type == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        return {"access_token": "nrps-token", "token_type": "Bearer", "expires_in": 300, "scope": scope}

    @app.get("/lti/nrps/{deployment_id}/contexts/{context_id}/memberships")
    def memberships(deployment_id: str, context_id: str, authorization: str = Header("")) -> dict[str, Any]:
        if authorization != "Bearer nrps-token":
            raise HTTPException(401)
        return {
            "id": f"{platform.url}/lti/nrps/{deployment_id}/contexts/{context_id}/memberships",
            "context": {"id": context_id, "label": "三年级2班", "title": "滨海实验小学 三年级2班"},
            "members": [
                {"user_id": "pw-teacher-7f3a", "roles": [INSTRUCTOR], "status": "Active", "name": "林慧敏"},
                {"user_id": "pw-pupil-01c9", "roles": [LEARNER], "status": "Active"},
                {"user_id": "pw-pupil-88d2", "roles": [LEARNER], "status": "Active"},
            ],
        }

    return app


@pytest.fixture
def platform() -> Iterator[PlatformDouble]:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = RSAKey.import_key(pem, {"kid": "platform-key-1"})
    holder = PlatformDouble(url="", key=key)
    with live_server(platform_app(holder)) as url:
        holder.url = url
        yield holder


def tool_settings(settings: Settings, platform: PlatformDouble) -> Settings:
    from dataclasses import replace

    return replace(
        settings, lti_jwks_url=f"{platform.url}/jwks", lti_token_url=f"{platform.url}/token",
        lti_auth_login_url=f"{PLATFORM}/api/appstore/lti/authorize",
    )  # fmt: skip


def login_params(**changes: str) -> dict[str, str]:
    params = {
        "iss": PLATFORM, "login_hint": "hint-abc", "target_link_uri": f"{VENDOR}/lti/launch",
        "lti_message_hint": "msg-xyz", "client_id": "app-homework-helper", "lti_deployment_id": "inst-1",
    }  # fmt: skip
    params.update(changes)
    return params


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def test_login_initiation_redirects_to_the_platform_with_state_and_nonce(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        response = await vendor.get("/lti/login", params=login_params())
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(f"{PLATFORM}/api/appstore/lti/authorize?")
        query = query_of(location)
        assert query["scope"] == "openid"
        assert query["response_type"] == "id_token"
        assert query["response_mode"] == "form_post"
        assert query["prompt"] == "none"
        assert query["client_id"] == "app-homework-helper"
        assert query["redirect_uri"] == f"{VENDOR}/lti/launch"
        assert query["login_hint"] == "hint-abc"
        assert query["lti_message_hint"] == "msg-xyz"
        assert len(query["nonce"]) >= 32
        assert response.cookies.get(f"lti1p3-{query['state']}") == query["state"]


async def test_login_initiation_by_form_post_works_too(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        response = await vendor.post("/lti/login", data=login_params())
        assert response.status_code == 302
        assert query_of(response.headers["location"])["login_hint"] == "hint-abc"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://evil.example"}, "unknown platform"),
        ({"login_hint": ""}, "no login hint"),
        ({"target_link_uri": "https://evil.example/steal"}, "a target outside the tool"),
    ],
)
async def test_bad_login_initiation_is_refused(vendor_settings: Settings, changes: dict[str, str], reason: str) -> None:
    async with vendor_client(vendor_settings) as vendor:
        response = await vendor.get("/lti/login", params=login_params(**changes))
        assert response.status_code == 400, reason
        assert "无法打开应用" in response.text


async def test_the_tool_publishes_the_key_of_its_client_assertions(vendor_settings: Settings) -> None:
    async with vendor_client(vendor_settings) as vendor:
        keys = (await vendor.get("/lti/jwks")).json()["keys"]
        assert len(keys) == 1
        assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["kid"]
        assert "d" not in keys[0]  # never the private part


async def launch(vendor: Any, platform: PlatformDouble, **token_claims: Any) -> tuple[dict[str, str], Any]:
    start = await vendor.get("/lti/login", params=login_params())
    query = query_of(start.headers["location"])
    form = {"id_token": platform.id_token(query["nonce"], **token_claims), "state": query["state"]}
    return form, await vendor.post("/lti/launch", data=form)


async def test_a_valid_launch_shows_the_class_and_counts_usage(vendor_settings: Settings, platform) -> None:
    async with vendor_client(tool_settings(vendor_settings, platform)) as vendor:
        _, response = await launch(vendor, platform)
        assert response.status_code == 303, response.text
        page = await vendor.get(response.headers["location"])
        assert page.status_code == 200
        assert "滨海实验小学 三年级2班" in page.text
        assert "pw-teacher-7f3a" in page.text
        assert "教师" in page.text
        assert "平台未在本次启动中提供班级名单服务" in page.text
        tally = vendor.app.state.context.usage.get("launch-42")
        assert tally is not None and tally.school_id == "school-1" and tally.units == 0

        launch_id = response.headers["location"].rsplit("/", 1)[-1]
        marked = await vendor.post("/usage/mark", data={"launch": "launch-42", "back": launch_id})
        assert marked.status_code == 303
        assert "已批改作业：1 份" in (await vendor.get(marked.headers["location"])).text


async def test_a_replayed_id_token_is_refused(vendor_settings: Settings, platform) -> None:
    async with vendor_client(tool_settings(vendor_settings, platform)) as vendor:
        form, first = await launch(vendor, platform)
        assert first.status_code == 303
        replay = await vendor.post("/lti/launch", data=form)
        assert replay.status_code == 400
        assert "LTI 启动校验未通过" in replay.text


async def test_a_token_signed_by_someone_else_is_refused(vendor_settings: Settings, platform) -> None:
    async with vendor_client(tool_settings(vendor_settings, platform)) as vendor:
        start = await vendor.get("/lti/login", params=login_params())
        query = query_of(start.headers["location"])
        forged_key = RSAKey.generate_key(2048, {"kid": platform.key.kid})
        forger = PlatformDouble(url=platform.url, key=forged_key)
        form = {"id_token": forger.id_token(query["nonce"]), "state": query["state"]}
        response = await vendor.post("/lti/launch", data=form)
        assert response.status_code == 400


async def test_a_launch_without_the_login_state_is_refused(vendor_settings: Settings, platform) -> None:
    async with vendor_client(tool_settings(vendor_settings, platform)) as vendor:
        form = {"id_token": platform.id_token(uuid.uuid4().hex), "state": "state-" + str(uuid.uuid4())}
        response = await vendor.post("/lti/launch", data=form)
        assert response.status_code == 400


async def test_an_unknown_deployment_is_refused_when_deployments_are_configured(
    vendor_settings: Settings, platform
) -> None:
    settings = tool_settings(vendor_settings, platform)
    async with vendor_client(settings, lti_deployment_ids=("inst-9",)) as vendor:
        _, response = await launch(vendor, platform, deployment_id="inst-1")
        assert response.status_code == 400
        assert "deployment" in response.text


async def test_the_roster_is_read_through_nrps_with_a_signed_client_assertion(
    vendor_settings: Settings, platform
) -> None:
    async with vendor_client(tool_settings(vendor_settings, platform)) as vendor:
        platform.tool_jwks = (await vendor.get("/lti/jwks")).json()
        _, response = await launch(vendor, platform, with_nrps=True)
        assert response.status_code == 303
        page = await vendor.get(response.headers["location"])
        assert "班级名单（共 3 人" in page.text, page.text
        assert "pw-pupil-01c9" in page.text and "pw-pupil-88d2" in page.text
        assert "林慧敏" in page.text  # the name is shown only because the platform sent it
        assert page.text.count("<td>学生</td>") == 2
        (assertion,) = platform.assertions
        assert assertion["iss"] == assertion["sub"] == "app-homework-helper"
        assert assertion["aud"] == f"{platform.url}/token"
