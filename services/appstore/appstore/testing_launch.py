"""Factories for the launch tests: a listed app with a published manifest (OIDC or LTI 1.3), its installation at a
school, and classes with teachers and pupils fed to the roster projection through enrollment's event types."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import nats
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey
from nats.errors import TimeoutError as NatsTimeoutError

from appstore.apps.models import App, AppVersion
from appstore.config import AppStoreSettings
from appstore.installations.models import Installation
from appstore.vendors.models import Vendor
from contracts.events import enrollment as roster_events
from contracts.manifest import AppManifestV1
from kit.db import Database
from kit.testing import TestCity, TestIssuer, free_port, live_server, mounted_under, running

TOOL = "https://tool.example.com"


def manifest(*, launch: dict[str, Any], scopes: tuple[str, ...] = ("openid",)) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": "1.0.0",
        "name": {"zh-CN": "课堂测验"},
        "summary": {"zh-CN": "随堂小测，即时反馈"},
        "description": {"zh-CN": "教师在课堂上发布小测验，学生作答后立即看到结果。"},
        "category": "assessment",
        "grade_bands": ["primary_upper"],
        "subjects": ["mathematics"],
        "launch": launch,
        "scopes": [{"scope": scope, "purpose": {"zh-CN": f"用于课堂测验功能：{scope}"}} for scope in scopes],
        "data_retention_days": 30,
        "pricing": {"unit": "launch", "unit_price_fen": 5},
        "privacy_policy_url": f"{TOOL}/privacy",
        "support": {"email": "support@tool.example.com"},
    }
    AppManifestV1.model_validate(document)
    return document


def lti_launch(base: str = TOOL, *, jwks_url: str | None = None) -> dict[str, Any]:
    return {
        "type": "lti_1p3",
        "initiate_login_uri": f"{base}/lti/login",
        "target_link_uri": f"{base}/lti/launch",
        "redirect_uris": [f"{base}/lti/launch"],
        "jwks_url": jwks_url or f"{base}/lti/jwks",
    }


def oidc_launch(base: str = TOOL) -> dict[str, Any]:
    return {"type": "oidc", "initiate_login_uri": f"{base}/login", "redirect_uris": [f"{base}/callback"]}


@dataclass(frozen=True)
class ListedApp:
    id: str
    client_id: str
    vendor_id: str
    version_id: str


def listed_app(database: Database, document: dict[str, Any], *, status: str = "listed") -> ListedApp:
    """A vendor's app whose version with ``document`` is published (as review and publication leave it)."""
    suffix = uuid.uuid4().hex[:12]
    with database.session() as session:
        vendor = Vendor(
            name=f"测验科技{suffix}", unified_social_credit_code=("91350200" + suffix.upper())[:18],
            contact_name="张经理", contact_email="biz@tool.example.com", contact_phone="0592-5550000",
            icp_filing="闽ICP备2026000001号", education_app_filing="教APP备3500001号", created_by="test",
        )  # fmt: skip
        session.add(vendor)
        session.flush()
        app = App(vendor_id=vendor.id, client_id=f"app-{suffix}", status=status, created_by="test")
        session.add(app)
        session.flush()
        parsed = AppManifestV1.model_validate(document)
        version = AppVersion(
            app_id=app.id, version=parsed.version, manifest=json.dumps(document, ensure_ascii=False),
            status="published", scopes=" ".join(parsed.scope_ids), pricing_unit=parsed.pricing.unit,
            unit_price_fen=parsed.pricing.unit_price_fen,
        )  # fmt: skip
        session.add(version)
        session.flush()
        app.published_version_id = version.id
        session.add(app)
        return ListedApp(id=app.id, client_id=app.client_id, vendor_id=vendor.id, version_id=version.id)


def install(
    database: Database,
    city: TestCity,
    app: ListedApp,
    school_id: str,
    *,
    scopes: str = "openid",
    grades: list[str] | None = None,
    class_ids: list[str] | None = None,
    status: str = "active",
) -> str:
    """Install ``app`` at the school (what the school administrator's installation leaves); its id."""
    with database.session() as session:
        row = Installation(
            app_id=app.id, school_id=school_id, school_path=city.paths[school_id], client_id=app.client_id,
            version_id=app.version_id, scopes=scopes, grades=json.dumps(grades or []),
            class_ids=json.dumps(class_ids or []), status=status, installed_by=city.people["a1_admin"].id,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def add_class(city: TestCity, school_id: str, name: str, *, grade: str = "05", teachers: tuple[str, ...] = ()) -> str:
    """A class of the school taught by the people named by ``teachers``; its id."""
    class_id = str(uuid.uuid4())
    teacher_ids = [city.people[key].id for key in teachers]
    city.feed(
        city.database,
        roster_events.ClassChangedV1(
            class_id=class_id, school_id=school_id, school_year_id=str(uuid.uuid4()), grade=grade, name=name,
            head_teacher_id=teacher_ids[0] if teacher_ids else None, teacher_ids=teacher_ids,
        ),
    )  # fmt: skip
    return class_id


def add_pupil(city: TestCity, key: str, name: str, school_id: str, class_id: str | None) -> str:
    """A pupil of the school (role student there), placed in ``class_id``; their person id."""
    person = city.add_person(key, kind="student", name=name, org_id=school_id, role="student")
    if class_id is not None:
        city.feed(
            city.database,
            roster_events.ClassMembershipChangedV1(
                student_id=person.id, school_id=school_id, to_class_id=class_id, effective_on=date(2026, 9, 1),
                reason="assigned",
            ),
        )  # fmt: skip
    return person.id


async def launched_events(app: FastAPI, nats_url: str, *, expected: int = 1) -> list[dict[str, Any]]:
    """The data of the app.launched events on the app store's stream, once ``expected`` of them arrived."""
    relay = app.state.runtime.relay
    async with asyncio.timeout(30):
        while await asyncio.to_thread(relay.backlog) > 0:  # noqa: ASYNC110 - the relay's backlog is the signal
            await asyncio.sleep(0.05)
    client = await nats.connect(nats_url)
    try:
        subscription = await client.jetstream().pull_subscribe("edu.appstore.app.launched", stream="EDU_APPSTORE")
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while len(found) < expected:
                try:
                    messages = await subscription.fetch(10, timeout=1)
                except NatsTimeoutError:
                    continue
                for message in messages:
                    envelope = json.loads(message.data)
                    if envelope["type"] == "edu.appstore.app.launched.v1":
                        found.append(envelope["data"])
        return found
    finally:
        await client.close()


NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class ToolKeys:
    """The tool's signing keys, published at a JWKS URL on a real HTTP server."""

    def __init__(self) -> None:
        self.published = [RSAKey.generate_key(2048, parameters={"kid": "tool-key-1"})]
        self.fetches = 0
        self.app = FastAPI()
        self.app.get("/jwks")(self.jwks)

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": [key.as_dict(private=False, alg="RS256", use="sig") for key in self.published]}


@pytest.fixture
def tool_keys() -> Iterator[tuple[ToolKeys, str]]:
    keys = ToolKeys()
    with live_server(keys.app) as base:
        yield keys, f"{base}/jwks"


def assertion(key: RSAKey, client_id: str, audience: str, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
        "jti": f"jti-{uuid.uuid4()}",
    }  # fmt: skip
    claims.update(overrides)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


def token_request(client_assertion: str, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        "scope": NRPS_SCOPE,
    }
    form.update(overrides)
    return form


def audience(settings: AppStoreSettings) -> str:
    return f"{settings.platform_base_url}/api/appstore/lti/token"


async def service_token(client: Any, settings: AppStoreSettings, key: RSAKey, client_id: str) -> dict[str, str]:
    """Authorization headers with an NRPS service token the tool got at /lti/token."""
    response = await client.post("/lti/token", data=token_request(assertion(key, client_id, audience(settings))))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# ------------------------------------------------------------------------ an LTI tool's side of a launch


def form_fields(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of the auto-submitting form."""
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None, page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return html.unescape(action.group(1)), {name: html.unescape(value) for name, value in fields.items()}


async def start(
    client: httpx.AsyncClient, city: TestCity, person: str, installation: str, class_id: str | None = None
) -> dict[str, str]:
    body: dict[str, Any] = {"installation_id": installation}
    if class_id:
        body["class_id"] = class_id
    response = await client.post("/launches", json=body, headers=city.token(person, "apps.read"))
    assert response.status_code == 201, response.text
    params = {key: values[0] for key, values in parse_qs(urlsplit(response.json()["url"]).query).items()}
    params["launch_id"] = response.json()["launch_id"]
    return params


def auth_request(launch: dict[str, str], **overrides: str) -> dict[str, str]:
    """What a tool's OIDC login initiation sends back (LTI 1.3 §5.1.1.2)."""
    request = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": launch["client_id"],
        "redirect_uri": f"{TOOL}/lti/launch",
        "login_hint": launch["login_hint"],
        "lti_message_hint": launch["lti_message_hint"],
        "state": "state-abc",
        "nonce": "nonce-xyz",
    }
    request.update(overrides)
    return request


@dataclass
class ServedStore:
    """The app store served over real HTTP below /api/appstore (as the gateway exposes it), with the test city."""

    settings: AppStoreSettings
    app: FastAPI
    base: str
    city: TestCity
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def served_app_store(database_url: str, nats_url: str, **overrides: Any) -> AsyncIterator[ServedStore]:
    """Run the app store over HTTP, for an LTI tool that must fetch its keys and call its token and NRPS endpoints."""
    from appstore.main import create_app, migrate
    from appstore.testing import build_city

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = AppStoreSettings(
        environment="test", database_url=database_url, nats_url=nats_url, log_json=False, public_base_url=base,
        platform_base_url=base, **overrides,
    )  # fmt: skip
    migrate(settings)
    issuer = TestIssuer()
    async with running(create_app(settings), issuer) as app:
        with live_server(mounted_under("/api/appstore", app), port=port):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
                yield ServedStore(settings, app, base, build_city(app.state.database, issuer), client)
