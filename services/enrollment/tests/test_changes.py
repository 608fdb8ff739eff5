"""The roster change feed: a client resumes from its cursor and sees every change it may see, once, in order."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from enrollment.testing import City

from .roster_factories import Roster, build_roster, place


@pytest.fixture
def roster(city: City) -> Roster:
    return build_roster(city)


async def read_all(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    """Every change from the start, page by page (checking each page's cursors on the way)."""
    changes: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        response = await client.get("/changes", params={"cursor": cursor, **params}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        cursors = [change["cursor"] for change in page["changes"]]
        assert cursors == sorted(cursors) and all(value > int(cursor) for value in cursors)
        changes += page["changes"]
        if not page["has_more"]:
            assert page["next_cursor"] == (cursors[-1] if cursors else int(cursor))
            return changes
        cursor = str(page["next_cursor"])


async def test_anonymous_caller_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/changes")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_feed_lists_each_change_once_in_order_with_its_oneroster_url(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("city_admin")
    whole = await read_all(client, headers, limit="1000")
    paged = await read_all(client, headers, limit="4")
    assert paged == whole
    assert len({change["cursor"] for change in whole}) == len(whole)
    entries = {(change["entity"], change["sourcedId"]) for change in whole}
    assert ("classes", roster.classes["b1_1"]) in entries
    assert ("users", roster.students["chen"]) in entries
    assert ("enrollments", roster.assignments["a1_head"]) in entries
    ended = next(change for change in whole if change["sourcedId"] == roster.memberships["li_before"])
    assert ended["operation"] == "delete"
    assert all(change["changedAt"].endswith("Z") or "+00:00" in change["changedAt"] for change in whole)
    school_class = next(change for change in whole if change["sourcedId"] == roster.classes["a1_1"])
    assert (
        school_class["href"] == f"http://enrollment.test/ims/oneroster/rostering/v1p2/classes/{roster.classes['a1_1']}"
    )
    fetched = await client.get(school_class["href"].removeprefix("http://enrollment.test"), headers=headers)
    assert fetched.json()["class"]["title"] == "一年级(1)班"


async def test_a_client_resuming_from_its_cursor_gets_only_what_followed(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("a1_admin")
    seen = await read_all(client, headers)
    last = seen[-1]["cursor"]
    quiet = (await client.get("/changes", params={"cursor": str(last)}, headers=headers)).json()
    assert quiet == {"changes": [], "next_cursor": last, "has_more": False}
    membership = place(city.database, roster.classes["a1_maths"], city.school_a1, roster.students["wang"],
                       homeroom=False)  # fmt: skip
    place(city.database, roster.classes["b1_1"], city.school_b1, roster.students["liu"], start=date(2026, 9, 2),
          end=date(2026, 9, 3))  # fmt: skip
    after = (await client.get("/changes", params={"cursor": str(last)}, headers=headers)).json()
    assert [(change["entity"], change["sourcedId"]) for change in after["changes"]] == [("enrollments", membership)]
    assert after["next_cursor"] > last


async def test_the_feed_is_confined_to_the_callers_schools(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    a1 = {change["sourcedId"] for change in await read_all(client, city.token("a1_admin"))}
    assert roster.classes["a1_1"] in a1 and roster.students["wang"] in a1
    assert roster.classes["b1_1"] not in a1 and roster.students["chen"] not in a1
    assert roster.b1_school_year not in a1
    assert {roster.school_year, city.city_id, city.district_b} <= a1  # the city's and districts' are everyone's
    app = city.app_token(scopes="roster.read roster.students.read", schools=[city.school_b1])
    b1 = {change["sourcedId"] for change in await read_all(client, app)}
    assert roster.students["chen"] in b1 and roster.students["wang"] not in b1


async def test_users_and_enrollments_need_the_students_scope(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("a1_admin", scopes="roster.read")
    changes = await read_all(client, headers)
    assert {change["entity"] for change in changes} == {"orgs", "academicSessions", "courses", "classes"}
    response = await client.get("/changes", params={"entities": "classes,users"}, headers=headers)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "roster.students.read"


async def test_entities_narrow_the_feed(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    changes = await read_all(client, city.token("a1_admin"), entities="classes,courses")
    assert {change["entity"] for change in changes} == {"classes", "courses"}
    assert {change["sourcedId"] for change in changes if change["entity"] == "classes"} == {
        roster.classes["a1_1"],
        roster.classes["a1_2"],
        roster.classes["a1_maths"],
    }


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "-1"},
        {"cursor": "abc"},
        {"cursor": "1.5"},
        {"entities": "classes,pupils"},
        {"limit": "0"},
        {"limit": "1001"},
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    client: httpx.AsyncClient, city: City, params: dict[str, str]
) -> None:
    response = await client.get("/changes", params=params, headers=city.token("a1_admin"))
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == list(params)


async def test_a_person_without_a_roster_role_is_refused(client: httpx.AsyncClient, city: City) -> None:
    city.add_person("parent", kind="guardian", name="王妈妈", org_id=city.school_a1, role="parent")
    assert (await client.get("/changes", headers=city.token("parent"))).status_code == 403
    assert (await client.get("/changes", headers=city.token("a1_admin", scopes="org.read"))).status_code == 403
