"""LTI Names and Role Provisioning: a tool reads the roster of a class at a school that installed it — pupils
and teachers by pseudonym, names only as the school granted, pages linked, pupils' reads audited."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from sqlmodel import select

from appstore.config import AppStoreSettings
from appstore.subjects import user_pseudonym
from appstore.testing_launch import (
    ToolKeys,
    add_class,
    add_pupil,
    install,
    listed_app,
    lti_launch,
    manifest,
    service_token,
    tool_keys,
)
from kit.audit import AuditEntry
from kit.testing import TestCity

__all__ = ["tool_keys"]

MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


def members_path(deployment_id: str, class_id: str) -> str:
    return f"/lti/nrps/{deployment_id}/contexts/{class_id}/memberships"


def school_class(city: TestCity) -> str:
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher", "a1_teacher2"))
    for key, name in (("p1", "刘小明"), ("p2", "陈小雨"), ("p3", "王一一")):
        add_pupil(city, key, name, city.school_a1, class_id)
    return class_id


async def test_anonymous_and_bogus_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, tool_keys: tuple[ToolKeys, str]
) -> None:
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=tool_keys[1])))
    installation = install(app.state.database, city, quiz, city.school_a1)
    path = members_path(installation, school_class(city))

    anonymous = await client.get(path)
    bogus = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
    platform_token = await client.get(path, headers=city.token("a1_admin", "apps.read"))

    for response in (anonymous, bogus, platform_token):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


async def test_the_class_roster_by_pseudonym_with_names_only_as_granted(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = listed_app(
        app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url), scopes=("openid", "roster.read"))
    )
    installation = install(app.state.database, city, quiz, city.school_a1, scopes="openid roster.read")
    class_id = school_class(city)
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    response = await client.get(members_path(installation, class_id), headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["context"] == {"id": class_id, "label": "五年级2班", "title": "春晓第一小学五年级2班"}
    salt = settings.pairwise_salt.get_secret_value()
    teachers = [member for member in body["members"] if INSTRUCTOR in member["roles"]]
    pupils = [member for member in body["members"] if LEARNER in member["roles"]]
    assert {member["user_id"] for member in teachers} == {
        user_pseudonym(salt, quiz.id, city.people[key].id) for key in ("a1_teacher", "a1_teacher2")
    }
    assert {member["name"] for member in teachers} == {"王老师", "李老师"}  # roster.read names teachers
    assert {member["user_id"] for member in pupils} == {
        user_pseudonym(salt, quiz.id, city.people[key].id) for key in ("p1", "p2", "p3")
    }
    assert all("name" not in member for member in pupils)  # not roster.students.read: no pupils' names
    assert all(member["status"] == "Active" for member in body["members"])
    assert not any(city.people[key].id in response.text for key in ("p1", "p2", "p3", "a1_teacher"))
    with app.state.database.session() as session:
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "lti.nrps.pupils_read")).all()
    assert entry.actor_client == quiz.client_id and entry.target_id == class_id and entry.org_id == city.school_a1


async def test_pupils_names_need_roster_students_read(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    scopes = ("openid", "roster.read", "roster.students.read")
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url), scopes=scopes))
    installation = install(app.state.database, city, quiz, city.school_a1, scopes=" ".join(scopes))
    class_id = school_class(city)
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    response = await client.get(members_path(installation, class_id), params={"role": "Learner"}, headers=headers)

    assert response.status_code == 200
    assert sorted(member["name"] for member in response.json()["members"]) == ["刘小明", "王一一", "陈小雨"]
    assert all(member["roles"] == [LEARNER] for member in response.json()["members"])


async def test_pages_are_linked(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url)))
    installation = install(app.state.database, city, quiz, city.school_a1)
    class_id = school_class(city)
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    seen: list[str] = []
    url: str | None = members_path(installation, class_id) + "?limit=2"
    pages = 0
    while url:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        seen += [member["user_id"] for member in response.json()["members"]]
        link = re.match(r'<([^>]+)>; rel="next"', response.headers.get("link", ""))
        url = link.group(1).removeprefix(f"{settings.platform_base_url}/api/appstore") if link else None
        pages += 1

    assert pages == 3 and len(seen) == len(set(seen)) == 5


async def test_another_schools_class_is_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url)))
    a1_installation = install(app.state.database, city, quiz, city.school_a1)
    b1_class = add_class(city, city.school_b1, "三年级1班", teachers=("b1_teacher",))
    add_pupil(city, "b1_pupil", "赵小花", city.school_b1, b1_class)
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    response = await client.get(members_path(a1_installation, b1_class), headers=headers)

    assert response.status_code == 404
    assert "赵小花" not in response.text


async def test_another_apps_deployment_and_closed_classes_are_refused(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url)))
    other = listed_app(app.state.database, manifest(launch=lti_launch()))
    class_id = school_class(city)
    other_installation = install(app.state.database, city, other, city.school_a1)
    restricted = install(app.state.database, city, quiz, city.school_a1, grades=["01"])
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    foreign = await client.get(members_path(other_installation, class_id), headers=headers)
    closed = await client.get(members_path(restricted, class_id), headers=headers)

    assert foreign.status_code == 404 and closed.status_code == 404


async def test_bad_input_is_named(
    app: FastAPI, client: httpx.AsyncClient, city: TestCity, settings: AppStoreSettings, tool_keys: tuple[ToolKeys, str]
) -> None:
    keys, jwks_url = tool_keys
    quiz = listed_app(app.state.database, manifest(launch=lti_launch(jwks_url=jwks_url)))
    installation = install(app.state.database, city, quiz, city.school_a1)
    headers = await service_token(client, settings, keys.published[0], quiz.client_id)

    response = await client.get(members_path(installation, school_class(city)), params={"limit": 0}, headers=headers)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.limit"
