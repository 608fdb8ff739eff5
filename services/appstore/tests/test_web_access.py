"""Who may see the portal's pages: anonymous visitors are sent to sign in, forms without their token are refused,
and a teacher's 我的应用 lists their own school's apps only."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from kit.testing import TestCity

from .store_factories import install_at, manifest, publish_app
from .web_factories import PORTAL, form_token, settings, sign_in

__all__ = ["settings"]


async def test_anonymous_visitors_are_sent_to_sign_in_and_keep_their_destination(client: httpx.AsyncClient) -> None:
    for path in (PORTAL, f"{PORTAL}/catalog?q=maths&category=assessment", f"{PORTAL}/school/x/apps"):
        page = await client.get(path)
        assert page.status_code == 303, (path, page.text)
        location = urlsplit(page.headers["location"])
        assert location.path == f"{PORTAL}/login"
        assert parse_qs(location.query)["next"] == [path]
    posted = await client.post(f"{PORTAL}/launch", data={"installation_id": "x"})
    assert posted.status_code == 303 and urlsplit(posted.headers["location"]).path == f"{PORTAL}/login"


async def test_a_callback_without_its_own_sign_in_is_refused_with_a_page(client: httpx.AsyncClient) -> None:
    page = await client.get(f"{PORTAL}/callback", params={"code": "stolen", "state": "guessed"})
    assert page.status_code == 400
    assert "登录请求已失效" in page.text
    assert "appstore_portal=" not in page.headers.get("set-cookie", "")


async def test_a_teacher_sees_only_their_schools_apps(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    ours = await publish_app(client, city, manifest(name={"zh-CN": "口算小达人"}))
    theirs = await publish_app(client, city, manifest(name={"zh-CN": "别校的物理实验"}))
    admin = city.people["a1_admin"].id
    install_at(app.state.database, app=ours, school_id=city.school_a1, school_path=city.paths[city.school_a1], by=admin)
    install_at(app.state.database, app=theirs, school_id=city.school_b1, school_path=city.paths[city.school_b1],
               by=city.people["b1_admin"].id)  # fmt: skip
    sign_in(app, client, city, "a1_teacher")

    page = await client.get(PORTAL)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "我的应用" in page.text and "口算小达人" in page.text
    assert "别校的物理实验" not in page.text
    assert "本校应用管理" not in page.text  # a teacher administers no school


async def test_forms_without_their_token_are_refused(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    store_app = await publish_app(client, city, manifest(name={"zh-CN": "口算小达人"}))
    installation_id = install_at(
        app.state.database, app=store_app, school_id=city.school_a1, school_path=city.paths[city.school_a1],
        by=city.people["a1_admin"].id,
    )  # fmt: skip
    sign_in(app, client, city, "a1_teacher")
    token = form_token(await client.get(PORTAL))
    for data in ({"installation_id": installation_id}, {"installation_id": installation_id, "csrf_token": "x" * 64}):
        refused = await client.post(f"{PORTAL}/launch", data=data)
        assert refused.status_code == 403
        assert "表单已失效" in refused.text
    # Another session's token is no good either.
    client.cookies.clear()
    sign_in(app, client, city, "a1_teacher2")
    reused = await client.post(f"{PORTAL}/launch", data={"installation_id": installation_id, "csrf_token": token})
    assert reused.status_code == 403


async def test_signing_out_ends_the_session(app: FastAPI, client: httpx.AsyncClient, city: TestCity) -> None:
    sign_in(app, client, city, "a1_teacher")
    token = form_token(await client.get(PORTAL))
    cookie = client.cookies.get("appstore_portal")
    out = await client.post(f"{PORTAL}/logout", data={"csrf_token": token})
    assert out.status_code == 200 and "您已退出" in out.text
    client.cookies.set("appstore_portal", cookie or "", domain="appstore.test", path=PORTAL)
    assert (await client.get(PORTAL)).status_code == 303
