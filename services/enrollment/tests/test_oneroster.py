"""The OneRoster 1.2 rostering endpoints as a standard OneRoster client and the schools' callers see them.

Responses are checked against JSON Schemas written here from the OneRoster 1.2 Rostering Service REST binding
(the JSON objects of its data model, and imsx_StatusInfo for failures), independently of the service's own
pydantic models: that is what a client generated from the standard would accept. No OneRoster client on PyPI
works here without its vendor's service (they are bound to one provider's hosts and token endpoint), so the
schemas stand in for one.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator

from contracts.events.identity import PersonCreatedV1
from enrollment.testing import City, feed

from .roster_factories import STUDENTS_A1, Roster, build_roster

BASE = "/ims/oneroster/rostering/v1p2"

# ------------------------------------------------------------------------ the standard's JSON shapes

_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_GUID_REF = {
    "type": "object",
    "required": ["href", "sourcedId", "type"],
    "properties": {
        "href": {"type": "string", "pattern": r"^https?://"},
        "sourcedId": {"type": "string", "minLength": 1},
        "type": {
            "enum": [
                "academicSession",
                "category",
                "class",
                "course",
                "demographics",
                "enrollment",
                "gradingPeriod",
                "lineItem",
                "org",
                "resource",
                "result",
                "scoreScale",
                "student",
                "teacher",
                "term",
                "user",
            ]
        },
    },
    "additionalProperties": False,
}
_BASE_PROPERTIES: dict[str, Any] = {
    "sourcedId": {"type": "string", "minLength": 1},
    "status": {"enum": ["active", "tobedeleted"]},
    "dateLastModified": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"},
    "metadata": {"type": "object"},
}
_BASE_REQUIRED = ["sourcedId", "status", "dateLastModified"]


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": _BASE_REQUIRED + required,
        "properties": {**_BASE_PROPERTIES, **properties},
        "additionalProperties": False,
    }


_STRINGS = {"type": "array", "items": {"type": "string"}}
_REFS = {"type": "array", "items": _GUID_REF}
ORG = _object(
    ["name", "type"],
    name={"type": "string"},
    type={"enum": ["department", "school", "district", "local", "state", "national"]},
    identifier={"type": "string"},
    parent=_GUID_REF,
    children=_REFS,
)
ACADEMIC_SESSION = _object(
    ["title", "startDate", "endDate", "type", "schoolYear", "org"],
    title={"type": "string"},
    startDate=_DATE,
    endDate=_DATE,
    type={"enum": ["gradingPeriod", "semester", "schoolYear", "term"]},
    parent=_GUID_REF,
    children=_REFS,
    schoolYear={"type": "string", "pattern": r"^\d{4}$"},
    org=_GUID_REF,
)
COURSE = _object(
    ["title", "org"],
    title={"type": "string"},
    schoolYear=_GUID_REF,
    courseCode={"type": "string"},
    grades=_STRINGS,
    subjects=_STRINGS,
    org=_GUID_REF,
    subjectCodes=_STRINGS,
    resources=_REFS,
)
CLASS = _object(
    ["title", "classType", "course", "school", "terms"],
    title={"type": "string"},
    classCode={"type": "string"},
    classType={"enum": ["homeroom", "scheduled"]},
    location={"type": "string"},
    grades=_STRINGS,
    subjects=_STRINGS,
    course=_GUID_REF,
    school=_GUID_REF,
    terms={**_REFS, "minItems": 1},
    subjectCodes=_STRINGS,
    periods=_STRINGS,
    resources=_REFS,
)
_ROLE = {
    "type": "object",
    "required": ["roleType", "role", "org"],
    "properties": {
        "roleType": {"enum": ["primary", "secondary"]},
        "role": {
            "enum": [
                "aide",
                "counselor",
                "districtAdministrator",
                "guardian",
                "parent",
                "principal",
                "proctor",
                "relative",
                "siteAdministrator",
                "student",
                "systemAdministrator",
                "teacher",
            ]
        },
        "org": _GUID_REF,
        "userProfile": {"type": "string"},
        "beginDate": _DATE,
        "endDate": _DATE,
    },
    "additionalProperties": False,
}
USER = _object(
    ["enabledUser", "givenName", "familyName", "roles"],
    userMasterIdentifier={"type": "string"},
    username={"type": "string"},
    userIds={"type": "array"},
    enabledUser={"type": "boolean"},
    givenName={"type": "string"},
    familyName={"type": "string"},
    middleName={"type": "string"},
    preferredFirstName={"type": "string"},
    preferredMiddleName={"type": "string"},
    preferredLastName={"type": "string"},
    pronouns={"type": "string"},
    roles={"type": "array", "items": _ROLE, "minItems": 1},
    userProfiles={"type": "array"},
    primaryOrg=_GUID_REF,
    identifier={"type": "string"},
    email={"type": "string"},
    sms={"type": "string"},
    phone={"type": "string"},
    agents=_REFS,
    grades=_STRINGS,
    password={"type": "string"},
    resources=_REFS,
)
ENROLLMENT = _object(
    ["user", "class", "school", "role"],
    user=_GUID_REF,
    **{"class": _GUID_REF},
    school=_GUID_REF,
    role={"enum": ["administrator", "proctor", "student", "teacher"]},
    primary={"type": "boolean"},
    beginDate=_DATE,
    endDate=_DATE,
)
DEMOGRAPHICS = _object(
    [],
    birthDate=_DATE,
    sex={"enum": ["male", "female", "other", "unspecified"]},
    americanIndianOrAlaskaNative={"type": "boolean"},
    asian={"type": "boolean"},
    blackOrAfricanAmerican={"type": "boolean"},
    nativeHawaiianOrOtherPacificIslander={"type": "boolean"},
    white={"type": "boolean"},
    demographicRaceTwoOrMoreRaces={"type": "boolean"},
    hispanicOrLatinoEthnicity={"type": "boolean"},
    countryOfBirthCode={"type": "string"},
    stateOfBirthAbbreviation={"type": "string"},
    cityOfBirth={"type": "string"},
    publicSchoolResidenceStatus={"type": "string"},
)
STATUS_INFO = {
    "type": "object",
    "required": ["imsx_codeMajor", "imsx_severity", "imsx_CodeMinor"],
    "properties": {
        "imsx_codeMajor": {"enum": ["success", "processing", "failure", "unsupported"]},
        "imsx_severity": {"enum": ["status", "warning", "error"]},
        "imsx_description": {"type": "string"},
        "imsx_CodeMinor": {
            "type": "object",
            "required": ["imsx_codeMinorField"],
            "properties": {
                "imsx_codeMinorField": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["imsx_codeMinorFieldName", "imsx_codeMinorFieldValue"],
                        "properties": {
                            "imsx_codeMinorFieldName": {"type": "string"},
                            "imsx_codeMinorFieldValue": {
                                "enum": [
                                    "fullsuccess",
                                    "invalid_filter_field",
                                    "invalid_selection_field",
                                    "invalid_sort_field",
                                    "invaliddata",
                                    "unauthorisedrequest",
                                    "forbidden",
                                    "unknownobject",
                                    "server_busy",
                                    "internal_server_error",
                                    "deletefailure",
                                    "unsupported",
                                ]
                            },
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
SCHEMAS = {
    "orgs": ORG,
    "academicSessions": ACADEMIC_SESSION,
    "courses": COURSE,
    "classes": CLASS,
    "users": USER,
    "enrollments": ENROLLMENT,
    "demographics": DEMOGRAPHICS,
}
SINGULAR = {
    "org": ORG,
    "academicSession": ACADEMIC_SESSION,
    "course": COURSE,
    "class": CLASS,
    "user": USER,
    "enrollment": ENROLLMENT,
    "demographics": DEMOGRAPHICS,
}


def check(schema: dict[str, Any], document: Any) -> None:
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(error.absolute_path)}: {error.message}" for error in errors[:5])


def collection(response: httpx.Response, key: str) -> list[dict[str, Any]]:
    """The records of a collection answer, checked against the standard's shapes."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [key]
    check({"type": "array", "items": SCHEMAS[key]}, body[key])
    assert int(response.headers["X-Total-Count"]) >= len(body[key])
    return list(body[key])


def single(response: httpx.Response, key: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [key]
    check(SINGULAR[key], body[key])
    return dict(body[key])


def failure(response: httpx.Response, status: int, code_minor: str) -> str:
    """A failure in OneRoster's format with this status and codeMinor; returns its description."""
    assert response.status_code == status, response.text
    body = response.json()
    check(STATUS_INFO, body)
    assert body["imsx_codeMajor"] == "failure"
    assert body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == code_minor
    return str(body["imsx_description"])


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {record["sourcedId"] for record in records}


def names(records: list[dict[str, Any]]) -> set[str]:
    return {record["familyName"] + record["givenName"] for record in records}


@pytest.fixture
def roster(city: City) -> Roster:
    return build_roster(city)


# --------------------------------------------------------------------------------------- who calls


@pytest.mark.parametrize(
    "path",
    [
        "/users",
        "/students",
        "/enrollments",
        "/demographics",
        "/classes",
        "/orgs",
        "/students/some-id",
        "/schools/some-id/students",
        "/classes/some-id/students",
    ],
)
async def test_anonymous_caller_gets_a_oneroster_401(client: httpx.AsyncClient, path: str) -> None:
    failure(await client.get(BASE + path), 401, "unauthorisedrequest")
    bad = await client.get(BASE + path, headers={"Authorization": "Bearer not-a-token"})
    failure(bad, 401, "unauthorisedrequest")


async def test_school_admin_reads_the_students_of_their_school(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    response = await client.get(BASE + "/students", headers=city.token("a1_admin"))
    students = collection(response, "users")
    assert names(students) == {name for name, _, _ in STUDENTS_A1.values()}
    assert response.headers["X-Total-Count"] == "4"
    by_id = {record["sourcedId"]: record for record in students}
    ouyang = by_id[roster.students["ouyang"]]
    assert (ouyang["familyName"], ouyang["givenName"]) == ("欧阳", "子轩")
    assert ouyang["identifier"] == STUDENTS_A1["ouyang"][2]
    assert ouyang["grades"] == ["01"]
    assert ouyang["roles"] == [
        {
            "roleType": "primary",
            "role": "student",
            "org": {
                "href": f"http://enrollment.test{BASE}/orgs/{city.school_a1}",
                "sourcedId": city.school_a1,
                "type": "org",
            },
        }
    ]
    assert all("birthDate" not in record for record in students)


async def test_school_admin_cannot_reach_another_schools_rosters(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("a1_admin")
    failure(await client.get(f"{BASE}/schools/{city.school_b1}/students", headers=headers), 403, "forbidden")
    failure(await client.get(f"{BASE}/schools/{city.school_b1}/classes", headers=headers), 403, "forbidden")
    chen = roster.students["chen"]
    for path in (
        f"/students/{chen}",
        f"/users/{chen}",
        f"/demographics/{chen}",
        f"/students/{chen}/classes",
        f"/classes/{roster.classes['b1_1']}",
        f"/classes/{roster.classes['b1_1']}/students",
        f"/enrollments/{roster.memberships['chen']}",
        f"/schools/{city.school_b1}",
    ):
        failure(await client.get(BASE + path, headers=headers), 404, "unknownobject")
    users = collection(await client.get(BASE + "/users", params={"limit": "1000"}, headers=headers), "users")
    assert chen not in ids(users)
    enrollments = collection(await client.get(BASE + "/enrollments", headers=headers), "enrollments")
    assert {record["school"]["sourcedId"] for record in enrollments} == {city.school_a1}
    orgs = collection(await client.get(BASE + "/orgs", headers=headers), "orgs")
    assert ids(orgs) == {city.city_id, city.district_a, city.district_b, city.school_a1}


async def test_students_and_their_data_need_the_students_scope(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("a1_admin", scopes="roster.read")
    for path in (
        "/students",
        "/demographics",
        f"/classes/{roster.classes['a1_1']}/students",
        f"/students/{roster.students['wang']}",
        f"/schools/{city.school_a1}/students",
    ):
        assert "roster.students.read" in failure(await client.get(BASE + path, headers=headers), 403, "forbidden")
    users = collection(await client.get(BASE + "/users", headers=headers), "users")
    assert names(users) == {"王老师", "李老师", "春晓一小管理员"}
    assert all(role["role"] != "student" for user in users for role in user["roles"])
    enrollments = collection(await client.get(BASE + "/enrollments", headers=headers), "enrollments")
    assert {record["role"] for record in enrollments} == {"teacher"}
    failure(await client.get(f"{BASE}/users/{roster.students['wang']}", headers=headers), 404, "unknownobject")
    only_students = city.token("a1_admin", scopes="roster.students.read")
    assert "'roster.read'" in failure(await client.get(BASE + "/students", headers=only_students), 403, "forbidden")


async def test_an_app_sees_only_the_schools_that_installed_it(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.app_token(scopes="roster.read roster.students.read", schools=[city.school_b1])
    students = collection(await client.get(BASE + "/students", headers=headers), "users")
    assert names(students) == {"陈雨桐", "刘浩然"}
    classes = collection(await client.get(BASE + "/classes", headers=headers), "classes")
    assert ids(classes) == {roster.classes["b1_1"]}
    orgs = collection(await client.get(BASE + "/orgs", headers=headers), "orgs")
    assert city.school_a1 not in ids(orgs) and city.school_b1 in ids(orgs)
    failure(await client.get(f"{BASE}/schools/{city.school_a1}/students", headers=headers), 403, "forbidden")
    nowhere = city.app_token(scopes="roster.read roster.students.read", schools=[])
    assert collection(await client.get(BASE + "/students", headers=nowhere), "users") == []
    without_scope = city.app_token(scopes="roster.read", schools=[city.school_b1])
    failure(await client.get(BASE + "/students", headers=without_scope), 403, "forbidden")


async def test_a_person_without_a_roster_role_is_refused(client: httpx.AsyncClient, city: City) -> None:
    city.add_person("parent", kind="guardian", name="王妈妈", org_id=city.school_a1, role="parent")
    for path in ("/students", "/classes", "/orgs"):
        failure(await client.get(BASE + path, headers=city.token("parent")), 403, "forbidden")


# ------------------------------------------------------------------------------- shapes and content


async def test_every_collection_has_the_standards_shape(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("city_admin")
    for path, key in (
        ("/orgs", "orgs"),
        ("/schools", "orgs"),
        ("/academicSessions", "academicSessions"),
        ("/terms", "academicSessions"),
        ("/courses", "courses"),
        ("/classes", "classes"),
        ("/users", "users"),
        ("/students", "users"),
        ("/teachers", "users"),
        ("/enrollments", "enrollments"),
        ("/demographics", "demographics"),
    ):
        assert collection(await client.get(BASE + path, headers=headers), key), path
    orgs = {
        record["sourcedId"]: record for record in collection(await client.get(BASE + "/orgs", headers=headers), "orgs")
    }
    assert orgs[city.city_id]["type"] == "local" and orgs[city.school_a1]["type"] == "school"
    assert ids(orgs[city.district_a]["children"]) == {city.school_a1, city.school_a2}
    assert orgs[city.school_a1]["parent"]["sourcedId"] == city.district_a
    sessions = collection(await client.get(BASE + "/academicSessions", headers=headers), "academicSessions")
    year = next(item for item in sessions if item["sourcedId"] == roster.school_year)
    assert (year["type"], year["schoolYear"], year["startDate"]) == ("schoolYear", "2027", "2026-09-01")
    assert len(year["children"]) == 2
    terms = collection(await client.get(BASE + "/terms", headers=headers), "academicSessions")
    assert {term["type"] for term in terms} == {"term"} and len(terms) == 4
    school_class = single(await client.get(f"{BASE}/classes/{roster.classes['a1_maths']}", headers=headers), "class")
    assert (school_class["title"], school_class["classType"], school_class["subjects"]) == (
        "一年级数学A组",
        "scheduled",
        ["数学"],
    )
    assert school_class["terms"][0]["sourcedId"] == roster.school_year
    assert school_class["course"]["sourcedId"] == roster.courses["a1_maths"]
    demographics = collection(await client.get(BASE + "/demographics", headers=headers), "demographics")
    assert {record["sex"] for record in demographics} == {"male", "female"}
    assert all(set(record) <= {"sourcedId", "status", "dateLastModified", "sex"} for record in demographics)


async def test_single_objects_and_unknown_sourced_ids(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")
    teacher = city.people["a1_teacher"].id
    for path, key in (
        (f"/orgs/{city.school_a1}", "org"),
        (f"/schools/{city.school_a1}", "org"),
        (f"/academicSessions/{roster.school_year}", "academicSession"),
        (f"/courses/{roster.courses['a1_homeroom']}", "course"),
        (f"/classes/{roster.classes['a1_1']}", "class"),
        (f"/users/{teacher}", "user"),
        (f"/teachers/{teacher}", "user"),
        (f"/students/{roster.students['li']}", "user"),
        (f"/enrollments/{roster.assignments['a1_head']}", "enrollment"),
        (f"/demographics/{roster.students['li']}", "demographics"),
    ):
        assert single(await client.get(BASE + path, headers=headers), key)["sourcedId"] == path.rsplit("/", 1)[1]
    for path in (
        "/users/no-such-id",
        f"/students/{teacher}",
        f"/teachers/{roster.students['li']}",
        f"/schools/{city.district_a}",
        f"/terms/{roster.school_year}",
    ):
        failure(await client.get(BASE + path, headers=headers), 404, "unknownobject")


async def test_enrollments_say_who_teaches_and_who_left(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")
    records = collection(await client.get(BASE + "/enrollments", headers=headers), "enrollments")
    by_id = {record["sourcedId"]: record for record in records}
    head = by_id[roster.assignments["a1_head"]]
    assert (head["role"], head["primary"], head["user"]["sourcedId"]) == ("teacher", True, city.people["a1_teacher"].id)
    assert by_id[roster.assignments["a1_maths"]]["primary"] is False
    left = by_id[roster.memberships["li_before"]]
    assert (left["status"], left["beginDate"], left["endDate"]) == ("tobedeleted", "2026-08-25", "2026-08-31")
    current = by_id[roster.memberships["li"]]
    assert current["status"] == "active" and "endDate" not in current
    teachers_only = collection(
        await client.get(BASE + "/enrollments", params={"filter": "role='teacher'"}, headers=headers), "enrollments"
    )
    assert ids(teachers_only) == {roster.assignments["a1_head"], roster.assignments["a1_maths"]}
    of_class = collection(
        await client.get(
            BASE + "/enrollments",
            headers=headers,
            params={"filter": f"class.sourcedId='{roster.classes['a1_2']}' AND status='active'"},
        ),
        "enrollments",
    )
    assert ids(of_class) == {roster.memberships["zhao"]}


async def test_class_and_school_rosters(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")
    a1, class_1, class_2 = city.school_a1, roster.classes["a1_1"], roster.classes["a1_2"]

    async def listed(path: str, key: str) -> list[dict[str, Any]]:
        return collection(await client.get(BASE + path, headers=headers), key)

    assert names(await listed(f"/classes/{class_1}/students", "users")) == {"王小明", "欧阳子轩", "李思涵"}
    assert names(await listed(f"/classes/{class_2}/students", "users")) == {"赵一"}
    assert names(await listed(f"/classes/{class_1}/teachers", "users")) == {"王老师", "李老师"}
    assert names(await listed(f"/schools/{a1}/classes/{class_1}/students", "users")) == {"王小明", "欧阳子轩", "李思涵"}
    assert names(await listed(f"/schools/{a1}/classes/{class_1}/teachers", "users")) == {"王老师", "李老师"}
    assert len(await listed(f"/schools/{a1}/classes/{class_1}/enrollments", "enrollments")) == 5
    assert len(await listed(f"/schools/{a1}/enrollments", "enrollments")) == 7
    assert names(await listed(f"/schools/{a1}/teachers", "users")) == {"王老师", "李老师"}
    assert len(await listed(f"/schools/{a1}/students", "users")) == 4
    assert ids(await listed(f"/schools/{a1}/classes", "classes")) == {class_1, class_2, roster.classes["a1_maths"]}
    assert ids(await listed(f"/schools/{a1}/courses", "courses")) == {
        roster.courses["a1_homeroom"],
        roster.courses["a1_maths"],
    }
    assert len(await listed(f"/schools/{a1}/terms", "academicSessions")) == 2
    assert ids(await listed(f"/students/{roster.students['li']}/classes", "classes")) == {class_1}
    assert ids(await listed(f"/teachers/{city.people['a1_teacher2'].id}/classes", "classes")) == {class_1}
    assert ids(await listed(f"/users/{city.people['a1_teacher'].id}/classes", "classes")) == {class_1}
    assert ids(await listed(f"/courses/{roster.courses['a1_maths']}/classes", "classes")) == {
        roster.classes["a1_maths"]
    }
    term = single(
        await client.get(f"{BASE}/academicSessions/{roster.school_year}", headers=headers), "academicSession"
    )["children"][0]["sourcedId"]
    assert ids(await listed(f"/terms/{term}/classes", "classes")) == {class_1, class_2, roster.classes["a1_maths"]}
    failure(
        await client.get(f"{BASE}/schools/{a1}/classes/{roster.classes['b1_1']}/students", headers=headers),
        404,
        "unknownobject",
    )


# ---------------------------------------------------------------------------------- query parameters


async def test_pages_follow_the_link_header_to_the_end(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("city_admin")
    everyone = collection(await client.get(BASE + "/users", headers=headers), "users")
    total = len(everyone)
    assert total >= 10
    seen: list[str] = []
    url: str | None = BASE + "/users?limit=3&filter=status%3D%27active%27"
    pages = 0
    while url:
        response = await client.get(url, headers=headers)
        page = collection(response, "users")
        assert response.headers["X-Total-Count"] == str(total)
        seen += [record["sourcedId"] for record in page]
        links = response.links
        assert links["first"]["url"].endswith("limit=3&offset=0")
        assert "filter=status%3D%27active%27" in links["last"]["url"]
        if pages:
            assert "prev" in links
        url = links.get("next", {}).get("url")
        pages += 1
    assert pages == (total + 2) // 3
    assert seen == [record["sourcedId"] for record in everyone]


async def test_filters_select_in_the_database(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")

    async def matching(filter_text: str, path: str = "/students") -> set[str]:
        return names(
            collection(await client.get(BASE + path, params={"filter": filter_text}, headers=headers), "users")
        )

    assert await matching("familyName='欧阳'") == {"欧阳子轩"}
    assert await matching("givenName~'思'") == {"李思涵"}
    assert await matching("familyName='王' OR familyName='李'") == {"王小明", "李思涵"}
    assert await matching(f"identifier='{STUDENTS_A1['zhao'][2]}' AND status='active'") == {"赵一"}
    assert await matching("dateLastModified>'2000-01-01T00:00:00Z'") == {name for name, _, _ in STUDENTS_A1.values()}
    assert await matching("dateLastModified>='2999-01-01T00:00:00.000Z'") == set()
    assert await matching("enabledUser='false'") == set()
    assert await matching("role='teacher'", "/users") == {"王老师", "李老师"}
    assert await matching("role!='student' AND role!='teacher'", "/users") == {"春晓一小管理员"}
    assert await matching(f"primaryOrg.sourcedId='{city.school_b1}'") == set()


@pytest.mark.parametrize(
    "filter_text",
    [
        "nickname='x'",
        "familyName='王' AND givenName='x' OR status='active'",
        "dateLastModified>'yesterday'",
        "familyName=王",
        "familyName='王",
        "status>'active'",
        "enabledUser='yes'",
        "familyName='王' AND",
        "role>'teacher'",
        "dateLastModified~'2026'",
    ],
)
async def test_a_bad_filter_is_an_invalid_filter_field(client: httpx.AsyncClient, city: City, filter_text: str) -> None:
    response = await client.get(BASE + "/students", params={"filter": filter_text}, headers=city.token("a1_admin"))
    failure(response, 400, "invalid_filter_field")


async def test_sorting_and_its_fallback(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")

    async def order(**params: str) -> list[str]:
        records = collection(await client.get(BASE + "/students", params=params, headers=headers), "users")
        return [record["familyName"] + record["givenName"] for record in records]

    assert await order(sort="familyName") == sorted(await order(sort="familyName"), key=lambda name: name)
    assert await order(sort="familyName", orderBy="desc") == list(reversed(await order(sort="familyName")))
    assert await order(sort="sourcedId", orderBy="desc") == list(reversed(await order()))
    by_identifier = await order(sort="identifier")
    assert by_identifier == [name for name, _, _ in sorted(STUDENTS_A1.values(), key=lambda student: student[2])]
    # The binding: a field that cannot be sorted on leaves the provider's default order.
    assert await order(sort="nickname") == await order()
    failure(await client.get(BASE + "/students", params={"orderBy": "sideways"}, headers=headers), 400, "invaliddata")


async def test_field_selection(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    headers = city.token("a1_admin")
    response = await client.get(BASE + "/students", params={"fields": "sourcedId,familyName"}, headers=headers)
    assert response.status_code == 200
    assert all(set(record) == {"sourcedId", "familyName"} for record in response.json()["users"])
    # The binding: an unknown field in the selection returns all the data of each record.
    everything = collection(
        await client.get(BASE + "/students", params={"fields": "sourcedId,nickname"}, headers=headers), "users"
    )
    assert all("roles" in record and "givenName" in record for record in everything)
    one = await client.get(f"{BASE}/classes/{roster.classes['a1_1']}", params={"fields": "title"}, headers=headers)
    assert one.json() == {"class": {"title": "一年级(1)班"}}
    failure(
        await client.get(BASE + "/students", params={"fields": "sourcedId,,title"}, headers=headers),
        400,
        "invalid_selection_field",
    )


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"offset": "-1"}, {"offset": "1.5"}],
)
async def test_bad_paging_is_invalid_data(client: httpx.AsyncClient, city: City, params: dict[str, str]) -> None:
    response = await client.get(BASE + "/students", params=params, headers=city.token("a1_admin"))
    failure(response, 400, "invaliddata")


async def test_reads_of_students_data_are_logged(
    client: httpx.AsyncClient, city: City, roster: Roster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="enrollment.access")
    headers = {**city.token("a1_admin"), "X-Request-ID": "req-roster-1"}
    await client.get(BASE + "/classes", headers=headers)
    assert not [record for record in caplog.records if record.name == "enrollment.access"]
    await client.get(f"{BASE}/classes/{roster.classes['a1_1']}/students", headers=headers)
    await client.get(BASE + "/demographics", params={"limit": "2"}, headers=headers)
    noted = [record.__dict__ for record in caplog.records if record.name == "enrollment.access"]
    assert [(entry["collection"], entry["records"]) for entry in noted] == [
        (f"{BASE}/classes/{roster.classes['a1_1']}/students", 3),
        (f"{BASE}/demographics", 2),
    ]
    assert {entry["subject"] for entry in noted} == {city.people["a1_admin"].id}
    assert all(entry["client_id"] and entry["request_id"] for entry in noted)
    app = city.app_token(scopes="roster.read roster.students.read", schools=[city.school_b1], app_id="app-attendance")
    await client.get(BASE + "/students", headers=app)
    last = [record for record in caplog.records if record.name == "enrollment.access"][-1]
    assert (last.__dict__["app_id"], last.__dict__["records"]) == ("app-attendance", 2)


async def test_deep_pages_stay_exact_when_the_roster_changes_between_them(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    headers = city.token("city_admin")

    async def page(offset: int) -> list[str]:
        response = await client.get(BASE + "/users", params={"limit": "2", "offset": str(offset)}, headers=headers)
        return [record["sourcedId"] for record in collection(response, "users")]

    walked = [await page(offset) for offset in (0, 2, 4, 6)]
    assert walked[2] == await page(4)  # resumed after the remembered boundary, same rows as OFFSET
    everyone = [
        record["sourcedId"] for record in collection(await client.get(BASE + "/users", headers=headers), "users")
    ]
    assert [sourced_id for chunk in walked for sourced_id in chunk] == everyone[:8]
    # A new pupil whose sourcedId sorts first shifts every later page by one.
    newcomer = "00000000-0000-4000-8000-000000000000"
    feed(city.database, PersonCreatedV1(person_id=newcomer, kind="student", name="钱多多", org_id=city.school_a1))
    everyone = [newcomer, *everyone]
    assert await page(4) == everyone[4:6]
    response = await client.get(BASE + "/users", params={"limit": "2", "offset": "4"}, headers=headers)
    assert response.headers["X-Total-Count"] == str(len(everyone))


# ------------------------------------------------------------------------------ every route, four ways


def route_templates() -> list[str]:
    from enrollment.oneroster.router import router

    return [route.path for route in router.routes if isinstance(route, APIRoute)]


def fill(template: str, values: dict[str, str], objects: dict[str, str]) -> str:
    """A route's path with its parameters set: ``{sourced_id}`` by the collection it follows."""
    collection_name = template.removeprefix(BASE + "/").split("/")[0]
    path = template.replace("{sourced_id}", objects[collection_name])
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


def own_school(city: City, roster: Roster) -> tuple[dict[str, str], dict[str, str]]:
    values = {
        "school_id": city.school_a1,
        "class_id": roster.classes["a1_1"],
        "course_id": roster.courses["a1_maths"],
        "term_id": roster.term,
        "user_id": roster.students["li"],
        "student_id": roster.students["li"],
        "teacher_id": city.people["a1_teacher"].id,
    }
    objects = {
        "orgs": city.school_a1,
        "schools": city.school_a1,
        "academicSessions": roster.school_year,
        "terms": roster.term,
        "courses": roster.courses["a1_maths"],
        "classes": roster.classes["a1_1"],
        "users": roster.students["li"],
        "students": roster.students["li"],
        "teachers": city.people["a1_teacher"].id,
        "enrollments": roster.memberships["li"],
        "demographics": roster.students["li"],
    }
    return values, objects


def other_school(city: City, roster: Roster) -> tuple[dict[str, str], dict[str, str]]:
    chen = roster.students["chen"]
    values = {
        "school_id": city.school_b1,
        "class_id": roster.classes["b1_1"],
        "course_id": roster.courses["b1_homeroom"],
        "term_id": roster.b1_term,
        "user_id": chen,
        "student_id": chen,
        "teacher_id": city.people["b1_teacher"].id,
    }
    objects = {
        "orgs": city.school_b1,
        "schools": city.school_b1,
        "academicSessions": roster.b1_school_year,
        "terms": roster.b1_term,
        "courses": roster.courses["b1_homeroom"],
        "classes": roster.classes["b1_1"],
        "users": chen,
        "students": chen,
        "teachers": city.people["b1_teacher"].id,
        "enrollments": roster.memberships["chen"],
        "demographics": chen,
    }
    return values, objects


def is_collection(template: str) -> bool:
    return not template.endswith("{sourced_id}")


async def test_every_route_answers_its_own_school_in_the_standards_shape(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    values, objects = own_school(city, roster)
    headers = city.token("a1_admin")
    for template in route_templates():
        response = await client.get(fill(template, values, objects), headers=headers)
        assert response.status_code == 200, (template, response.text)
        ((key, body),) = response.json().items()
        if is_collection(template):
            check({"type": "array", "items": SCHEMAS[key], "minItems": 1}, body)
        else:
            check(SINGULAR[key], body)


async def test_every_route_refuses_a_caller_without_a_token(
    client: httpx.AsyncClient, city: City, roster: Roster
) -> None:
    values, objects = own_school(city, roster)
    for template in route_templates():
        failure(await client.get(fill(template, values, objects)), 401, "unauthorisedrequest")


async def test_no_route_gives_another_schools_data(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    values, objects = other_school(city, roster)
    b1_ids = {
        city.school_b1,
        roster.classes["b1_1"],
        roster.courses["b1_homeroom"],
        roster.b1_school_year,
        roster.b1_term,
        roster.students["chen"],
        roster.students["liu"],
        city.people["b1_teacher"].id,
        roster.memberships["chen"],
        roster.memberships["liu"],
        roster.assignments["b1_head"],
    }
    headers = city.token("a1_admin")
    for template in route_templates():
        path = fill(template, values, objects)
        response = await client.get(path, headers=headers)
        if "{" in template:
            assert response.status_code in (403, 404), (template, response.status_code)
            check(STATUS_INFO, response.json())
        else:
            assert response.status_code == 200, (template, response.text)
        # An error may name what was asked for; nothing else of B1's may appear.
        assert not [sourced_id for sourced_id in b1_ids if sourced_id in response.text and sourced_id not in path]


async def test_every_route_refuses_bad_query_parameters(client: httpx.AsyncClient, city: City, roster: Roster) -> None:
    values, objects = own_school(city, roster)
    headers = city.token("a1_admin")
    for template in route_templates():
        path = fill(template, values, objects)
        if is_collection(template):
            failure(
                await client.get(path, params={"filter": "nickname='x'"}, headers=headers), 400, "invalid_filter_field"
            )
            failure(await client.get(path, params={"limit": "-3"}, headers=headers), 400, "invaliddata")
        failure(
            await client.get(path, params={"fields": "sourcedId,"}, headers=headers), 400, "invalid_selection_field"
        )
