"""Factories for webhook tests: vendors, published apps that subscribe to webhooks, installations, real HTTP
receivers (served by uvicorn on a free port), events published through the app store's outbox, and fast retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlmodel import col, select

from appstore.apps.models import App, AppVersion
from appstore.installations.models import Installation
from appstore.vendors.models import Vendor, VendorMember
from appstore.webhooks.config import WebhookSettings
from appstore.webhooks.models import WebhookDelivery
from contracts.envelope import EventEnvelope
from contracts.events import EventPayload
from contracts.events import appstore as appstore_events
from contracts.manifest import WEBHOOK_EVENT_SCOPES, AppManifestV1
from kit.db import Database
from kit.outbox import emit
from kit.testing import TestCity, live_server, publish_events

ALL_EVENTS = list(WEBHOOK_EVENT_SCOPES)
PURPOSES = {
    "openid": "识别登录的教师和学生",
    "roster.read": "按班级布置作业，需要读取班级和任课教师",
    "roster.students.read": "生成班级作业名单，需要读取班级学生",
}


def database_of(app: FastAPI) -> Database:
    database: Database = app.state.database
    return database


def manifest_document(*, webhook_url: str | None, events: list[str], scopes: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "manifest_version": 1,
        "version": "1.0.0",
        "name": {"zh-CN": "班级作业本"},
        "summary": {"zh-CN": "布置和批改作业"},
        "description": {"zh-CN": "教师按班级布置作业，学生在线提交。"},
        "category": "homework",
        "grade_bands": ["primary_upper"],
        "subjects": ["mathematics"],
        "launch": {
            "type": "oidc",
            "initiate_login_uri": "https://vendor.example.cn/login",
            "redirect_uris": ["https://vendor.example.cn/callback"],
        },
        "scopes": [{"scope": scope, "purpose": {"zh-CN": PURPOSES[scope]}} for scope in scopes],
        "data_retention_days": 30,
        "pricing": {"unit": "launch", "unit_price_fen": 10},
        "privacy_policy_url": "https://vendor.example.cn/privacy",
        "support": {"email": "support@vendor.example.cn"},
    }
    if webhook_url is not None:
        document["webhook"] = {"url": webhook_url, "events": events}
    AppManifestV1.model_validate(document)
    return document


def vendor(database: Database, city: TestCity, developer: str) -> str:
    """A vendor with ``developer`` (a key of the city's people) as its owner."""
    vendor_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Vendor(
                id=vendor_id, name=f"厂商{vendor_id[:4]}", unified_social_credit_code=uuid.uuid4().hex[:18].upper(),
                contact_name="张经理", contact_email="contact@vendor.example.cn", contact_phone="13800000000",
                icp_filing="闽ICP备00000000号", education_app_filing="教APP备0000000号",
                created_by=city.people[developer].id,
            )
        )  # fmt: skip
        session.flush()
        session.add(VendorMember(vendor_id=vendor_id, person_id=city.people[developer].id, role="owner"))
    return vendor_id


def published_app(
    database: Database,
    vendor_id: str,
    *,
    webhook_url: str | None,
    events: list[str] | None = None,
    scopes: list[str] | None = None,
) -> str:
    """A listed app whose published manifest subscribes ``webhook_url`` to ``events`` (default: all)."""
    scopes = scopes or ["openid", "roster.read", "roster.students.read"]
    document = manifest_document(webhook_url=webhook_url, events=events or ALL_EVENTS, scopes=scopes)
    app_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(App(id=app_id, vendor_id=vendor_id, client_id=f"app-{uuid.uuid4().hex[:12]}", created_by="seed"))
        session.flush()
        version = AppVersion(
            app_id=app_id, version="1.0.0", manifest=json.dumps(document, ensure_ascii=False), status="published",
            scopes=" ".join(sorted(scopes)), pricing_unit="launch", unit_price_fen=10,
        )  # fmt: skip
        session.add(version)
        session.flush()
        row = session.get(App, app_id)
        assert row is not None
        row.published_version_id = version.id
        row.status = "listed"
        session.add(row)
    return app_id


def installation(
    database: Database,
    city: TestCity,
    app_id: str,
    school_id: str,
    *,
    scopes: list[str] | None = None,
    grades: list[str] | None = None,
    class_ids: list[str] | None = None,
) -> Installation:
    """An active installation (as the installations API records it; no event is emitted)."""
    scopes = scopes or ["openid", "roster.read", "roster.students.read"]
    with database.session() as session:
        app = session.get(App, app_id)
        assert app is not None and app.published_version_id is not None
        row = Installation(
            app_id=app_id, school_id=school_id, school_path=city.paths[school_id], client_id=app.client_id,
            version_id=app.published_version_id, scopes=" ".join(sorted(scopes)), grades=json.dumps(grades or []),
            class_ids=json.dumps(class_ids or []), installed_by=city.people["a1_admin"].id,
        )  # fmt: skip
        session.add(row)
    return row


def granted_event(row: Installation) -> appstore_events.InstallationGrantedV1:
    return appstore_events.InstallationGrantedV1(
        installation_id=row.id, app_id=row.app_id, client_id=row.client_id, school_id=row.school_id,
        scopes=row.scopes.split(), grades=json.loads(row.grades), class_ids=json.loads(row.class_ids),
        version_id=row.version_id, granted_at=datetime.now(UTC),
    )  # fmt: skip


def remove(
    database: Database, row: Installation, *, reason: str = "uninstalled"
) -> appstore_events.InstallationRemovedV1:
    """Uninstall (as the installations API does) and return the event it emits."""
    now = datetime.now(UTC)
    delete_by = date.today() + timedelta(days=30)
    with database.session() as session:
        current = session.get(Installation, row.id)
        assert current is not None
        current.status = "removed"
        current.removed_at = now
        current.removal_reason = reason
        current.delete_data_by = delete_by
        session.add(current)
    return appstore_events.InstallationRemovedV1(
        installation_id=row.id, app_id=row.app_id, client_id=row.client_id, school_id=row.school_id,
        scopes=row.scopes.split(), version_id=row.version_id, reason=reason,
        removed_at=now, delete_data_by=delete_by,
    )  # fmt: skip


def publish(app: FastAPI, *payloads: EventPayload) -> None:
    """Write events to the app store's outbox: its relay publishes them to NATS, its consumers fan them out."""
    with database_of(app).session() as session:
        for payload in payloads:
            emit(session, payload)


def fast_retries(app: FastAPI, **overrides: Any) -> WebhookSettings:
    """Short retry delays and timeouts for tests (the worker reads its settings at every step)."""
    values: dict[str, Any] = {
        "retry_delays": [0.2, 0.4],
        "retry_jitter": 0.0,
        "timeout_seconds": 1.0,
        "poll_seconds": 0.1,
        "lease_seconds": 5.0,
    }
    values.update(overrides)
    settings = WebhookSettings(**values)
    app.state.webhook_settings = settings
    app.state.webhook_worker.settings = settings
    return settings


def deliveries(database: Database, app_id: str) -> list[WebhookDelivery]:
    with database.session() as session:  # commits without expiring the rows (a read session's rollback would)
        return list(
            session.exec(
                select(WebhookDelivery).where(WebhookDelivery.app_id == app_id).order_by(col(WebhookDelivery.sequence))
            ).all()
        )


async def eventually(check: Callable[[], Any] | Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------- receivers


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """A vendor's webhook endpoint: answers ``status``, or (``hang``) holds every request until released."""

    status: int = 200
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        self.received.append(Received(headers=headers, body=body, at=time.monotonic()))
        # Released from the test's thread (a threading.Event): poll it rather than park an executor thread per request.
        while self.hang and not self._released.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await send(
            {"type": "http.response.start", "status": self.status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    """Serve the receiver on a free loopback port; its ``url`` is the webhook URL."""
    with live_server(receiver) as base_url:
        receiver.url = f"{base_url}/webhooks"
        try:
            yield receiver
        finally:
            receiver.release()  # a held request would keep the server from shutting down


async def publish_enrollment(nats_url: str, *payloads: EventPayload, repeat: int = 1) -> list[EventEnvelope]:
    """Publish enrollment events on its stream as its outbox relay does (``repeat``: see ``publish_events``)."""
    return await publish_events(nats_url, *payloads, repeat=repeat)
