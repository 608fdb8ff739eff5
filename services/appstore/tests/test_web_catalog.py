"""Browsing the catalog in the portal: keyword and filter search, and an app's page saying what data it gets, why,
whether guardians consent, how long the vendor keeps it and what it costs; opening an installed app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from kit.testing import TestCity

from .store_factories import install_at, manifest, publish_app, scope_request
from .web_factories import PORTAL, form_token, settings, sign_in

__all__ = ["settings"]


async def test_search_filters_and_the_data_each_app_gets(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    await publish_app(client, city, manifest(name={"zh-CN": "口算小达人"}))
    reading = await publish_app(client, city, manifest(
        name={"zh-CN": "阅读伙伴"}, summary={"zh-CN": "分级阅读与朗读打卡"}, category="learning", subjects=["chinese"],
        scopes=[scope_request("openid", "识别登录的学生身份"),
                scope_request("roster.students.read", "按班级生成学生的阅读书单和朗读记录")],
        pricing={"unit": "monthly_active_user", "unit_price_fen": 150, "monthly_cap_fen_per_school": 200_000},
        data_retention_days=90,
    ))  # fmt: skip
    sign_in(app, client, city, "a1_teacher")

    everything = await client.get(f"{PORTAL}/catalog")
    assert everything.status_code == 200
    assert "口算小达人" in everything.text and "阅读伙伴" in everything.text
    filtered = await client.get(f"{PORTAL}/catalog", params={"q": "阅读", "category": "learning", "subject": "chinese"})
    assert "阅读伙伴" in filtered.text and "口算小达人" not in filtered.text
    assert "共找到 1 个应用" in filtered.text
    # An unknown filter value from an old link is ignored, not an error page.
    assert (await client.get(f"{PORTAL}/catalog", params={"grade_band": "nursery"})).status_code == 200

    detail = await client.get(f"{PORTAL}/catalog/{reading.app_id}")
    assert detail.status_code == 200, detail.text
    for shown in ("按班级生成学生的阅读书单和朗读记录", "90 天内删除", "1.50 元", "2000.00 元", "申请本校安装"):
        assert shown in detail.text, shown
    assert "安装到本校" not in detail.text  # a teacher requests, an administrator installs
    missing = await client.get(f"{PORTAL}/catalog/no-such-app")
    assert missing.status_code == 404 and "应用" in missing.text


async def test_opening_an_installed_app_sends_the_browser_to_it(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    store_app = await publish_app(client, city, manifest())
    installation_id = install_at(
        app.state.database, app=store_app, school_id=city.school_a1, school_path=city.paths[city.school_a1],
        by=city.people["a1_admin"].id,
    )  # fmt: skip
    elsewhere = install_at(
        app.state.database, app=store_app, school_id=city.school_b1, school_path=city.paths[city.school_b1],
        by=city.people["b1_admin"].id,
    )  # fmt: skip
    sign_in(app, client, city, "a1_teacher")
    token = form_token(await client.get(PORTAL))

    opened = await client.post(f"{PORTAL}/launch", data={"installation_id": installation_id, "csrf_token": token})
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"].startswith("https://app.qiming.example.cn/login?")
    # Another school's installation is not the teacher's to open: a page says why, no 500.
    refused = await client.post(f"{PORTAL}/launch", data={"installation_id": elsewhere, "csrf_token": token})
    assert refused.status_code in (403, 404)
    assert 'role="alert"' in refused.text
