"""End to end through the gateway: a school installs an app, a teacher launches it and metering counts the launch;
the app reports units of that launch with its own client-credentials token and they are accepted, once; a school
administrator of another school cannot read the school's usage.

Real identity provider, app store, metering, gateway and nats-server. The app store's facts (the app's price plan,
the installation, the launch) travel over NATS to metering, identity's directory to the app store and metering.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from appstore.config import AppStoreSettings
from appstore.main import create_app as create_app_store
from appstore.main import migrate as migrate_app_store
from appstore.testing import school_ids
from contracts.api.metering import CLOUDEVENTS_BATCH_MEDIA_TYPE, USAGE_REPORT_EVENT_TYPE
from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.config import IdentitySettings
from identity.demo import load as load_demo
from identity.main import create_app as create_identity
from identity.oauth.clients import ensure_platform_client
from identity.testing import access_token_for, person_named, settings
from kit.db import Database
from kit.identifiers import credit_code_check_character
from kit.natsserver import NatsServer
from kit.testing import free_port, live_server, wait_until
from metering import periods
from metering.config import MeteringSettings
from metering.main import create_app as create_metering
from metering.main import migrate as migrate_metering

__all__ = ["settings"]

ISSUER = "http://identity.test"
APP_STORE_SECRET = "platform-client-secret-for-the-metering-test"
SCHOOL = "厦门市思明区滨海实验小学"
OTHER_SCHOOL = "厦门市湖里区金山小学"
VENDOR_SITE = "https://marking.vendor.example"
UNIT_NAME = "一份批改的作业"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


@dataclass
class Platform:
    gateway: str
    identity_app: Any
    identity_settings: IdentitySettings
    app_store_database: Database
    metering_database: Database


@pytest.fixture
def platform(settings: IdentitySettings, nats_server: NatsServer, tmp_path: Path) -> Iterator[Platform]:
    identity_app = create_identity(settings)
    with live_server(identity_app) as identity_url:
        common: dict[str, Any] = {
            "environment": "test", "nats_url": nats_server.url, "token_issuer": ISSUER,
            "jwks_url": f"{identity_url}/.well-known/jwks.json", "log_json": False,
        }  # fmt: skip
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
        metering_settings = MeteringSettings(database_url=f"sqlite:///{tmp_path / 'metering.db'}", **common)
        migrate_metering(metering_settings)
        store_app, metering_app = create_app_store(store_settings), create_metering(metering_settings)
        with live_server(store_app) as store_url, live_server(metering_app) as metering_url:
            gateway_settings = GatewaySettings(
                database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
                upstreams={"identity": identity_url, "appstore": store_url, "metering": metering_url},
                usage_spool_dir=tmp_path / "spool", installation_refresh_seconds=3600, **common,
            )  # fmt: skip
            migrate_gateway(gateway_settings)
            with live_server(create_gateway(gateway_settings), port=gateway_port):
                yield Platform(
                    gateway_url, identity_app, settings, store_app.state.database, metering_app.state.database
                )


def _bearer(platform: Platform, username: str, scopes: str) -> dict[str, str]:
    """A token identity signs for the person, with their roles, as the platform's portal would hold."""
    person = person_named(platform.identity_app, username)
    token = access_token_for(platform.identity_app, platform.identity_settings, person, scopes=scopes.split(),
                             client_id="platform-portal")  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _manifest() -> dict[str, Any]:
    """An app priced per unit it reports itself (homework marked), that may report usage."""
    return {
        "manifest_version": 1,
        "version": "1.0.0",
        "name": {"zh-CN": "作文批改助手", "en": "Essay Marking Helper"},
        "summary": {"zh-CN": "作文在线批改与讲评"},
        "description": {"zh-CN": "学生在线提交作文，系统辅助教师批改并生成讲评报告，按批改份数结算。"},
        "category": "homework",
        "grade_bands": ["primary_upper"],
        "subjects": ["chinese"],
        "launch": {
            "type": "oidc",
            "initiate_login_uri": f"{VENDOR_SITE}/login",
            "redirect_uris": [f"{VENDOR_SITE}/callback"],
        },
        "scopes": [
            {"scope": "openid", "purpose": {"zh-CN": "识别登录的教师和学生及其学校"}},
            {"scope": "metering.report", "purpose": {"zh-CN": "上报批改作文的份数用于按量结算，不含个人信息"}},
        ],
        "data_retention_days": 30,
        "pricing": {
            "unit": "reported_unit",
            "unit_price_fen": 20,
            "monthly_cap_fen_per_school": 50_000,
            "reported_unit_name": {"zh-CN": UNIT_NAME, "en": "one homework marked"},
        },
        "privacy_policy_url": f"{VENDOR_SITE}/privacy",
        "support": {"email": "support@marking.vendor.example"},
    }


def _published_and_installed(platform: Platform, school: str) -> tuple[str, str, str, str]:
    """The vendor registers and submits the app, the city approves it, the school installs it; returns the app id,
    the installation id and the app's client credentials."""
    api = f"{platform.gateway}/api/appstore"
    developer = _bearer(platform, "vendor.dev", "apps.develop")
    reviewer = _bearer(platform, "city.admin", "apps.review apps.read")
    vendor = httpx.post(f"{api}/vendors", headers=developer, json={
        "name": "厦门妙笔教育科技有限公司",
        "unified_social_credit_code": "91350200MA2Y8K3Q8" + credit_code_check_character("91350200MA2Y8K3Q8"),
        "contact_name": "陈思齐", "contact_email": "dev@marking.vendor.example", "contact_phone": "0592-5550177",
        "icp_filing": "闽ICP备20261126号", "education_app_filing": "教APP备3502002号",
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
    decided = httpx.post(f"{api}/review/versions/{version_id}/decisions", headers=reviewer, json={
        "decision": "approved", "reasons": ["材料齐全"],
        "checklist": {"filings_valid": True, "privacy_purposes_adequate": True, "content_appropriate": True,
                      "security_assessment_attached": True},
    })  # fmt: skip
    assert decided.status_code in (200, 201), decided.text
    credentials = httpx.post(f"{api}/apps/{app_id}/credentials", headers=developer)
    assert credentials.status_code in (200, 201), credentials.text
    installed = httpx.post(
        f"{api}/schools/{school}/installations", headers=_bearer(platform, "d1s1.admin", "apps.install apps.read"),
        json={"app_id": app_id},
    )  # fmt: skip
    assert installed.status_code == 201, installed.text
    return app_id, installed.json()["id"], credentials.json()["client_id"], credentials.json()["client_secret"]


def _launches_counted(platform: Platform, reader: dict[str, str], app_id: str) -> int:
    answer = httpx.get(
        f"{platform.gateway}/api/metering/usage", headers=reader,
        params={"app_id": app_id, "meter": "launch", "granularity": "month"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    quantity: int = answer.json()["totals"]["quantity"]
    return quantity


def test_launches_and_reported_units_are_counted_once_through_the_gateway(platform: Platform) -> None:
    with platform.identity_app.state.database.session() as session:
        load_demo(session, platform.identity_app.state.cipher)
    schools = wait_until(lambda: (ids := school_ids(platform.app_store_database)) and len(ids) == 4 and ids, "schools")
    school, other_school = schools[SCHOOL], schools[OTHER_SCHOOL]
    app_id, installation_id, client_id, client_secret = _published_and_installed(platform, school)
    city_reader = _bearer(platform, "city.admin", "metering.read")

    # (a) A teacher launches the app: metering counts the launch, the city reads it through the gateway.
    launch = httpx.post(
        f"{platform.gateway}/api/appstore/launches", headers=_bearer(platform, "d1s1.teacher1", "apps.read"),
        json={"installation_id": installation_id},
    )  # fmt: skip
    assert launch.status_code in (200, 201), launch.text
    launch_id = parse_qs(urlsplit(launch.json()["url"]).query)["login_hint"][0]
    wait_until(lambda: _launches_counted(platform, city_reader, app_id) == 1, "metering to count the launch")

    # (b) The app reports units of that launch with its own client-credentials token: accepted, then a duplicate.
    issued = httpx.post(
        f"{platform.gateway}/oauth/token", data={"grant_type": "client_credentials", "scope": "metering.report"},
        auth=(client_id, client_secret),
    )  # fmt: skip
    assert issued.status_code == 200, issued.text
    app_bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    batch = [{
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/apps/{client_id}", "type": USAGE_REPORT_EVENT_TYPE,
        "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
        "data": {"school_id": school, "quantity": 3, "unit": UNIT_NAME, "launch_id": launch_id},
    }]  # fmt: skip
    reports = f"{platform.gateway}/api/metering/usage-reports"
    headers = {**app_bearer, "Content-Type": CLOUDEVENTS_BATCH_MEDIA_TYPE}
    first = httpx.post(reports, headers=headers, json=batch)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1, first.text
    [result] = first.json()["results"]
    assert result["outcome"] == "accepted" and result["id"] == batch[0]["id"]
    assert result["usage_period"] == periods.period_of(datetime.now(UTC))
    again = httpx.post(reports, headers=headers, json=batch)
    assert again.status_code == 200, again.text
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1), again.text
    assert again.json()["results"][0]["outcome"] == "duplicate"

    reported = httpx.get(
        f"{platform.gateway}/api/metering/usage", headers=city_reader,
        params={"app_id": app_id, "meter": "reported_unit", "granularity": "month"},
    )  # fmt: skip
    assert reported.status_code == 200, reported.text
    assert reported.json()["totals"]["quantity"] == 3  # counted once
    assert reported.json()["totals"]["amount_fen"] == 3 * 20

    # A person's token cannot report usage, even with the scope.
    personal = httpx.post(reports, headers={**city_reader, "Content-Type": CLOUDEVENTS_BATCH_MEDIA_TYPE}, json=batch)
    assert personal.status_code in (401, 403), personal.text

    # (c) The school's administrator reads its usage; another school's administrator may not.
    own = httpx.get(
        f"{platform.gateway}/api/metering/schools/{school}/usage",
        headers=_bearer(platform, "d1s1.admin", "metering.read"), params={"meter": "reported_unit"},
    )  # fmt: skip
    assert own.status_code == 200, own.text
    assert own.json()["totals"]["quantity"] == 3
    elsewhere = httpx.get(
        f"{platform.gateway}/api/metering/schools/{school}/usage",
        headers=_bearer(platform, "d2s1.admin", "metering.read"),
    )  # fmt: skip
    assert elsewhere.status_code == 403, elsewhere.text
    assert other_school != school
