"""Versions: drafts can be edited, version numbers only go up, submitted versions never change."""

from __future__ import annotations

import httpx

from kit.testing import TestCity

from .store_factories import create_app, manifest, problem_fields, publish_app, register_vendor, submit


async def test_versions_must_increase(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    app = await create_app(client, city, vendor_id, manifest(version="1.2.0"))
    headers = city.token("developer")
    for lower in ("1.2.0", "1.1.9", "1.2.0-beta.1"):
        response = await client.post(f"/apps/{app.app_id}/versions", json=manifest(version=lower), headers=headers)
        assert response.status_code == 409, lower
        assert problem_fields(response) == ["/version"]
    for higher in ("1.3.0-alpha", "1.3.0-alpha.1", "1.3.0", "1.10.0"):
        response = await client.post(f"/apps/{app.app_id}/versions", json=manifest(version=higher), headers=headers)
        assert response.status_code == 201, (higher, response.text)


async def test_a_draft_can_be_edited_until_submitted(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    app = await create_app(client, city, vendor_id)
    path = f"/apps/{app.app_id}/versions/{app.version_id}"
    headers = city.token("developer")
    edited = await client.put(path, json=manifest(summary={"zh-CN": "口算练习与错题本（新版说明）"}), headers=headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["manifest"]["summary"]["zh-CN"] == "口算练习与错题本（新版说明）"
    bad = await client.put(path, json=manifest(grade_bands=[]), headers=headers)
    assert bad.status_code == 422 and problem_fields(bad) == ["/grade_bands"]

    await submit(client, city, app.app_id, app.version_id)
    frozen = await client.put(path, json=manifest(summary={"zh-CN": "提交后再改"}), headers=headers)
    assert frozen.status_code == 409
    assert "不能再修改" in frozen.json()["detail"]
    assert (await client.get(path, headers=headers)).json()["manifest"]["summary"][
        "zh-CN"
    ] == "口算练习与错题本（新版说明）"


async def test_a_published_version_never_changes(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    path = f"/apps/{app.app_id}/versions/{app.version_id}"
    headers = city.token("developer")
    assert (await client.put(path, json=manifest(), headers=headers)).status_code == 409
    assert (await client.post(f"{path}/submit", headers=headers)).status_code == 409
    version = (await client.get(path, headers=headers)).json()
    assert version["status"] == "published"


async def test_another_vendor_sees_nothing_of_the_app(client: httpx.AsyncClient, city: TestCity) -> None:
    vendor_id = await register_vendor(client, city)
    app = await create_app(client, city, vendor_id)
    other = city.token("other_developer")
    base = f"/apps/{app.app_id}"
    assert (await client.get(base, headers=other)).status_code == 403
    assert (await client.get(f"{base}/versions/{app.version_id}", headers=other)).status_code == 403
    assert (await client.put(f"{base}/versions/{app.version_id}", json=manifest(), headers=other)).status_code == 403
    assert (await client.post(f"{base}/versions", json=manifest(version="2.0.0"), headers=other)).status_code == 403
    assert (await client.post(f"{base}/versions/{app.version_id}/submit", headers=other)).status_code == 403
    assert (await client.get(base, headers=city.token("a1_admin"))).status_code == 403
    assert (await client.get(base)).status_code == 401
    assert (await client.get("/apps/nope", headers=city.token("developer"))).status_code == 404
    listed = await client.get(f"/vendors/{vendor_id}/apps", headers=city.token("developer"))
    assert [item["id"] for item in listed.json()] == [app.app_id]
