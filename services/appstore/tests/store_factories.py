"""Factories for the app store's vendor, app, review and catalog tests (and anyone who needs a listed app).

Each works through the real HTTP API with real tokens of the test city, so what they build is what users build:
``register_vendor`` → ``create_app`` → ``attach_pdf`` → ``submit`` → ``approve``; ``publish_app`` does it all.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from dataclasses import dataclass
from typing import Any

import httpx
import nats
from nats.errors import TimeoutError as NatsTimeoutError
from sqlmodel import col, select

from appstore.installations.models import Installation
from kit.db import Database
from kit.identifiers import credit_code_check_character
from kit.outbox import OutboxEvent
from kit.testing import TestCity

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ALL_TRUE = {
    "filings_valid": True,
    "privacy_purposes_adequate": True,
    "content_appropriate": True,
    "security_assessment_attached": True,
}
_SERIAL = itertools.count(1)


def credit_code(serial: int | None = None) -> str:
    """A valid unified social credit code (an enterprise registered in Xiamen), different for each serial."""
    number = next(_SERIAL) if serial is None else serial
    first17 = f"91350200MA{number:07d}"
    return first17 + credit_code_check_character(first17)


def vendor_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "厦门启明教育科技有限公司",
        "unified_social_credit_code": credit_code(),
        "contact_name": "陈经理",
        "contact_email": "contact@qiming.example.cn",
        "contact_phone": "13800138000",
        "icp_filing": "闽ICP备12345678号-1",
        "education_app_filing": "教APP备3502001号",
    }
    fields.update(overrides)
    return fields


def manifest(**overrides: Any) -> dict[str, Any]:
    """A valid manifest document (OIDC launch; openid + roster.read); top-level keys can be overridden."""
    document: dict[str, Any] = {
        "manifest_version": 1,
        "version": "1.0.0",
        "name": {"zh-CN": "口算小达人", "en": "Mental Maths Star"},
        "summary": {"zh-CN": "小学口算分层练习与错题本"},
        "description": {"zh-CN": "根据学生水平自动生成口算练习，记录错题并推送给任课教师，支持课堂限时挑战。"},
        "category": "homework",
        "grade_bands": ["primary_lower", "primary_upper"],
        "subjects": ["mathematics"],
        "launch": {
            "type": "oidc",
            "initiate_login_uri": "https://app.qiming.example.cn/login",
            "redirect_uris": ["https://app.qiming.example.cn/callback"],
        },
        "scopes": [
            {"scope": "openid", "purpose": {"zh-CN": "识别登录的教师和学生身份"}},
            {"scope": "roster.read", "purpose": {"zh-CN": "按班级布置口算练习，需要读取班级和任课教师"}},
        ],
        "data_retention_days": 30,
        "pricing": {"unit": "launch", "unit_price_fen": 5, "monthly_cap_fen_per_school": 50_000},
        "privacy_policy_url": "https://app.qiming.example.cn/privacy",
        "support": {"email": "support@qiming.example.cn"},
    }
    document.update(copy.deepcopy(overrides))
    return document


def scope_request(scope: str, purpose: str) -> dict[str, Any]:
    return {"scope": scope, "purpose": {"zh-CN": purpose}}


@dataclass
class StoreApp:
    vendor_id: str
    app_id: str
    version_id: str
    client_id: str


def _ok(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


async def register_vendor(client: httpx.AsyncClient, city: TestCity, *, developer: str = "developer",
                          **fields: Any) -> str:  # fmt: skip
    """A registered vendor owned by ``developer``; its id."""
    response = await client.post("/vendors", json=vendor_fields(**fields), headers=city.token(developer))
    return str(_ok(response, 201)["id"])


async def create_app(
    client: httpx.AsyncClient, city: TestCity, vendor_id: str, document: dict[str, Any] | None = None, *,
    developer: str = "developer",
) -> StoreApp:  # fmt: skip
    response = await client.post(f"/vendors/{vendor_id}/apps", json=document or manifest(),
                                 headers=city.token(developer))  # fmt: skip
    body = _ok(response, 201)
    return StoreApp(vendor_id=vendor_id, app_id=body["id"], version_id=body["versions"][-1]["id"],
                    client_id=body["client_id"])  # fmt: skip


async def add_version(
    client: httpx.AsyncClient, city: TestCity, app: StoreApp, document: dict[str, Any], *, developer: str = "developer"
) -> str:
    response = await client.post(f"/apps/{app.app_id}/versions", json=document, headers=city.token(developer))
    return str(_ok(response, 201)["id"])


async def attach_pdf(
    client: httpx.AsyncClient, city: TestCity, app_id: str, version_id: str, *, developer: str = "developer",
    content: bytes = PDF,
) -> httpx.Response:  # fmt: skip
    return await client.put(
        f"/apps/{app_id}/versions/{version_id}/security-assessment",
        files={"file": ("安全自评估报告.pdf", content, "application/pdf")},
        headers=city.token(developer),
    )


async def submit(
    client: httpx.AsyncClient, city: TestCity, app_id: str, version_id: str, *, developer: str = "developer"
) -> dict[str, Any]:
    """Attach the self-assessment and submit the version for review."""
    _ok(await attach_pdf(client, city, app_id, version_id, developer=developer), 200)
    response = await client.post(f"/apps/{app_id}/versions/{version_id}/submit", headers=city.token(developer))
    return _ok(response, 200)


async def submit_app(
    client: httpx.AsyncClient, city: TestCity, document: dict[str, Any] | None = None, *,
    vendor_id: str | None = None, developer: str = "developer",
) -> StoreApp:  # fmt: skip
    """A new app whose first version awaits review."""
    vendor_id = vendor_id or await register_vendor(client, city, developer=developer)
    app = await create_app(client, city, vendor_id, document, developer=developer)
    await submit(client, city, app.app_id, app.version_id, developer=developer)
    return app


async def decide(
    client: httpx.AsyncClient, city: TestCity, version_id: str, decision: str = "approved", *,
    reasons: list[str] | None = None, checklist: dict[str, bool] | None = None, reviewer: str = "city_admin",
) -> httpx.Response:  # fmt: skip
    return await client.post(
        f"/review/versions/{version_id}/decisions",
        json={"decision": decision, "checklist": checklist or ALL_TRUE, "reasons": reasons or []},
        headers=city.token(reviewer),
    )


async def approve(client: httpx.AsyncClient, city: TestCity, version_id: str) -> dict[str, Any]:
    """The city approves the version: it is published."""
    return _ok(await decide(client, city, version_id), 201)


async def publish_app(
    client: httpx.AsyncClient, city: TestCity, document: dict[str, Any] | None = None, *,
    vendor_id: str | None = None, developer: str = "developer",
) -> StoreApp:  # fmt: skip
    """A listed app: registered, submitted, approved and published."""
    app = await submit_app(client, city, document, vendor_id=vendor_id, developer=developer)
    await approve(client, city, app.version_id)
    return app


async def publish_version(
    client: httpx.AsyncClient, city: TestCity, app: StoreApp, document: dict[str, Any], *,
    developer: str = "developer",
) -> str:  # fmt: skip
    """A new version of a listed app, submitted and approved; its id."""
    version_id = await add_version(client, city, app, document, developer=developer)
    await submit(client, city, app.app_id, version_id, developer=developer)
    await approve(client, city, version_id)
    return version_id


def install_at(database: Database, *, app: StoreApp, school_id: str, school_path: str, by: str) -> str:
    """An active installation row, as the installations part of the store writes it (for catalog and status tests
    that need a school using the app without running identity)."""
    with database.session() as session:
        installation = Installation(
            app_id=app.app_id, school_id=school_id, school_path=school_path, client_id=app.client_id,
            version_id=app.version_id, scopes="openid roster.read", installed_by=by,
        )  # fmt: skip
        session.add(installation)
        session.flush()
        return installation.id


def outbox_events(database: Database, event_type: str) -> list[dict[str, Any]]:
    """The data of every event of ``event_type`` the service wrote to its outbox, in order."""
    with database.read_session() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == event_type).order_by(col(OutboxEvent.id))
        ).all()
        return [json.loads(row.envelope)["data"] for row in rows]


async def nats_events(url: str, subject: str, *, expected: int, seconds: float = 10.0) -> list[dict[str, Any]]:
    """CloudEvents published on EDU_APPSTORE under ``subject`` (read through an ephemeral consumer)."""
    connection = await nats.connect(url)
    try:
        subscription = await connection.jetstream().pull_subscribe(subject, stream="EDU_APPSTORE")
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            try:
                messages = await subscription.fetch(expected - len(found), timeout=1)
            except NatsTimeoutError:
                continue
            for message in messages:
                await message.ack()
                found.append(json.loads(message.data))
        return found
    finally:
        await connection.close()


def problem_fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json().get("errors", [])]
