"""School years and terms, classes, teachers and class membership over time, as school staff and apps see them."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from contracts.events.enrollment import ClassChangedV1, ClassDeletedV1, ClassMembershipChangedV1
from enrollment.academics.models import ClassMembership, ClassTeacher, StudentEnrollment
from enrollment.academics.service import school_today
from enrollment.changes.models import ChangeRecord
from enrollment.testing import City
from kit.outbox import OutboxEvent


# Read at each use, not once at import: the service reads the school day when it acts, and a suite that runs across
# midnight in China must not compare the day it was collected with the day the service is on.
def year_start() -> date:
    return school_today() - timedelta(days=60)


def year_end() -> date:
    return school_today() + timedelta(days=300)


# ------------------------------------------------------------------------------------------ helpers


async def school_year(client: httpx.AsyncClient, city: City, *, title: str = "本学年") -> dict[str, Any]:
    response = await client.post(
        "/academic-sessions",
        json={"org_id": city.city_id, "kind": "school_year", "title": title, "start_date": str(year_start()),
              "end_date": str(year_end())},
        headers=city.token("city_admin"),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_class(
    client: httpx.AsyncClient, city: City, year_id: str, number: int, *, school_id: str | None = None,
    grade: str = "01", **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    school_id = school_id or city.school_a1
    admin = "a1_admin" if school_id == city.school_a1 else "b1_admin"
    response = await client.post(
        f"/schools/{school_id}/classes",
        json={"school_year_id": year_id, "grade": grade, "number": number, **fields},
        headers=city.token(admin),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def enrol(city: City, key: str, *, school_id: str, grade: str | None = "01", sex: str = "female") -> str:
    """A pupil of the directory, actively enrolled at the school in ``grade`` (whatever enrolled them)."""
    student_number = "L" + str(int(hashlib.sha256(key.encode()).hexdigest(), 16))[:18]
    person = city.add_person(
        key, kind="student", name=f"学生{key}", org_id=school_id, sex=sex, student_number=student_number
    )
    with city.database.session() as session:
        existing = session.exec(
            select(StudentEnrollment).where(
                StudentEnrollment.student_id == person.id, StudentEnrollment.status == "active"
            )
        ).first()
        enrolment = existing or StudentEnrollment(
            student_id=person.id, school_id=school_id, grade=grade, source="directory", start_date=year_start()
        )
        enrolment.grade = grade
        session.add(enrolment)
    return person.id


def events_of(city: City, event_type: str) -> list[dict[str, Any]]:
    with city.database.read_session() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == event_type).order_by(col(OutboxEvent.id))
        ).all()
        return [json.loads(row.envelope)["data"] for row in rows]


def changes_of(city: City, entity: str, entity_id: str) -> list[tuple[str, str | None]]:
    with city.database.read_session() as session:
        rows = session.exec(
            select(ChangeRecord)
            .where(ChangeRecord.entity == entity, ChangeRecord.entity_id == entity_id)
            .order_by(col(ChangeRecord.seq))
        ).all()
        return [(row.operation, row.school_id) for row in rows]


def problem_fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json().get("errors", [])]


# ----------------------------------------------------------------------------------------- sessions


async def test_city_school_years_and_a_schools_own_terms(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city, title="2026-2027学年")
    assert year["school_year"] == year_end().year
    middle = year_start() + timedelta(days=150)
    city_term = await client.post(
        "/academic-sessions",
        json={"org_id": city.city_id, "kind": "term", "title": "第一学期", "start_date": str(year_start()),
              "end_date": str(middle), "parent_id": year["id"]},
        headers=city.token("city_admin"),
    )  # fmt: skip
    assert city_term.status_code == 201, city_term.text
    # A school may keep its own calendar beside the city's: its term may overlap a city-wide one.
    own_term = await client.post(
        "/academic-sessions",
        json={"org_id": city.school_a1, "kind": "term", "title": "春晓一小第一学期", "start_date": str(year_start()),
              "end_date": str(middle + timedelta(days=7)), "parent_id": year["id"]},
        headers=city.token("a1_admin"),
    )  # fmt: skip
    assert own_term.status_code == 201, own_term.text
    assert own_term.json()["school_year"] == year["school_year"]

    a1_view = await client.get(
        "/academic-sessions", params={"org_id": city.school_a1}, headers=city.token("a1_teacher")
    )
    assert [item["title"] for item in a1_view.json()] == ["2026-2027学年", "第一学期", "春晓一小第一学期"]
    b1_view = await client.get("/academic-sessions", headers=city.token("b1_teacher"))
    assert [item["title"] for item in b1_view.json()] == ["2026-2027学年", "第一学期"]
    by_year = await client.get(
        "/academic-sessions", params={"school_year": year_end().year + 1}, headers=city.token("city_admin")
    )
    assert by_year.json() == []

    assert changes_of(city, "academicSessions", year["id"]) == [("upsert", None)]
    assert changes_of(city, "academicSessions", own_term.json()["id"]) == [("upsert", city.school_a1)]


async def test_session_dates_kinds_and_titles_are_checked(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    admin = city.token("city_admin")

    def body(**fields: Any) -> dict[str, Any]:
        return {"org_id": city.city_id, "kind": "term", "title": "学期", "start_date": str(year_start()),
                "end_date": str(year_start() + timedelta(days=100)), "parent_id": year["id"], **fields}  # fmt: skip

    backwards = await client.post("/academic-sessions", json=body(end_date=str(year_start())), headers=admin)
    assert backwards.status_code == 422 and "end_date" in problem_fields(backwards)
    outside = await client.post(
        "/academic-sessions", json=body(end_date=str(year_end() + timedelta(days=1))), headers=admin
    )
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["code"] == "outside_school_year"
    orphan = await client.post("/academic-sessions", json=body(parent_id=None), headers=admin)
    assert orphan.status_code == 422 and "parent_id" in problem_fields(orphan)
    unknown_parent = await client.post("/academic-sessions", json=body(parent_id="no-such-year"), headers=admin)
    assert unknown_parent.status_code == 404
    school_defines_year = await client.post(
        "/academic-sessions",
        json=body(org_id=city.school_a1, kind="school_year", parent_id=None, title="本校学年"),
        headers=city.token("a1_admin"),
    )
    assert school_defines_year.status_code == 422 and "kind" in problem_fields(school_defines_year)

    overlapping_year = await client.post(
        "/academic-sessions",
        json=body(kind="school_year", parent_id=None, title="另一学年", start_date=str(year_end() - timedelta(days=10)),
                  end_date=str(year_end() + timedelta(days=300))),
        headers=admin,
    )  # fmt: skip
    assert overlapping_year.status_code == 409
    assert overlapping_year.json()["conflicting_id"] == year["id"]

    first = await client.post("/academic-sessions", json=body(title="第一学期"), headers=admin)
    assert first.status_code == 201
    overlapping_term = await client.post(
        "/academic-sessions",
        json=body(title="第二学期", start_date=str(year_start() + timedelta(days=100)), end_date=str(year_end())),
        headers=admin,
    )
    assert overlapping_term.status_code == 409
    assert overlapping_term.json()["type"].endswith("enrollment/academic-session-conflict")
    same_title = await client.post(
        "/academic-sessions",
        json=body(title="第一学期", start_date=str(year_start() + timedelta(days=101)), end_date=str(year_end())),
        headers=admin,
    )
    assert same_title.status_code == 409 and "title" in problem_fields(same_title)


async def test_only_administrators_of_the_organisation_define_sessions(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    term = {"org_id": city.school_a1, "kind": "term", "title": "学期", "start_date": str(year_start()),
            "end_date": str(year_start() + timedelta(days=90)), "parent_id": year["id"]}  # fmt: skip
    anonymous = await client.post("/academic-sessions", json=term)
    assert anonymous.status_code == 401
    other_school = await client.post("/academic-sessions", json=term, headers=city.token("b1_admin"))
    assert other_school.status_code == 403
    teacher = await client.post("/academic-sessions", json=term, headers=city.token("a1_teacher"))
    assert teacher.status_code == 403
    city_wide_by_school = await client.post(
        "/academic-sessions", json={**term, "org_id": city.city_id}, headers=city.token("a1_admin")
    )
    assert city_wide_by_school.status_code == 403
    app = city.app_token(scopes="roster.read", schools=[city.school_a1])
    assert (await client.post("/academic-sessions", json=term, headers=app)).status_code == 403
    district_admin = await client.post("/academic-sessions", json=term, headers=city.token("district_a_admin"))
    assert district_admin.status_code == 201
    assert (await client.get("/academic-sessions")).status_code == 401


# ------------------------------------------------------------------------------------------ classes


async def test_school_admin_opens_classes_with_head_teachers(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    teacher = city.people["a1_teacher"]
    first = await new_class(client, city, year["id"], 1, head_teacher_id=teacher.id)
    second = await new_class(client, city, year["id"], 2, name="一年级(2)班（实验班）")

    assert first["name"] == "一年级(1)班" and first["grade_name"] == "一年级"
    assert first["head_teacher"] == {"id": teacher.id, "name": "王老师"}
    assert [(item["name"], item["role"]) for item in first["teachers"]] == [("王老师", "head")]
    assert second["name"] == "一年级(2)班（实验班）" and second["head_teacher"] is None
    assert first["course_id"] == second["course_id"]  # one homeroom course per grade and year
    assert first["member_count"] == 0

    listing = await client.get(
        f"/schools/{city.school_a1}/classes", params={"school_year_id": year["id"]}, headers=city.token("a1_teacher")
    )
    assert listing.status_code == 200
    assert [item["name"] for item in listing.json()["items"]] == ["一年级(1)班", "一年级(2)班（实验班）"]
    other_grade = await client.get(
        f"/schools/{city.school_a1}/classes", params={"grade": "02"}, headers=city.token("a1_teacher")
    )
    assert other_grade.json()["total"] == 0

    changed = events_of(city, ClassChangedV1.event_type())
    assert [(event["class_id"], event["head_teacher_id"], event["teacher_ids"]) for event in changed] == [
        (first["id"], teacher.id, [teacher.id]),
        (second["id"], None, []),
    ]
    assert changes_of(city, "classes", first["id"]) == [("upsert", city.school_a1)]
    assert changes_of(city, "courses", first["course_id"]) == [("upsert", city.school_a1)]
    assert changes_of(city, "enrollments", first["teachers"][0]["id"]) == [("upsert", city.school_a1)]


async def test_class_input_is_checked(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    await new_class(client, city, year["id"], 1)
    url = f"/schools/{city.school_a1}/classes"
    admin = city.token("a1_admin")

    unknown_year = await client.post(url, json={"school_year_id": "nope", "grade": "01", "number": 3}, headers=admin)
    assert unknown_year.status_code == 404
    bad_grade = await client.post(url, json={"school_year_id": year["id"], "grade": "13", "number": 3}, headers=admin)
    assert bad_grade.status_code == 422 and "grade" in problem_fields(bad_grade)
    senior_in_primary = await client.post(
        url, json={"school_year_id": year["id"], "grade": "10", "number": 1}, headers=admin
    )
    assert senior_in_primary.status_code == 422
    assert senior_in_primary.json()["errors"][0]["code"] == "grade_not_offered"
    same_number = await client.post(url, json={"school_year_id": year["id"], "grade": "01", "number": 1}, headers=admin)
    assert same_number.status_code == 409 and "number" in problem_fields(same_number)
    other_schools_teacher = await client.post(
        url,
        json={"school_year_id": year["id"], "grade": "01", "number": 2,
              "head_teacher_id": city.people["b1_teacher"].id},
        headers=admin,
    )  # fmt: skip
    assert other_schools_teacher.status_code == 422
    assert other_schools_teacher.json()["errors"] == [
        {"field": "head_teacher_id", "message": "不是本校在职教师；not a teacher at this school",
         "code": "not_a_teacher_here"}
    ]  # fmt: skip
    not_a_teacher = await client.post(
        url,
        json={"school_year_id": year["id"], "grade": "01", "number": 2, "head_teacher_id": city.people["a1_admin"].id},
        headers=admin,
    )
    assert not_a_teacher.status_code == 422
    listing = await client.get(url, headers=admin)
    assert listing.json()["total"] == 1  # nothing of the refused requests was written


async def test_class_reads_need_a_role_at_the_school(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1)
    url = f"/schools/{city.school_a1}/classes/{school_class['id']}"

    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=city.token("b1_admin"))).status_code == 403
    assert (await client.get(url, headers=city.token("b1_teacher"))).status_code == 403
    assert (await client.get(url, headers=city.token("a1_teacher", scopes="org.read"))).status_code == 403
    assert (await client.get(url, headers=city.token("a1_teacher"))).json()["id"] == school_class["id"]
    assert (await client.get(url, headers=city.token("district_a_admin"))).status_code == 200
    installed = city.app_token(scopes="roster.read", schools=[city.school_a1])
    assert (await client.get(url, headers=installed)).status_code == 200
    elsewhere = city.app_token(scopes="roster.read", schools=[city.school_b1])
    assert (await client.get(url, headers=elsewhere)).status_code == 403
    # A class id of school A asked for under school B is unknown there, even to B's administrator.
    wrong_path = await client.get(
        f"/schools/{city.school_b1}/classes/{school_class['id']}", headers=city.token("b1_admin")
    )
    assert wrong_path.status_code == 404
    assert wrong_path.json()["type"].endswith("enrollment/class-not-found")
    assert (await client.get("/schools/no-such-school/classes", headers=city.token("city_admin"))).status_code == 404


async def test_renumbering_renaming_and_changing_the_head_teacher(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], 1, head_teacher_id=city.people["a1_teacher"].id)
    await new_class(client, city, year["id"], 2)
    url = f"/schools/{city.school_a1}/classes/{first['id']}"
    admin = city.token("a1_admin")

    renumbered = await client.patch(url, json={"number": 3}, headers=admin)
    assert renumbered.status_code == 200
    assert (renumbered.json()["number"], renumbered.json()["name"]) == (3, "一年级(3)班")
    clash = await client.patch(url, json={"name": "一年级(2)班"}, headers=admin)
    assert clash.status_code == 409
    new_head = await client.patch(url, json={"head_teacher_id": city.people["a1_teacher2"].id}, headers=admin)
    assert new_head.json()["head_teacher"]["name"] == "李老师"
    assert [item["name"] for item in new_head.json()["teachers"]] == ["李老师"]
    no_head = await client.patch(url, json={"head_teacher_id": None}, headers=admin)
    assert no_head.json()["head_teacher"] is None and no_head.json()["teachers"] == []
    assert (await client.patch(url, json={"name": None}, headers=admin)).status_code == 422
    assert (await client.patch(url, json={"name": "x"}, headers=city.token("a1_teacher"))).status_code == 403
    assert (await client.patch(url, json={"name": "x"})).status_code == 401
    assert len(events_of(city, ClassChangedV1.event_type())) == 5  # two creations, three changes


# ----------------------------------------------------------------------------------------- teachers


async def test_teacher_assignments_keep_their_history(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1)
    url = f"/schools/{city.school_a1}/classes/{school_class['id']}/teachers"
    admin = city.token("a1_admin")
    wang, li = city.people["a1_teacher"], city.people["a1_teacher2"]

    first = await client.put(
        url,
        json=[{"teacher_id": wang.id, "role": "head"}, {"teacher_id": li.id, "role": "subject", "subject": "数学"}],
        headers=admin,
    )
    assert first.status_code == 200, first.text
    assert {(item["name"], item["role"], item["subject"]) for item in first.json()} == {
        ("王老师", "head", None),
        ("李老师", "subject", "数学"),
    }
    # A month passes.
    month_ago = school_today() - timedelta(days=30)
    with city.database.session() as session:
        for row in session.exec(select(ClassTeacher).where(ClassTeacher.class_id == school_class["id"])).all():
            row.start_date = month_ago
            session.add(row)

    second = await client.put(
        url, json=[{"teacher_id": li.id, "role": "head"}, {"teacher_id": li.id, "role": "subject", "subject": "数学"}],
        headers=admin,
    )  # fmt: skip
    assert second.status_code == 200
    history = await client.get(url, params={"history": "true"}, headers=city.token("a1_teacher"))
    rows = {(item["name"], item["role"], item["start_date"], item["end_date"]) for item in history.json()}
    assert rows == {
        ("王老师", "head", str(month_ago), str(school_today() - timedelta(days=1))),
        ("李老师", "subject", str(month_ago), None),
        ("李老师", "head", str(school_today()), None),
    }
    current = await client.get(url, headers=city.token("a1_teacher"))
    assert {(item["name"], item["role"]) for item in current.json()} == {("李老师", "head"), ("李老师", "subject")}
    detail = await client.get(f"/schools/{city.school_a1}/classes/{school_class['id']}", headers=admin)
    assert detail.json()["head_teacher"]["id"] == li.id
    last_event = events_of(city, ClassChangedV1.event_type())[-1]
    assert (last_event["head_teacher_id"], last_event["teacher_ids"]) == (li.id, [li.id])


async def test_teacher_assignments_are_checked(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1)
    url = f"/schools/{city.school_a1}/classes/{school_class['id']}/teachers"
    admin = city.token("a1_admin")
    wang, li = city.people["a1_teacher"], city.people["a1_teacher2"]

    two_heads = await client.put(
        url, json=[{"teacher_id": wang.id, "role": "head"}, {"teacher_id": li.id, "role": "head"}], headers=admin
    )
    assert two_heads.status_code == 422
    assert two_heads.json()["errors"][0]["field"] == "1.role"
    assert two_heads.json()["errors"][0]["code"] == "second_head_teacher"
    outsider = await client.put(url, json=[{"teacher_id": city.people["b1_teacher"].id, "role": "head"}], headers=admin)
    assert outsider.status_code == 422 and problem_fields(outsider) == ["0.teacher_id"]
    no_subject = await client.put(url, json=[{"teacher_id": wang.id, "role": "subject"}], headers=admin)
    assert no_subject.status_code == 422
    wrong_school = await client.put(url, json=[{"teacher_id": wang.id, "role": "head"}], headers=city.token("b1_admin"))
    assert wrong_school.status_code == 403
    unknown_class = await client.put(f"/schools/{city.school_a1}/classes/nope/teachers", json=[], headers=admin)
    assert unknown_class.status_code == 404
    assert (await client.put(url, json=[])).status_code == 401
    with city.database.read_session() as session:
        assert session.exec(select(ClassTeacher)).all() == []


# --------------------------------------------------------------------------------------- membership


async def test_pupils_join_a_class_and_are_listed_by_day(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1)
    mei = enrol(city, "mei", school_id=city.school_a1, sex="female")
    lei = enrol(city, "lei", school_id=city.school_a1, sex="male")
    enrol(city, "late", school_id=city.school_a1)
    start = school_today() - timedelta(days=10)

    added = await client.post(
        f"/schools/{city.school_a1}/classes/{school_class['id']}/members",
        json={"student_ids": [mei, lei], "start_date": str(start)},
        headers=city.token("a1_admin"),
    )
    assert added.status_code == 201, added.text
    assert {item["name"] for item in added.json()} == {"学生mei", "学生lei"}

    url = f"/schools/{city.school_a1}/classes/{school_class['id']}/members"
    today = await client.get(url, headers=city.token("a1_teacher"))
    assert today.status_code == 200
    members = {item["student_id"]: item for item in today.json()}
    assert set(members) == {mei, lei}
    assert members[lei]["sex"] == "male" and members[lei]["start_date"] == str(start)
    assert set(members[lei]) == {
        "student_id", "name", "sex", "student_number", "membership_id", "start_date", "end_date", "reason"
    }  # fmt: skip
    before = await client.get(url, params={"on": str(start - timedelta(days=1))}, headers=city.token("a1_teacher"))
    assert before.json() == []

    unassigned = await client.get(
        f"/schools/{city.school_a1}/students", params={"unassigned": "true"}, headers=city.token("a1_admin")
    )
    assert [item["name"] for item in unassigned.json()["items"]] == ["学生late"]
    everyone = await client.get(
        f"/schools/{city.school_a1}/students", params={"grade": "01"}, headers=city.token("a1_teacher")
    )
    placed = {item["name"]: item["current_class"] for item in everyone.json()["items"]}
    assert placed["学生mei"] == {"id": school_class["id"], "name": "一年级(1)班", "start_date": str(start)}
    assert placed["学生late"] is None
    detail = await client.get(f"/schools/{city.school_a1}/classes/{school_class['id']}", headers=city.token("a1_admin"))
    assert detail.json()["member_count"] == 2

    events = events_of(city, ClassMembershipChangedV1.event_type())
    assert {(event["student_id"], event["to_class_id"], event["reason"]) for event in events} == {
        (mei, school_class["id"], "assigned"),
        (lei, school_class["id"], "assigned"),
    }
    assert changes_of(city, "enrollments", members[mei]["membership_id"]) == [("upsert", city.school_a1)]


async def test_only_enrolled_unplaced_pupils_of_the_grade_join(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], 1)
    second = await new_class(client, city, year["id"], 2)
    pupil = enrol(city, "pupil", school_id=city.school_a1)
    second_grader = enrol(city, "older", school_id=city.school_a1, grade="02")
    elsewhere = enrol(city, "elsewhere", school_id=city.school_b1)
    admin = city.token("a1_admin")

    def url(class_id: str) -> str:
        return f"/schools/{city.school_a1}/classes/{class_id}/members"

    not_enrolled = await client.post(url(first["id"]), json={"student_ids": [pupil, elsewhere]}, headers=admin)
    assert not_enrolled.status_code == 422
    assert not_enrolled.json()["errors"][0]["field"] == "student_ids.1"
    assert not_enrolled.json()["errors"][0]["code"] == "not_enrolled"
    wrong_grade = await client.post(url(first["id"]), json={"student_ids": [second_grader]}, headers=admin)
    assert wrong_grade.status_code == 422 and wrong_grade.json()["errors"][0]["code"] == "grade_mismatch"
    repeated = await client.post(url(first["id"]), json={"student_ids": [pupil, pupil]}, headers=admin)
    assert repeated.status_code == 422
    too_late = await client.post(
        url(first["id"]),
        json={"student_ids": [pupil], "start_date": str(year_end() + timedelta(days=1))},
        headers=admin,
    )
    assert too_late.status_code == 422 and problem_fields(too_late) == ["start_date"]
    assert (await client.post(url("nope"), json={"student_ids": [pupil]}, headers=admin)).status_code == 404

    assert (await client.post(url(first["id"]), json={"student_ids": [pupil]}, headers=admin)).status_code == 201
    twice = await client.post(url(second["id"]), json={"student_ids": [pupil]}, headers=admin)
    assert twice.status_code == 409 and twice.json()["errors"][0]["code"] == "already_in_class"

    wrong_school = await client.post(url(second["id"]), json={"student_ids": [pupil]}, headers=city.token("b1_admin"))
    assert wrong_school.status_code == 403
    teacher = await client.post(url(second["id"]), json={"student_ids": [pupil]}, headers=city.token("a1_teacher"))
    assert teacher.status_code == 403
    assert (await client.post(url(second["id"]), json={"student_ids": [pupil]})).status_code == 401


async def test_pupil_lists_need_the_students_scope(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1)
    pupil = enrol(city, "pupil", school_id=city.school_a1)
    await client.post(
        f"/schools/{city.school_a1}/classes/{school_class['id']}/members",
        json={"student_ids": [pupil]},
        headers=city.token("a1_admin"),
    )
    urls = [
        f"/schools/{city.school_a1}/classes/{school_class['id']}/members",
        f"/schools/{city.school_a1}/students",
        f"/schools/{city.school_a1}/students/{pupil}/class-history",
    ]
    for url in urls:
        assert (await client.get(url)).status_code == 401, url
        assert (await client.get(url, headers=city.token("a1_teacher", scopes="roster.read"))).status_code == 403, url
        assert (await client.get(url, headers=city.token("b1_teacher"))).status_code == 403, url
        assert (await client.get(url, headers=city.token("a1_teacher"))).status_code == 200, url
        app = city.app_token(scopes="roster.read roster.students.read", schools=[city.school_a1])
        assert (await client.get(url, headers=app)).status_code == 200, url
        classes_only = city.app_token(scopes="roster.read", schools=[city.school_a1])
        assert (await client.get(url, headers=classes_only)).status_code == 403, url


async def test_class_transfer_keeps_the_history(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], 1)
    second = await new_class(client, city, year["id"], 2)
    pupil = enrol(city, "pupil", school_id=city.school_a1)
    admin = city.token("a1_admin")
    await client.post(
        f"/schools/{city.school_a1}/classes/{first['id']}/members",
        json={"student_ids": [pupil], "start_date": str(year_start())},
        headers=admin,
    )
    effective = school_today() + timedelta(days=3)

    moved = await client.post(
        f"/schools/{city.school_a1}/students/{pupil}/class-transfer",
        json={"to_class_id": second["id"], "effective_on": str(effective), "reason": "家长申请"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["ended"]["end_date"] == str(effective - timedelta(days=1))
    assert moved.json()["started"]["note"] == "家长申请"

    history = await client.get(
        f"/schools/{city.school_a1}/students/{pupil}/class-history", headers=city.token("a1_teacher")
    )
    assert [(item["class_name"], item["start_date"], item["end_date"], item["reason"]) for item in history.json()] == [
        ("一年级(1)班", str(year_start()), str(effective - timedelta(days=1)), "assigned"),
        ("一年级(2)班", str(effective), None, "transfer"),
    ]
    assert history.json()[1]["note"] == "家长申请"
    # Why a child moved is an enrolment record: a class-list app does not get it.
    app = city.app_token(scopes="roster.read roster.students.read enrollment.read", schools=[city.school_a1])
    app_history = await client.get(f"/schools/{city.school_a1}/students/{pupil}/class-history", headers=app)
    assert [item["note"] for item in app_history.json()] == [None, None]
    roster_only = city.token("a1_teacher", scopes="roster.read roster.students.read")
    teacher_history = await client.get(f"/schools/{city.school_a1}/students/{pupil}/class-history", headers=roster_only)
    assert [item["note"] for item in teacher_history.json()] == [None, None]

    async def members(class_id: str, day: date) -> list[str]:
        response = await client.get(
            f"/schools/{city.school_a1}/classes/{class_id}/members", params={"on": str(day)}, headers=admin
        )
        return [item["student_id"] for item in response.json()]

    assert await members(first["id"], effective - timedelta(days=1)) == [pupil]
    assert await members(second["id"], effective - timedelta(days=1)) == []
    assert await members(first["id"], effective) == []
    assert await members(second["id"], effective) == [pupil]

    event = events_of(city, ClassMembershipChangedV1.event_type())[-1]
    assert (event["from_class_id"], event["to_class_id"], event["effective_on"], event["reason"]) == (
        first["id"], second["id"], str(effective), "transfer"
    )  # fmt: skip
    with city.database.read_session() as session:
        membership_ids = session.exec(select(ClassMembership.id).where(ClassMembership.student_id == pupil)).all()
    assert len(membership_ids) == 2
    assert {changes_of(city, "enrollments", row_id)[-1] for row_id in membership_ids} == {("upsert", city.school_a1)}


async def test_class_transfer_input_is_checked(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], 1)
    second = await new_class(client, city, year["id"], 2)
    b1_class = await new_class(client, city, year["id"], 1, school_id=city.school_b1)
    pupil = enrol(city, "pupil", school_id=city.school_a1)
    admin = city.token("a1_admin")
    url = f"/schools/{city.school_a1}/students/{pupil}/class-transfer"

    def body(**fields: Any) -> dict[str, Any]:
        return {"to_class_id": second["id"], "effective_on": str(school_today()), "reason": "调整", **fields}

    no_class_yet = await client.post(url, json=body(), headers=admin)
    assert no_class_yet.status_code == 409
    await client.post(
        f"/schools/{city.school_a1}/classes/{first['id']}/members",
        json={"student_ids": [pupil], "start_date": str(school_today() - timedelta(days=5))},
        headers=admin,
    )
    same_class = await client.post(url, json=body(to_class_id=first["id"]), headers=admin)
    assert same_class.status_code == 409
    too_early = await client.post(url, json=body(effective_on=str(school_today() - timedelta(days=6))), headers=admin)
    assert too_early.status_code == 422 and problem_fields(too_early) == ["effective_on"]
    unknown = await client.post(url, json=body(to_class_id="nope"), headers=admin)
    assert unknown.status_code == 404 and problem_fields(unknown) == ["to_class_id"]
    other_schools_class = await client.post(url, json=body(to_class_id=b1_class["id"]), headers=admin)
    assert other_schools_class.status_code == 404
    stranger = await client.post(
        f"/schools/{city.school_a1}/students/nobody/class-transfer", json=body(), headers=admin
    )
    assert stranger.status_code == 404
    assert (await client.post(url, json=body(), headers=city.token("b1_admin"))).status_code == 403
    assert (await client.post(url, json=body())).status_code == 401
    history = await client.get(f"/schools/{city.school_a1}/students/{pupil}/class-history", headers=admin)
    assert [item["class_id"] for item in history.json()] == [first["id"]]
    unknown_history = await client.get(f"/schools/{city.school_a1}/students/nobody/class-history", headers=admin)
    assert unknown_history.status_code == 404


async def test_deleting_a_class_keeps_its_history(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], 1, head_teacher_id=city.people["a1_teacher"].id)
    second = await new_class(client, city, year["id"], 2)
    pupil = enrol(city, "pupil", school_id=city.school_a1)
    admin = city.token("a1_admin")
    await client.post(
        f"/schools/{city.school_a1}/classes/{first['id']}/members",
        json={"student_ids": [pupil], "start_date": str(year_start())},
        headers=admin,
    )
    url = f"/schools/{city.school_a1}/classes/{first['id']}"

    occupied = await client.delete(url, headers=admin)
    assert occupied.status_code == 409 and occupied.json()["members"] == 1
    assert (await client.delete(url, headers=city.token("b1_admin"))).status_code == 403
    assert (await client.delete(url)).status_code == 401
    await client.post(
        f"/schools/{city.school_a1}/students/{pupil}/class-transfer",
        json={"to_class_id": second["id"], "effective_on": str(school_today()), "reason": "并班"},
        headers=admin,
    )
    deleted = await client.delete(url, headers=admin)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=admin)).status_code == 404
    assert (await client.delete(url, headers=admin)).status_code == 404

    history = await client.get(f"/schools/{city.school_a1}/students/{pupil}/class-history", headers=admin)
    assert [item["class_name"] for item in history.json()] == ["一年级(1)班", "一年级(2)班"]
    assert events_of(city, ClassDeletedV1.event_type()) == [{"class_id": first["id"], "school_id": city.school_a1}]
    assert changes_of(city, "classes", first["id"])[-1] == ("delete", city.school_a1)
    assert changes_of(city, "enrollments", first["teachers"][0]["id"])[-1] == ("delete", city.school_a1)
    # The name is free again for a new class.
    again = await new_class(client, city, year["id"], 1)
    assert again["name"] == "一年级(1)班"


async def test_a_pupil_without_a_grade_takes_the_grade_of_their_class(client: httpx.AsyncClient, city: City) -> None:
    year = await school_year(client, city)
    school_class = await new_class(client, city, year["id"], 1, grade="03")
    newcomer = enrol(city, "newcomer", school_id=city.school_a1, grade=None)
    admin = city.token("a1_admin")
    before = await client.get(f"/schools/{city.school_a1}/students", headers=admin)
    assert [(item["grade"], item["grade_name"]) for item in before.json()["items"]] == [(None, None)]
    user_changes = len(changes_of(city, "users", newcomer))

    added = await client.post(
        f"/schools/{city.school_a1}/classes/{school_class['id']}/members",
        json={"student_ids": [newcomer]},
        headers=admin,
    )
    assert added.status_code == 201, added.text
    after = await client.get(f"/schools/{city.school_a1}/students", params={"grade": "03"}, headers=admin)
    assert [(item["student_id"], item["grade_name"]) for item in after.json()["items"]] == [(newcomer, "三年级")]
    # OneRoster users carry their grade, so the feed announces the change.
    assert changes_of(city, "users", newcomer)[user_changes:] == [("upsert", city.school_a1)]


async def test_the_database_keeps_a_pupil_in_one_homeroom_class_even_under_a_race(
    client: httpx.AsyncClient, city: City
) -> None:
    year = await school_year(client, city)
    first = await new_class(client, city, year["id"], number=1)
    second = await new_class(client, city, year["id"], number=2)
    pupil = enrol(city, "racer", school_id=city.school_a1)
    # Two placements that both passed the service's check: the second insert is refused by the database.
    with city.database.session() as session:
        session.add(ClassMembership(class_id=first["id"], school_id=city.school_a1, student_id=pupil,
                                    start_date=school_today(), reason="assigned"))  # fmt: skip
    with pytest.raises(IntegrityError), city.database.session() as session:
        session.add(ClassMembership(class_id=second["id"], school_id=city.school_a1, student_id=pupil,
                                    start_date=school_today(), reason="assigned"))  # fmt: skip
