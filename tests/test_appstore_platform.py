"""End to end through the gateway: a vendor submits an app, the city approves it, a school installs it, the app's
own token reaches that school's roster (and no other), a teacher launches it and signs in to it with OpenID
Connect, and the school uninstalls it.

Real identity provider, enrollment, app store, gateway and nats-server. Installation events travel from the app
store over NATS to the gateway (which admits the app) and to identity (which revokes the app's tokens on uninstall);
identity's directory travels to the app store and enrollment. People's tokens are issued by identity's own signing
keys; the teacher's sign-in to the app is the real authorization-code flow with identity's login and consent pages.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from appstore.config import AppStoreSettings
from appstore.main import create_app as create_app_store
from appstore.main import migrate as migrate_app_store
from appstore.testing import school_ids
from enrollment.config import EnrollmentSettings
from enrollment.main import create_app as create_enrollment
from enrollment.main import migrate as migrate_enrollment
from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.config import IdentitySettings
from identity.demo import load as load_demo
from identity.main import create_app as create_identity
from identity.oauth.clients import ensure_platform_client
from identity.testing import Visitor, access_token_for, give_login, person_named, settings
from kit.db import Database
from kit.identifiers import credit_code_check_character
from kit.natsserver import NatsServer
from kit.testing import free_port, live_server, wait_until

__all__ = ["settings"]

ISSUER = "http://identity.test"
APP_STORE_SECRET = "platform-client-secret-for-the-app-store-test"
ONEROSTER = "/api/enrollment/ims/oneroster/rostering/v1p2"
SCHOOL = "厦门市思明区滨海实验小学"
OTHER_SCHOOL = "厦门市湖里区金山小学"
VENDOR_SITE = "https://homework.vendor.example"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


@dataclass
class Platform:
    gateway: str
    identity_app: Any
    identity_settings: IdentitySettings
    app_store_database: Database


@pytest.fixture
def platform(settings: IdentitySettings, nats_server: NatsServer, tmp_path: Path) -> Iterator[Platform]:
    identity_app = create_identity(settings)
    with live_server(identity_app) as identity_url:
        jwks = f"{identity_url}/.well-known/jwks.json"
        common: dict[str, Any] = {
            "environment": "test", "nats_url": nats_server.url, "token_issuer": ISSUER, "jwks_url": jwks,
            "log_json": False,
        }  # fmt: skip
        enrollment_settings = EnrollmentSettings(database_url=f"sqlite:///{tmp_path / 'enrollment.db'}", **common)
        migrate_enrollment(enrollment_settings)
        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        store_settings = AppStoreSettings(
            database_url=f"sqlite:///{tmp_path / 'appstore.db'}", platform_base_url=gateway_url,
            identity_internal_url=identity_url, identity_client_secret=SecretStr(APP_STORE_SECRET),
            pairwise_salt=settings.pairwise_salt, **common,
        )  # fmt: skip
        migrate_app_store(store_settings)
        with identity_app.state.database.session() as session:
            ensure_platform_client(session, client_id="appstore", scope="clients.manage", secret=APP_STORE_SECRET)
        store_app = create_app_store(store_settings)
        with live_server(create_enrollment(enrollment_settings)) as enrollment_url, live_server(store_app) as store_url:
            gateway_settings = GatewaySettings(
                database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
                upstreams={"identity": identity_url, "enrollment": enrollment_url, "appstore": store_url},
                usage_spool_dir=tmp_path / "spool", installation_refresh_seconds=3600, **common,
            )  # fmt: skip
            migrate_gateway(gateway_settings)
            with live_server(create_gateway(gateway_settings), port=gateway_port):
                yield Platform(gateway_url, identity_app, settings, store_app.state.database)


def _bearer(platform: Platform, username: str, scopes: str) -> dict[str, str]:
    """A token identity signs for the person, with their roles, as the platform's portal would hold."""
    person = person_named(platform.identity_app, username)
    token = access_token_for(platform.identity_app, platform.identity_settings, person, scopes=scopes.split(),
                             client_id="platform-portal")  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _manifest() -> dict[str, Any]:
    return {
        "manifest_version": 1,
        "version": "1.0.0",
        "name": {"zh-CN": "作业小助手", "en": "Homework Helper"},
        "summary": {"zh-CN": "布置、批改和讲评作业"},
        "description": {"zh-CN": "教师按班级布置分层作业，学生在线提交，系统辅助批改并生成学情报告。"},
        "category": "homework",
        "grade_bands": ["primary_lower", "primary_upper"],
        "subjects": ["mathematics"],
        "launch": {
            "type": "oidc",
            "initiate_login_uri": f"{VENDOR_SITE}/login",
            "redirect_uris": [f"{VENDOR_SITE}/callback"],
        },
        "scopes": [
            {"scope": "openid", "purpose": {"zh-CN": "识别登录的教师和学生及其学校"}},
            {"scope": "roster.read", "purpose": {"zh-CN": "按班级布置作业，需要读取班级和任课教师"}},
        ],
        "data_retention_days": 30,
        "pricing": {"unit": "launch", "unit_price_fen": 20, "monthly_cap_fen_per_school": 50_000},
        "privacy_policy_url": f"{VENDOR_SITE}/privacy",
        "support": {"email": "support@homework.vendor.example"},
    }


def _id_token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def test_from_submission_to_launch_and_uninstall_through_the_gateway(platform: Platform) -> None:
    with platform.identity_app.state.database.session() as session:
        load_demo(session, platform.identity_app.state.cipher)
    schools = wait_until(lambda: (ids := school_ids(platform.app_store_database)) and len(ids) == 4 and ids, "schools")
    school, other_school = schools[SCHOOL], schools[OTHER_SCHOOL]
    api = f"{platform.gateway}/api/appstore"
    developer = _bearer(platform, "vendor.dev", "apps.develop")
    reviewer = _bearer(platform, "city.admin", "apps.review apps.read")
    school_admin = _bearer(platform, "d1s1.admin", "apps.install apps.read")

    # The vendor registers and submits its app with the security self-assessment.
    vendor = httpx.post(f"{api}/vendors", headers=developer, json={
        "name": "厦门题海教育科技有限公司",
        "unified_social_credit_code": "91350200MA2Y7K3Q8" + credit_code_check_character("91350200MA2Y7K3Q8"),
        "contact_name": "林思远", "contact_email": "dev@homework.vendor.example", "contact_phone": "0592-5550123",
        "icp_filing": "闽ICP备20261125号", "education_app_filing": "教APP备3502001号",
    })  # fmt: skip
    assert vendor.status_code == 201, vendor.text
    created = httpx.post(f"{api}/vendors/{vendor.json()['id']}/apps", headers=developer, json=_manifest())
    assert created.status_code == 201, created.text
    app_id, version_id = created.json()["id"], created.json()["versions"][0]["id"]
    attached = httpx.put(
        f"{api}/apps/{app_id}/versions/{version_id}/security-assessment", headers=developer,
        files={"file": ("安全自评估报告.pdf", PDF, "application/pdf")},
    )  # fmt: skip
    assert attached.status_code in (200, 201), attached.text
    submitted = httpx.post(f"{api}/apps/{app_id}/versions/{version_id}/submit", headers=developer)
    assert submitted.status_code == 200, submitted.text

    # The city reviews it from its queue and approves: it is listed in the catalog.
    queue = httpx.get(f"{api}/review/queue", headers=reviewer)
    assert queue.status_code == 200, queue.text
    assert version_id in json.dumps(queue.json())
    decided = httpx.post(f"{api}/review/versions/{version_id}/decisions", headers=reviewer, json={
        "decision": "approved", "reasons": ["材料齐全"],
        "checklist": {"filings_valid": True, "privacy_purposes_adequate": True, "content_appropriate": True,
                      "security_assessment_attached": True},
    })  # fmt: skip
    assert decided.status_code in (200, 201), decided.text
    found = httpx.get(f"{api}/catalog/apps", headers=school_admin, params={"q": "作业"})
    assert found.status_code == 200, found.text
    assert app_id in json.dumps(found.json())

    # The vendor's back end gets its credentials; before any school installs the app it reaches no roster.
    credentials = httpx.post(f"{api}/apps/{app_id}/credentials", headers=developer)
    assert credentials.status_code in (200, 201), credentials.text
    client_id, client_secret = credentials.json()["client_id"], credentials.json()["client_secret"]

    def app_token() -> dict[str, str]:
        issued = httpx.post(
            f"{platform.gateway}/oauth/token", data={"grant_type": "client_credentials", "scope": "roster.read"},
            auth=(client_id, client_secret),
        )  # fmt: skip
        assert issued.status_code == 200, issued.text
        return {"Authorization": f"Bearer {issued.json()['access_token']}"}

    app_bearer = app_token()
    refused = httpx.get(f"{platform.gateway}{ONEROSTER}/schools/{school}/classes", headers=app_bearer)
    assert refused.status_code == 403, refused.text

    # A school administrator of another school cannot install it for this one.
    elsewhere = httpx.post(
        f"{api}/schools/{school}/installations", headers=_bearer(platform, "d2s1.admin", "apps.install apps.read"),
        json={"app_id": app_id},
    )  # fmt: skip
    assert elsewhere.status_code == 403, elsewhere.text
    installed = httpx.post(f"{api}/schools/{school}/installations", headers=school_admin, json={"app_id": app_id})
    assert installed.status_code == 201, installed.text
    installation_id = installed.json()["id"]

    # The installation reaches the gateway over NATS: the app now reads this school's classes, and only its.
    wait_until(
        lambda: (
            httpx.get(f"{platform.gateway}{ONEROSTER}/schools/{school}/classes", headers=app_bearer).status_code == 200
        ),
        "the gateway to admit the installed app",
    )
    other = httpx.get(f"{platform.gateway}{ONEROSTER}/schools/{other_school}/classes", headers=app_bearer)
    assert other.status_code == 403, other.text

    # A teacher of the school launches it and signs in to it with OpenID Connect.
    teacher = person_named(platform.identity_app, "d1s1.teacher1")
    give_login(platform.identity_app, teacher, "d1s1.teacher1", "Xiamen-Teacher-2026!")
    launch = httpx.post(
        f"{api}/launches", headers=_bearer(platform, "d1s1.teacher1", "apps.read"),
        json={"installation_id": installation_id},
    )  # fmt: skip
    assert launch.status_code in (200, 201), launch.text
    login_initiation = urlsplit(launch.json()["url"])
    assert f"{login_initiation.scheme}://{login_initiation.netloc}{login_initiation.path}" == f"{VENDOR_SITE}/login"
    initiation = {key: values[0] for key, values in parse_qs(login_initiation.query).items()}
    assert initiation["iss"] == ISSUER
    claims = asyncio.run(_sign_in_to_the_app(platform, client_id, client_secret, initiation.get("login_hint")))
    assert claims["school_id"] == school
    assert "teacher" in claims["roles"]
    assert claims["sub"] != teacher.id  # a pairwise pseudonym, never the platform's person id

    # The school uninstalls it: the gateway refuses the app again, and identity revokes the app's tokens there.
    removed = httpx.delete(f"{api}/schools/{school}/installations/{installation_id}", headers=school_admin)
    assert removed.status_code in (200, 204), removed.text
    wait_until(
        lambda: (
            httpx.get(f"{platform.gateway}{ONEROSTER}/schools/{school}/classes", headers=app_bearer).status_code == 403
        ),
        "the gateway to refuse the uninstalled app",
    )


async def _sign_in_to_the_app(platform: Platform, client_id: str, client_secret: str, login_hint: str | None) -> Any:
    """The app's side of the launch: an authorization-code request at identity, the teacher signs in and consents,
    and the app exchanges the code for the ID token."""
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": f"{VENDOR_SITE}/callback",
        "scope": "openid roster.read", "state": "launch-state", "nonce": "launch-nonce",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
    }  # fmt: skip
    if login_hint:
        query["login_hint"] = login_hint
    async with Visitor(platform.identity_app) as browser:
        page = await browser.sign_in(f"/oauth/authorize?{urlencode(query)}", "d1s1.teacher1", "Xiamen-Teacher-2026!")
        assert "“作业小助手”请求使用您的账号" in page.text  # the consent screen names what the app gets
        assert "所在学校" in page.text
        page = await browser.submit(page, "/oauth/authorize", decision="approve")
        assert page.is_redirect, page.text[:2000]
        callback = urlsplit(page.headers["location"])
        code = parse_qs(callback.query)["code"][0]
        exchanged = await browser.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": f"{VENDOR_SITE}/callback",
                "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            },
            auth=(client_id, client_secret),
        )  # fmt: skip
        assert exchanged.status_code == 200, exchanged.text
        return _id_token_claims(exchanged.json()["id_token"])
