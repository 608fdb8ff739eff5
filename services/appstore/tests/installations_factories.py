"""Factories for installation, app-request and credential tests: vendors, listed apps, classes, pupils, events."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from fastapi import FastAPI
from nats.errors import TimeoutError as NatsTimeoutError
from sqlmodel import select

from appstore.apps.models import App, AppVersion
from appstore.config import AppStoreSettings
from appstore.roster.models import RosterClass, RosterMembership
from appstore.testing_identity import IdentityServer, identity_server
from appstore.vendors.models import Vendor, VendorMember
from contracts.manifest import AppManifestV1
from kit.db import Database
from kit.outbox import utcnow
from kit.testing import TestCity

__all__ = ["identity_server", "settings"]

DEFAULT_SCOPES: dict[str, str] = {
    "openid": "识别登录的教师和学生",
    "roster.read": "按班级布置作业，需要读取班级和任课教师",
}


@pytest.fixture
def settings(settings: AppStoreSettings, identity_server: IdentityServer) -> AppStoreSettings:
    """The app store's test settings, calling the real identity service (import this fixture to use it)."""
    return identity_server.configure(settings)


def manifest_document(
    *, version: str = "1.0.0", scopes: dict[str, str] | None = None, launch: str = "oidc", retention_days: int = 30
) -> dict[str, Any]:
    """A valid manifest; ``scopes`` maps each requested scope to its purpose."""
    launch_block: dict[str, Any] = (
        {
            "type": "oidc",
            "initiate_login_uri": "https://vendor.example.cn/login",
            "redirect_uris": ["https://vendor.example.cn/callback"],
        }
        if launch == "oidc"
        else {
            "type": "lti_1p3",
            "initiate_login_uri": "https://vendor.example.cn/lti/login",
            "target_link_uri": "https://vendor.example.cn/lti/launch",
            "redirect_uris": ["https://vendor.example.cn/lti/launch"],
            "jwks_url": "https://vendor.example.cn/.well-known/jwks.json",
        }
    )
    return {
        "manifest_version": 1,
        "version": version,
        "name": {"zh-CN": "作业小助手", "en": "Homework Helper"},
        "summary": {"zh-CN": "布置、批改和讲评作业"},
        "description": {"zh-CN": "教师布置分层作业，学生在线提交，系统辅助批改并生成学情报告。"},
        "category": "homework",
        "grade_bands": ["primary_upper"],
        "subjects": ["mathematics"],
        "launch": launch_block,
        "scopes": [{"scope": s, "purpose": {"zh-CN": p}} for s, p in (scopes or DEFAULT_SCOPES).items()],
        "data_retention_days": retention_days,
        "pricing": {"unit": "launch", "unit_price_fen": 10},
        "privacy_policy_url": "https://vendor.example.cn/privacy",
        "support": {"email": "support@vendor.example.cn"},
    }


@dataclass
class ListedApp:
    app_id: str
    client_id: str
    vendor_id: str
    version_id: str


def vendor(database: Database, city: TestCity, *developers: str) -> str:
    """A vendor whose developers are the city's people named by ``developers`` (the first one owns it)."""
    vendor_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Vendor(
                id=vendor_id, name=f"厂商{vendor_id[:4]}", unified_social_credit_code=uuid.uuid4().hex[:18].upper(),
                contact_name="张经理", contact_email="contact@vendor.example.cn", contact_phone="13800000000",
                icp_filing="闽ICP备00000000号", education_app_filing="教APP备0000000号",
                created_by=city.people[developers[0]].id if developers else "seed",
            )
        )  # fmt: skip
        session.flush()
        for index, key in enumerate(developers):
            role = "owner" if index == 0 else "developer"
            session.add(VendorMember(vendor_id=vendor_id, person_id=city.people[key].id, role=role))
    return vendor_id


def add_version(
    database: Database,
    app_id: str,
    *,
    version: str,
    scopes: dict[str, str] | None = None,
    publish: bool = True,
    launch: str = "oidc",
    retention_days: int = 30,
) -> str:
    """A version of the app's manifest; published (and listed) unless ``publish`` is False."""
    document = manifest_document(version=version, scopes=scopes, launch=launch, retention_days=retention_days)
    manifest = AppManifestV1.model_validate(document)
    with database.session() as session:
        app = session.get(App, app_id)
        assert app is not None
        previous = set(_scopes_of(session, app.published_version_id) if app.published_version_id else [])
        row = AppVersion(
            app_id=app_id, version=version, manifest=json.dumps(document, ensure_ascii=False),
            status="published" if publish else "draft", scopes=" ".join(manifest.scope_ids),
            pricing_unit=manifest.pricing.unit, unit_price_fen=manifest.pricing.unit_price_fen,
            needs_regrant=bool(previous) and not set(manifest.scope_ids) <= previous,
            published_at=utcnow() if publish else None,
        )  # fmt: skip
        session.add(row)
        session.flush()
        if publish:
            if app.published_version_id:
                old = session.get(AppVersion, app.published_version_id)
                assert old is not None
                old.status = "superseded"
                session.add(old)
            app.published_version_id = row.id
            app.status = "listed"
            session.add(app)
        return row.id


def _scopes_of(session: Any, version_id: str) -> list[str]:
    version = session.get(AppVersion, version_id)
    return version.scopes.split() if version is not None else []


def listed_app(
    database: Database,
    vendor_id: str,
    *,
    scopes: dict[str, str] | None = None,
    launch: str = "oidc",
    status: str = "listed",
    retention_days: int = 30,
    publish: bool = True,
) -> ListedApp:
    """An app with a published version, listed in the catalog (or ``status``)."""
    app_id = str(uuid.uuid4())
    client_id = f"app-{uuid.uuid4().hex[:16]}"
    with database.session() as session:
        session.add(App(id=app_id, vendor_id=vendor_id, client_id=client_id, created_by="seed"))
    version_id = add_version(
        database, app_id, version="1.0.0", scopes=scopes, launch=launch, retention_days=retention_days,
        publish=publish,
    )  # fmt: skip
    if status != "listed":
        with database.session() as session:
            app = session.get(App, app_id)
            assert app is not None
            app.status = status
            session.add(app)
    return ListedApp(app_id=app_id, client_id=client_id, vendor_id=vendor_id, version_id=version_id)


def add_class(database: Database, school_id: str, *, grade: str, name: str, teacher_ids: list[str] = []) -> str:  # noqa: B006
    class_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            RosterClass(id=class_id, school_id=school_id, grade=grade, name=name, teacher_ids=json.dumps(teacher_ids))
        )
    return class_id


def place_pupil(database: Database, pupil_id: str, school_id: str, class_id: str) -> None:
    with database.session() as session:
        session.merge(
            RosterMembership(student_id=pupil_id, school_id=school_id, class_id=class_id, effective_on=utcnow().date())
        )


def app_database(app: FastAPI) -> Database:
    database: Database = app.state.database
    return database


def count(database: Database, model: Any, **where: Any) -> int:
    with database.session() as session:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return len(session.exec(query).all())


async def appstore_events(app: FastAPI, nats_url: str, event_type: str, *, expected: int = 1) -> list[dict[str, Any]]:
    """The data of the app store's events of ``event_type`` on EDU_APPSTORE, once ``expected`` of them arrived."""
    relay = app.state.runtime.relay
    async with asyncio.timeout(30):
        # The relay runs on its own; its backlog in the database is the only signal there is.
        while await asyncio.to_thread(relay.backlog) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    subject = event_type.rsplit(".", 1)[0]
    client = await nats.connect(nats_url)
    try:
        subscription = await client.jetstream().pull_subscribe(subject, stream="EDU_APPSTORE")
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while len(found) < expected:
                try:
                    messages = await subscription.fetch(10, timeout=1)
                except NatsTimeoutError:
                    continue
                for message in messages:
                    envelope = json.loads(message.data)
                    if envelope["type"] == event_type:
                        found.append(envelope["data"])
        return found
    finally:
        await client.close()
