"""School staff search the catalog by Chinese keywords and filters, and see exactly what data each app gets and why."""

from __future__ import annotations

import httpx

from kit.testing import TestCity

from .store_factories import StoreApp, manifest, publish_app, register_vendor, scope_request, submit_app


async def _catalog(
    client: httpx.AsyncClient, city: TestCity, who: str = "a1_teacher", **params: str | int | float
) -> httpx.Response:
    return await client.get("/catalog/apps", params=params, headers=city.token(who))


async def _seed(client: httpx.AsyncClient, city: TestCity) -> dict[str, StoreApp]:
    vendor_id = await register_vendor(client, city)
    apps = {
        "maths": manifest(name={"zh-CN": "口算小达人"}, summary={"zh-CN": "小学数学口算练习"}),
        "reading": manifest(
            name={"zh-CN": "阅读伙伴", "en": "Reading Buddy"}, summary={"zh-CN": "分级阅读与朗读打卡"},
            description={"zh-CN": "提供分级绘本，学生朗读后自动评分，也能做口算热身。"}, category="learning",
            grade_bands=["primary_lower"], subjects=["chinese"],
            pricing={"unit": "monthly_active_user", "unit_price_fen": 150, "monthly_cap_fen_per_school": 200_000},
            scopes=[scope_request("openid", "识别登录的学生身份"),
                    scope_request("roster.students.read", "按班级生成学生的阅读书单和朗读记录")],
            data_retention_days=90,
        ),
        "physics": manifest(
            name={"zh-CN": "物理实验室"}, summary={"zh-CN": "初中物理虚拟实验"},
            description={"zh-CN": "三维模拟的力学、电学实验，适合课堂演示。"}, category="teaching",
            grade_bands=["junior"], subjects=["physics"], pricing={"unit": "minute", "unit_price_fen": 1},
        ),
    }  # fmt: skip
    return {key: await publish_app(client, city, document, vendor_id=vendor_id) for key, document in apps.items()}


async def test_keywords_rank_name_hits_first(client: httpx.AsyncClient, city: TestCity) -> None:
    apps = await _seed(client, city)
    response = await _catalog(client, city, q="口算")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2
    # 口算小达人 has it in its name; 阅读伙伴 only in its description.
    assert [item["app_id"] for item in page["items"]] == [apps["maths"].app_id, apps["reading"].app_id]
    # Every keyword must match; English matches case-insensitively; the vendor's name is searched too.
    assert [i["app_id"] for i in (await _catalog(client, city, q="口算 绘本")).json()["items"]] == [
        apps["reading"].app_id
    ]
    assert (await _catalog(client, city, q="reading BUDDY")).json()["total"] == 1
    assert (await _catalog(client, city, q="启明教育")).json()["total"] == 3
    assert (await _catalog(client, city, q="100%")).json()["total"] == 0  # LIKE wildcards are literal


async def test_filters_sorting_and_paging(client: httpx.AsyncClient, city: TestCity) -> None:
    apps = await _seed(client, city)

    async def ids(**params: str | int | float) -> list[str]:
        response = await client.get("/catalog/apps", params=params, headers=city.token("a1_teacher"))
        return [item["app_id"] for item in response.json()["items"]]

    assert await ids(category="teaching") == [apps["physics"].app_id]
    assert await ids(grade_band="junior") == [apps["physics"].app_id]
    assert set(await ids(grade_band="primary_lower")) == {apps["maths"].app_id, apps["reading"].app_id}
    assert await ids(subject="chinese") == [apps["reading"].app_id]
    assert await ids(pricing_unit="minute") == [apps["physics"].app_id]
    assert await ids(min_rating=1) == []  # nobody rated yet
    assert await ids(sort="newest") == [apps["physics"].app_id, apps["reading"].app_id, apps["maths"].app_id]
    first = (await _catalog(client, city, sort="newest", limit=2)).json()
    second = (await _catalog(client, city, sort="newest", limit=2, offset=2)).json()
    assert first["total"] == second["total"] == 3
    assert [i["app_id"] for i in first["items"] + second["items"]] == await ids(sort="newest")


async def test_each_item_says_what_data_the_app_gets_and_why(client: httpx.AsyncClient, city: TestCity) -> None:
    apps = await _seed(client, city)
    items = {item["app_id"]: item for item in (await _catalog(client, city)).json()["items"]}
    reading = items[apps["reading"].app_id]
    access = reading["data_access"]
    students = next(scope for scope in access["scopes"] if scope["scope"] == "roster.students.read")
    assert students["purpose"]["zh_cn"] == "按班级生成学生的阅读书单和朗读记录"
    assert students["description_zh"] and students["sensitive"] is True
    assert {field["label_zh"] for field in students["personal_fields"]} >= {"姓名"}
    assert access["guardian_consent_required_under_14"] is True
    assert access["data_retention_days"] == 90
    assert reading["pricing"] == {
        "unit": "monthly_active_user", "unit_label": "按月活跃用户", "unit_price_fen": 150, "unit_price_yuan": "1.50",
        "monthly_cap_fen_per_school": 200_000, "monthly_cap_yuan_per_school": "2000.00", "reported_unit_name": None,
    }  # fmt: skip
    assert reading["category"] == {"id": "learning", "label": "自主学习"}
    assert reading["vendor"]["label"] == "厦门启明教育科技有限公司"
    assert reading["rating"] == {"average": None, "count": 0}
    maths = items[apps["maths"].app_id]["data_access"]
    assert maths["guardian_consent_required_under_14"] is False
    assert "每个应用各不相同的匿名用户标识" in {field["label_zh"] for field in maths["personal_fields"]}

    detail = await client.get(f"/catalog/apps/{apps['reading'].app_id}", headers=city.token("a1_admin"))
    assert detail.status_code == 200
    assert detail.json()["description"]["zh_cn"].startswith("提供分级绘本")
    assert detail.json()["support"]["email"] == "support@qiming.example.cn"
    assert detail.json()["data_access"] == access


async def test_only_listed_apps_are_in_the_catalog(client: httpx.AsyncClient, city: TestCity) -> None:
    draft = await submit_app(client, city)
    assert (await _catalog(client, city)).json()["total"] == 0
    assert (await client.get(f"/catalog/apps/{draft.app_id}", headers=city.token("a1_admin"))).status_code == 404


async def test_who_may_browse(client: httpx.AsyncClient, city: TestCity) -> None:
    await _seed(client, city)
    assert (await client.get("/catalog/apps")).status_code == 401
    for person in ("a1_teacher", "a1_admin", "district_a_admin", "city_admin"):
        assert (await _catalog(client, city, who=person)).status_code == 200, person
    assert (await _catalog(client, city, who="developer")).status_code == 403
    no_scope = await client.get("/catalog/apps", headers=city.token("a1_teacher", "apps.install"))
    assert no_scope.status_code == 403


async def test_bad_filters_are_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    cases: list[dict[str, str | int | float]] = [
        {"category": "games"}, {"min_rating": 6}, {"sort": "cheapest"}, {"limit": 0}, {"limit": 101},
        {"grade_band": "university"},
    ]  # fmt: skip
    for params in cases:
        response = await client.get("/catalog/apps", params=params, headers=city.token("a1_teacher"))
        assert response.status_code == 422, params
        assert response.json()["errors"], params
