"""A manifest that fails the schema or the deployment's rules is refused with the JSON pointer of each problem."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from kit.testing import TestCity

from .store_factories import manifest, problem_fields, register_vendor, scope_request


async def _create(client: httpx.AsyncClient, city: TestCity, vendor_id: str, document: object) -> httpx.Response:
    return await client.post(f"/vendors/{vendor_id}/apps", json=document, headers=city.token("developer"))


async def test_a_valid_manifest_creates_a_draft_app(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    response = await _create(client, city, vendor_id, manifest())
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["status"] == "draft" and app["name"] == "口算小达人"
    assert app["client_id"].startswith("app-") and len(app["client_id"]) == 16
    assert [(v["version"], v["status"]) for v in app["versions"]] == [("1.0.0", "draft")]


async def test_schema_problems_are_named_by_json_pointer(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    document = manifest(
        version="1.0",
        category="games",
        scopes=[scope_request("openid", "识别登录的教师和学生身份"), scope_request("roster.read", "班级")],
        pricing={"unit": "launch", "unit_price_fen": -1},
        surprise=True,
    )
    document["launch"]["redirect_uris"] = []
    response = await _create(client, city, vendor_id, document)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert set(problem_fields(response)) == {
        "/version", "/category", "/scopes/1/purpose", "/pricing/unit_price_fen", "/surprise", "/launch/redirect_uris",
    }  # fmt: skip
    messages = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert "可选" in messages["/category"] and "teaching" in messages["/category"]
    assert "用于生成班级作业名单" in messages["/scopes/1/purpose"]  # says how to state a purpose
    assert "删除" in messages["/surprise"]


async def test_unknown_and_platform_only_scopes_are_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    document = manifest(
        scopes=[
            scope_request("openid", "识别登录的教师和学生身份"),
            scope_request("grades.everything", "读取所有学生的全部成绩"),
            scope_request("people.read", "读取全市所有人员的资料"),
        ]
    )
    response = await _create(client, city, vendor_id, document)
    assert response.status_code == 422
    messages = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert set(messages) == {"/scopes/1/scope", "/scopes/2/scope"}
    assert "unknown scope" in messages["/scopes/1/scope"]
    assert "reserved for the platform" in messages["/scopes/2/scope"]


async def test_a_body_that_is_not_an_object_is_refused(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    assert (await _create(client, city, vendor_id, ["not", "a", "manifest"])).status_code == 422


async def test_outside_local_every_url_is_https_and_webhooks_stay_off_private_networks(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    vendor_id = await register_vendor(client, city)
    app.state.settings = app.state.settings.model_copy(update={"environment": "production"})
    document = manifest(
        privacy_policy_url="http://app.qiming.example.cn/privacy",
        webhook={"url": "https://10.0.0.8/hooks", "events": ["installation.created"]},
    )
    response = await _create(client, city, vendor_id, document)
    assert response.status_code == 422
    messages = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert set(messages) == {"/privacy_policy_url", "/webhook/url"}
    assert "https" in messages["/privacy_policy_url"]
    assert "内网" in messages["/webhook/url"]

    loopback = manifest(webhook={"url": "https://127.0.0.1:9000/hooks", "events": ["installation.created"]})
    assert problem_fields(await _create(client, city, vendor_id, loopback)) == ["/webhook/url"]
    internal = manifest(webhook={"url": "https://hooks.svc/in", "events": ["installation.created"]})
    assert problem_fields(await _create(client, city, vendor_id, internal)) == ["/webhook/url"]

    public = manifest(webhook={"url": "https://1.1.1.1/hooks", "events": ["installation.created"]})
    assert (await _create(client, city, vendor_id, public)).status_code == 201


async def test_in_local_development_http_and_loopback_are_fine(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    document = manifest(
        privacy_policy_url="http://127.0.0.1:8110/privacy",
        webhook={"url": "http://127.0.0.1:8110/webhooks", "events": ["installation.created"]},
    )
    assert (await _create(client, city, vendor_id, document)).status_code == 201


async def test_a_developer_cannot_create_apps_for_another_vendor(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    other = await client.post(f"/vendors/{vendor_id}/apps", json=manifest(), headers=city.token("other_developer"))
    assert other.status_code == 403
    assert (await client.post(f"/vendors/{vendor_id}/apps", json=manifest())).status_code == 401
