"""Teachers and pupils see the apps installed for them; an app opened to some grades or classes reaches only their
pupils and the teachers of their classes (a grade or a class named is enough)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from kit.testing import TestCity

from .installations_factories import (
    add_class,
    app_database,
    identity_server,
    listed_app,
    place_pupil,
    settings,
    vendor,
)

__all__ = ["identity_server", "settings"]

SCHOOL_ADMIN = "apps.read apps.install"


async def install(
    client: httpx.AsyncClient, city: TestCity, school_id: str, admin: str, body: dict[str, object]
) -> str:
    response = await client.post(
        f"/schools/{school_id}/installations", json=body, headers=city.token(admin, SCHOOL_ADMIN)
    )
    assert response.status_code == 201, response.text
    installation_id: str = response.json()["id"]
    return installation_id


async def test_anonymous_and_tokens_without_apps_read_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    assert (await client.get("/me/apps")).status_code == 401
    response = await client.get("/me/apps", headers=city.token("a1_teacher", "apps.install"))
    assert response.status_code == 403
    assert response.json()["required_scope"] == "apps.read"
    as_app = await client.get("/me/apps", headers=city.app_token(scopes="apps.read", schools=[city.school_a1]))
    assert as_app.status_code == 403


async def test_each_person_sees_only_their_schools_apps_and_pupils_their_classes(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity
) -> None:
    database = app_database(app)
    vendor_id = vendor(database, city, "developer")
    everyone, fifth_grade, one_class, elsewhere = (listed_app(database, vendor_id) for _ in range(4))
    class_5_1 = add_class(database, city.school_a1, grade="05", name="五年级1班")
    class_5_2 = add_class(
        database, city.school_a1, grade="05", name="五年级2班", teacher_ids=[city.people["a1_teacher"].id]
    )
    class_3_1 = add_class(
        database, city.school_a1, grade="03", name="三年级1班", teacher_ids=[city.people["a1_teacher2"].id]
    )
    all_apps = await install(client, city, city.school_a1, "a1_admin", {"app_id": everyone.app_id})
    grade_app = await install(
        client, city, city.school_a1, "a1_admin", {"app_id": fifth_grade.app_id, "grades": ["05"]}
    )
    class_app = await install(
        client, city, city.school_a1, "a1_admin", {"app_id": one_class.app_id, "class_ids": [class_5_2]}
    )
    await install(client, city, city.school_b1, "b1_admin", {"app_id": elsewhere.app_id})

    pupils = {
        key: city.add_person(key, kind="student", name=name, org_id=city.school_a1, role="student").id
        for key, name in (("pupil_5_1", "陈小雨"), ("pupil_5_2", "林小舟"), ("pupil_3_1", "黄小山"))
    }
    place_pupil(database, pupils["pupil_5_1"], city.school_a1, class_5_1)
    place_pupil(database, pupils["pupil_5_2"], city.school_a1, class_5_2)
    place_pupil(database, pupils["pupil_3_1"], city.school_a1, class_3_1)
    city.add_person("pupil_unplaced", kind="student", name="吴小河", org_id=city.school_a1, role="student")

    async def seen(key: str) -> list[str]:
        response = await client.get("/me/apps", headers=city.token(key, "apps.read"))
        assert response.status_code == 200, response.text
        return [item["installation_id"] for item in response.json()]

    # Teachers see what is opened to a class they teach; the school's administrator sees every installation.
    assert await seen("a1_teacher") == [all_apps, grade_app, class_app]
    assert await seen("a1_teacher2") == [all_apps]
    assert await seen("a1_admin") == [all_apps, grade_app, class_app]
    assert await seen("pupil_5_1") == [all_apps, grade_app]
    assert await seen("pupil_5_2") == [all_apps, grade_app, class_app]
    assert await seen("pupil_3_1") == [all_apps]
    assert await seen("pupil_unplaced") == [all_apps]
    assert all_apps not in await seen("b1_teacher")
    assert len(await seen("b1_teacher")) == 1
    assert await seen("developer") == []

    response = await client.get("/me/apps", headers=city.token("a1_teacher", "apps.read"))
    first = response.json()[0]
    assert first["name"] == "作业小助手" and first["launch_type"] == "oidc" and first["school_id"] == city.school_a1
