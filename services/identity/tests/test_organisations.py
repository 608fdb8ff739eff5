"""Organisation tree through the admin API: scoping, bad input, events."""

from __future__ import annotations

import httpx
from sqlmodel import col, select

from identity.testing import Directory, TokenFactory, bearer
from kit.outbox import OutboxEvent


async def test_anonymous_gets_401_problem(client: httpx.AsyncClient, directory: Directory) -> None:
    response = await client.get("/organisations")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_district_admin_sees_only_own_subtree(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    response = await client.get("/organisations", headers=bearer(token_for(directory.district_admin_a)))
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["items"]}
    assert names == {"思明区", "滨海小学"}


async def test_city_admin_creates_school_and_event_is_stored_with_it(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    response = await client.post(
        "/organisations",
        json={"kind": "school", "name": "滨海中学", "parent_id": directory.district_a.id, "school_code": "3135020302",
              "school_type": "junior"},
        headers=bearer(token_for(directory.city_admin)),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    school = response.json()
    assert school["path"] == f"{directory.district_a.path}/{school['id']}"
    with directory.database.session() as session:
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == "edu.identity.organisation.created.v1")
        ).all()
        assert any(school["id"] in event.envelope for event in events)


async def test_school_admin_cannot_create_organisations(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    response = await client.post(
        "/organisations",
        json={"kind": "school", "name": "新学校", "parent_id": directory.district_a.id, "school_code": "3135020399",
              "school_type": "junior"},
        headers=bearer(token_for(directory.school_admin_a)),
    )  # fmt: skip
    assert response.status_code == 403
    assert response.json()["type"].endswith("/forbidden")


async def test_district_admin_cannot_touch_other_district(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    response = await client.patch(
        f"/organisations/{directory.school_b.id}",
        json={"name": "改名"},
        headers=bearer(token_for(directory.district_admin_a)),
    )
    assert response.status_code == 403


async def test_bad_input(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    headers = bearer(token_for(directory.city_admin))
    malformed = await client.post(
        "/organisations", content=b'{"kind": "school",', headers={**headers, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"].endswith("/malformed-request")

    wrong_code = await client.post(
        "/organisations",
        json={"kind": "school", "name": "坏学校", "parent_id": directory.district_a.id, "school_code": "12345",
              "school_type": "primary"},
        headers={**headers, "Accept-Language": "en"},
    )  # fmt: skip
    assert wrong_code.status_code == 422
    body = wrong_code.json()
    assert body["title"] == "Invalid place in the organisation tree"
    assert body["errors"][0]["field"] == "school_code"

    duplicate = await client.post(
        "/organisations",
        json={"kind": "school", "name": "重复", "parent_id": directory.district_a.id, "school_code": "2135020301",
              "school_type": "primary"},
        headers=headers,
    )  # fmt: skip
    assert duplicate.status_code == 409
    assert duplicate.json()["title"] == "学校标识码已存在"

    under_school = await client.post(
        "/organisations",
        json={"kind": "school", "name": "错层", "parent_id": directory.school_a.id, "school_code": "2135020399",
              "school_type": "primary"},
        headers=headers,
    )  # fmt: skip
    assert under_school.status_code == 422
    unknown_parent = await client.post(
        "/organisations", json={"kind": "district", "name": "无名区", "parent_id": "nope"}, headers=headers
    )
    assert unknown_parent.status_code == 404
    with directory.database.session() as session:
        created = session.exec(select(OutboxEvent).where(col(OutboxEvent.event_type).contains("organisation.created")))
        assert len(created.all()) == 5
