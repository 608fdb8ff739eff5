"""Staff of a school that installed an app rate it 1–5 (one rating each, which they may change); the catalog shows
the average and the count."""

from __future__ import annotations

import httpx

from kit.testing import TestCity

from .store_factories import install_at, publish_app


async def _rate(client: httpx.AsyncClient, city: TestCity, app_id: str, who: str, stars: int,
                comment: str | None = None) -> httpx.Response:  # fmt: skip
    return await client.put(f"/catalog/apps/{app_id}/rating", json={"stars": stars, "comment": comment},
                            headers=city.token(who))  # fmt: skip


async def test_ratings_from_the_installing_school(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    install_at(city.database, app=app, school_id=city.school_a1, school_path=city.paths[city.school_a1],
               by=city.people["a1_admin"].id)  # fmt: skip

    assert (await _rate(client, city, app.app_id, "a1_teacher", 5, "学生很喜欢")).status_code == 200
    response = await _rate(client, city, app.app_id, "a1_admin", 3)
    assert response.status_code == 200
    assert response.json()["rating"] == {"average": 4.0, "count": 2}
    changed = await _rate(client, city, app.app_id, "a1_teacher", 4, "题目偏难")
    assert changed.json()["rating"] == {"average": 3.5, "count": 2}

    detail = (await client.get(f"/catalog/apps/{app.app_id}", headers=city.token("a1_teacher"))).json()
    assert detail["rating"] == {"average": 3.5, "count": 2} and detail["my_rating"] == 4
    assert [(c["stars"], c["comment"]) for c in detail["recent_comments"]] == [(4, "题目偏难")]
    listed = (await client.get("/catalog/apps", params={"min_rating": 3.5},
                               headers=city.token("a1_teacher"))).json()  # fmt: skip
    assert [item["app_id"] for item in listed["items"]] == [app.app_id]
    assert (await client.get("/catalog/apps", params={"min_rating": 4},
                             headers=city.token("a1_teacher"))).json()["total"] == 0  # fmt: skip


async def test_only_the_installing_schools_staff_rate(client: httpx.AsyncClient, city: TestCity) -> None:
    app = await publish_app(client, city)
    install_at(city.database, app=app, school_id=city.school_a1, school_path=city.paths[city.school_a1],
               by=city.people["a1_admin"].id)  # fmt: skip
    assert (await client.put(f"/catalog/apps/{app.app_id}/rating", json={"stars": 5})).status_code == 401
    for person in ("b1_teacher", "b1_admin", "district_a_admin", "developer"):
        assert (await _rate(client, city, app.app_id, person, 5)).status_code == 403, person
    for stars in (0, 6):
        response = await _rate(client, city, app.app_id, "a1_teacher", stars)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "stars"
    assert (await _rate(client, city, "nope", "a1_teacher", 5)).status_code == 404
