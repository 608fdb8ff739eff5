"""In a real Chromium, through the gateway: a teacher signs in at the platform's one address and out again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.accounts import service as accounts
from identity.config import IdentitySettings
from identity.main import create_app as create_identity
from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from identity.people import service as people
from identity.people.schemas import PersonCreate
from identity.testing import settings
from kit.natsserver import NatsServer, free_port
from kit.testing import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["settings"]

PASSWORD = "Gulangyu#Qin88"


def a_teacher(identity_settings: IdentitySettings) -> None:
    app = create_identity(identity_settings)
    with app.state.database.session() as session:
        city = organisations.create_root(session, name="厦门市")
        district = organisations.create(session, OrganisationCreate(kind="district", name="思明区", parent_id=city.id))
        school = organisations.create(session, OrganisationCreate(
            kind="school", name="滨海小学", parent_id=district.id, school_code="2135020301", school_type="primary",
        ))  # fmt: skip
        data = PersonCreate(kind="staff", name="林慧敏", org_id=school.id, phone="13900000011", username="lin.huimin")
        teacher = people.create(session, people.clean(data, school), app.state.cipher, created_by=None)
        people.grant_role(session, teacher, role="teacher", org_id=school.id, granted_by=None)
        accounts.set_password(session, identity_settings, teacher, PASSWORD, must_change=False, actor=None)
    app.state.database.dispose()


def test_a_teacher_signs_in_and_out_through_the_gateway(
    settings: IdentitySettings, nats_server: NatsServer, tmp_path: Path, browser: Browser
) -> None:
    gateway_port = free_port()
    public = f"http://127.0.0.1:{gateway_port}"
    identity_settings = settings.model_copy(update={"public_base_url": public, "token_issuer": public})
    a_teacher(identity_settings)
    with live_server(create_identity(identity_settings)) as identity_url:
        gateway_settings = GatewaySettings(
            environment="test", database_url=f"sqlite:///{tmp_path / 'gateway.db'}", nats_url=nats_server.url,
            upstreams={"identity": identity_url}, public_base_url=public, token_issuer=public,
            jwks_url=f"{identity_url}/.well-known/jwks.json", usage_spool_dir=tmp_path / "spool", log_json=False,
        )  # fmt: skip
        migrate_gateway(gateway_settings)
        with live_server(create_gateway(gateway_settings), port=gateway_port) as base_url:
            assert base_url == public
            page = browser.new_page(locale="zh-CN")
            page.goto(f"{public}/login")
            assert page.title() == "登录 · 智慧教育平台"
            page.get_by_label("登录名").fill("lin.huimin")
            page.get_by_label("密码").fill(PASSWORD)
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(f"{public}/account")
            assert page.inner_text("h1") == "我的账号"
            assert "林慧敏" in page.inner_text("main")
            page.get_by_role("button", name="退出登录").click()
            page.wait_for_url(f"{public}/login**")
            assert page.title() == "登录 · 智慧教育平台"

            # The API reference vendors read, merged from the services' own documents.
            page.goto(f"{public}/docs")
            page.wait_for_function("document.body.innerText.includes('/api/identity/people')")
            assert page.inner_text("h1").startswith("智慧教育平台开放接口文档")
            assert "people.read" in page.inner_text("body")
