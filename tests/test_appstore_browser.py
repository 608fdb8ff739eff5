"""In a real Chromium, through the gateway as `make run` serves it: a teacher opens the app store's pages
(应用超市门户), signs in with their password at the real identity provider, sees 我的应用, opens the sample vendor
app (LTI 1.3) from their class and lands on the app's page listing the class roster.

The gateway, identity, the app store and the sample app run as real HTTP servers; the gateway's URL is the issuer
and the platform's; identity's directory reaches the app store over the test's nats-server.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from appstore.config import AppStoreSettings
from appstore.installations.models import Installation
from appstore.main import create_app as create_app_store
from appstore.main import migrate as migrate_app_store
from appstore.roster.models import RosterOrganisation, RosterPerson
from appstore.testing import feed
from appstore.testing_launch import listed_app
from appstore.web.models import PortalSession
from contracts.events import enrollment as roster_events
from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.config import IdentitySettings
from identity.demo import DEMO_PASSWORD
from identity.demo import load as load_demo
from identity.main import create_app as create_identity
from identity.main import migrate as migrate_identity
from identity.oauth.clients import ensure_platform_client
from identity.people.models import Person
from kit.audit import AuditEntry
from kit.db import Database
from kit.natsserver import NatsServer
from kit.testing import free_port, live_server
from vendor_app.app import create_app as create_vendor_app
from vendor_app.config import Settings as VendorSettings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/api/appstore"
SCHOOL = "厦门市思明区滨海实验小学"
TEACHER = "d1s1.teacher1"


@contextlib.contextmanager
def gateway(tmp_path: Path, nats_server: NatsServer, *, port: int, **upstreams: str) -> Iterator[str]:
    """The gateway in front of the services, at ``port``."""
    settings = GatewaySettings(
        environment="test", database_url=f"sqlite:///{tmp_path / 'gateway.db'}", nats_url=nats_server.url,
        log_json=False, token_issuer=f"http://127.0.0.1:{port}", public_base_url=f"http://127.0.0.1:{port}",
        jwks_url=f"{upstreams['identity']}/.well-known/jwks.json", upstreams=upstreams,
        usage_spool_dir=tmp_path / "spool", installation_refresh_seconds=3600,
    )  # fmt: skip
    migrate_gateway(settings)
    with live_server(create_gateway(settings), port=port) as url:
        yield url


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def sample_lti_manifest(tool: str) -> dict[str, Any]:
    text = (ROOT / "examples" / "vendor-app" / "manifest-lti.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text.replace("http://127.0.0.1:8110", tool))
    return document


def test_a_teacher_signs_in_and_opens_the_lti_app_from_my_apps(
    browser: Browser, nats_server: NatsServer, tmp_path: Path
) -> None:
    identity_port, gateway_port, tool_port = free_port(), free_port(), free_port()
    identity_url, gateway_url, tool_url = (
        f"http://127.0.0.1:{port}" for port in (identity_port, gateway_port, tool_port)
    )
    jwks_url = f"{identity_url}/.well-known/jwks.json"
    identity_settings = IdentitySettings(
        environment="test", database_url=f"sqlite:///{tmp_path / 'identity.db'}", nats_url=nats_server.url,
        log_json=False, public_base_url=gateway_url, token_issuer=gateway_url, jwks_url=jwks_url,
        password_hash_time_cost=1,
        password_hash_memory_kib=8 * 1024, password_hash_parallelism=1,
    )  # fmt: skip
    migrate_identity(identity_settings)
    store_settings = AppStoreSettings(
        environment="test", database_url=f"sqlite:///{tmp_path / 'appstore.db'}", nats_url=nats_server.url,
        log_json=False, token_issuer=gateway_url, jwks_url=jwks_url, platform_base_url=gateway_url,
        identity_internal_url=identity_url, pairwise_salt=identity_settings.pairwise_salt,
    )  # fmt: skip
    migrate_app_store(store_settings)
    identity_app = create_identity(identity_settings)
    with identity_app.state.database.session() as session:
        load_demo(session, identity_app.state.cipher)
        ensure_platform_client(
            session, client_id=store_settings.portal_client_id, scope=store_settings.portal_scopes,
            redirect_uris=[f"{gateway_url}{PREFIX}/portal/callback"], public=True,
        )  # fmt: skip
        teacher_id = session.exec(select(Person.id).where(Person.username == TEACHER)).one()
    store_app = create_app_store(store_settings)
    store: Database = store_app.state.database

    with (
        live_server(identity_app, port=identity_port),
        live_server(store_app) as store_url,
        gateway(tmp_path, nats_server, identity=identity_url, appstore=store_url, port=gateway_port),
    ):
        # Identity's directory reaches the app store over NATS.
        def school_and_pupils() -> tuple[str, list[str]] | None:
            with store.read_session() as session:
                school = session.exec(select(RosterOrganisation).where(RosterOrganisation.name == SCHOOL)).first()
                if school is None or session.get(RosterPerson, teacher_id) is None:
                    return None
                pupils = session.exec(
                    select(RosterPerson.id).where(RosterPerson.org_id == school.id, RosterPerson.kind == "student")
                ).all()
                return (school.id, list(pupils)) if len(pupils) >= 2 else None

        school_id, pupils = wait_for(school_and_pupils, "the directory in the app store")
        with store.read_session() as session:
            school_path = session.exec(select(RosterOrganisation.path).where(RosterOrganisation.id == school_id)).one()

        # The sample app is listed and installed at the school; the teacher teaches a class with two pupils.
        homework = listed_app(store, sample_lti_manifest(tool_url))
        with store.session() as session:
            session.add(Installation(
                app_id=homework.id, school_id=school_id, school_path=school_path, client_id=homework.client_id,
                version_id=homework.version_id, scopes="openid roster.read roster.students.read metering.report",
                installed_by=teacher_id,
            ))  # fmt: skip
        class_id = str(uuid.uuid4())
        feed(store, roster_events.ClassChangedV1(
            class_id=class_id, school_id=school_id, school_year_id=str(uuid.uuid4()), grade="05", name="五年级2班",
            head_teacher_id=teacher_id, teacher_ids=[teacher_id],
        ))  # fmt: skip
        for pupil in pupils[:2]:
            feed(store, roster_events.ClassMembershipChangedV1(
                student_id=pupil, school_id=school_id, to_class_id=class_id, effective_on=date(2026, 9, 1),
                reason="assigned",
            ))  # fmt: skip

        tool = VendorSettings(
            port=tool_port, base_url=tool_url, platform_url=gateway_url, lti_client_id=homework.client_id,
            tool_key_file=tmp_path / "tool-key.pem",
        )  # fmt: skip
        with live_server(create_vendor_app(tool), port=tool_port):
            page = browser.new_page(locale="zh-CN")
            page.goto(f"{gateway_url}{PREFIX}/portal")
            page.wait_for_url(f"{gateway_url}/login*")  # not signed in: identity's sign-in page
            page.get_by_label("登录名").fill(TEACHER)
            page.get_by_label("密码").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="登录").click()

            page.wait_for_url(f"{gateway_url}{PREFIX}/portal")
            assert page.inner_text("h1") == "我的应用"
            assert "课后作业小助手" in page.inner_text("main")
            assert page.get_by_label("从班级打开").input_value() == class_id
            page.get_by_role("button", name="打开 课后作业小助手").click()

            page.wait_for_url(f"{tool_url}/**")
            page.wait_for_selector("text=班级名单")
            text = page.inner_text("body")
            assert "五年级2班" in text
            assert "班级名单（共 3 人" in text, text
            # The portal's session cookie is the app store's own, scoped to its pages.
            cookie = next(c for c in page.context.cookies() if c["name"] == "appstore_portal")
            assert (cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (f"{PREFIX}/portal", True, "Lax")
        with store.read_session() as session:
            stored = session.exec(select(PortalSession)).one()
            assert stored.person_id == teacher_id and stored.id != cookie["value"]  # only a keyed hash is kept
            assert "." not in stored.access_token_encrypted.partition(":")[2]  # the token is encrypted, not a JWT
            signed_in = select(AuditEntry).where(AuditEntry.action == "portal.signed_in")
            assert session.exec(signed_in).one().actor_id == teacher_id
