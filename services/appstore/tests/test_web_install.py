"""Installing from the portal and teachers' requests: an administrator of school B cannot install for school A,
a teacher asks for an app and the school's administrator sees and declines the request."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlmodel import select

from appstore.installations.models import AppRequest, Installation
from kit.testing import TestCity

from .store_factories import manifest, publish_app
from .web_factories import PORTAL, form_token, settings, sign_in

__all__ = ["settings"]


async def test_an_administrator_of_another_school_cannot_install_or_look(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    store_app = await publish_app(client, city, manifest())
    sign_in(app, client, city, "b1_admin")
    detail = await client.get(f"{PORTAL}/catalog/{store_app.app_id}")
    assert "安装到本校" in detail.text
    token = form_token(detail)

    refused = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/install",
        data={"csrf_token": token, "school_id": city.school_a1, "scopes": ["openid"]},
    )
    assert refused.status_code == 403, refused.text
    assert 'role="alert"' in refused.text
    with app.state.database.read_session() as session:
        assert session.exec(select(Installation)).all() == []
    assert (await client.get(f"{PORTAL}/school/{city.school_a1}/apps")).status_code == 403
    # Bad input: no such school.
    unknown = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/install", data={"csrf_token": token, "school_id": "nowhere"}
    )
    assert unknown.status_code == 404 and "学校不存在" in unknown.text


async def test_a_teacher_requests_and_the_administrator_declines(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    store_app = await publish_app(client, city, manifest())
    sign_in(app, client, city, "a1_teacher")
    detail = await client.get(f"{PORTAL}/catalog/{store_app.app_id}")
    token = form_token(detail)
    too_short = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/request",
        data={"csrf_token": token, "school_id": city.school_a1, "reason": "x"},
    )
    assert too_short.status_code == 422 and "申请理由" in too_short.text
    other_school = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/request",
        data={"csrf_token": token, "school_id": city.school_b1, "reason": "想在别校用"},
    )
    assert other_school.status_code == 403
    asked = await client.post(
        f"{PORTAL}/catalog/{store_app.app_id}/request",
        data={"csrf_token": token, "school_id": city.school_a1, "reason": "五年级口算练习要用"},
    )
    assert asked.status_code == 303
    assert "申请已提交" in (await client.get(asked.headers["location"])).text
    assert "待审批" in (await client.get(PORTAL)).text

    client.cookies.clear()
    sign_in(app, client, city, "a1_admin")
    school_page = await client.get(f"{PORTAL}/school/{city.school_a1}/apps")
    assert school_page.status_code == 200, school_page.text
    assert "五年级口算练习要用" in school_page.text
    with app.state.database.read_session() as session:
        request_id = session.exec(select(AppRequest.id)).one()
    declined = await client.post(
        f"{PORTAL}/school/{city.school_a1}/requests/{request_id}/decline",
        data={"csrf_token": form_token(school_page), "note": "本学期预算已用完"},
    )
    assert declined.status_code == 303
    assert "没有待审批的申请" in (await client.get(declined.headers["location"])).text

    client.cookies.clear()
    sign_in(app, client, city, "a1_teacher")
    mine = await client.get(PORTAL)
    assert "未批准" in mine.text and "本学期预算已用完" in mine.text
