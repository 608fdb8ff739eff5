"""People through the admin API: identifiers validated and masked, scoping, roles, guardians, audit."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from identity.organisations import service as organisations
from identity.organisations.schemas import OrganisationCreate
from identity.people.models import GuardianLink, Person, RoleGrant
from identity.testing import Directory, TokenFactory, bearer, resident_id
from kit.audit import AuditEntry
from kit.identifiers import resident_id_check_character
from kit.outbox import OutboxEvent

# 王雨桐, a girl born 2016-03-05 in 思明区 (sequence 124 is even: female).
GIRL_ID = resident_id(date(2016, 3, 5), 124)
# 李子轩, a boy born 2015-11-20 in 湖里区 (sequence 137 is odd: male).
BOY_ID = resident_id(date(2015, 11, 20), 137, area_code="350206")


def student(org_id: str, name: str = "王雨桐", rid: str = GIRL_ID, **fields: Any) -> dict[str, Any]:
    return {"kind": "student", "name": name, "org_id": org_id, "resident_id_number": rid,
            "student_number": "G" + rid, **fields}  # fmt: skip


def count(directory: Directory, model: Any, *where: Any) -> int:
    with directory.database.session() as session:
        return int(session.exec(select(sa.func.count()).select_from(model).where(*where)).one())


def outbox(directory: Directory, event_type: str | None = None) -> list[dict[str, Any]]:
    with directory.database.session() as session:
        query = select(OutboxEvent).order_by(col(OutboxEvent.id))
        if event_type:
            query = query.where(OutboxEvent.event_type == event_type)
        return [json.loads(row.envelope) for row in session.exec(query).all()]


def audit_entries(directory: Directory, **match: str) -> list[AuditEntry]:
    with directory.database.session() as session:
        query = select(AuditEntry).order_by(col(AuditEntry.id))
        for name, value in match.items():
            query = query.where(getattr(AuditEntry, name) == value)
        return list(session.exec(query).all())


async def create(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/people", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# ------------------------------------------------------------------------------------------ anonymous


async def test_anonymous(client: httpx.AsyncClient, directory: Directory) -> None:
    person_id = directory.teacher_a.id
    calls = [
        ("GET", "/people", None),
        ("POST", "/people", student(directory.school_a.id)),
        ("GET", f"/people/{person_id}", None),
        ("GET", f"/people/{person_id}/resident-id", None),
        ("PATCH", f"/people/{person_id}", {"name": "林慧"}),
        ("POST", f"/people/{person_id}/deactivate", {"reason": "离职"}),
        ("POST", f"/people/{person_id}/roles", {"role": "teacher", "org_id": directory.school_a.id}),
        ("GET", f"/people/{person_id}/guardians", None),
    ]
    before = count(directory, Person)
    for method, url, body in calls:
        response = await client.request(method, url, json=body)
        assert response.status_code == 401, (method, url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
    # A forged "token" is no better than none.
    response = await client.get("/people", headers=bearer("not.a.token"))
    assert response.status_code == 401
    assert count(directory, Person) == before


# ------------------------------------------------------------------------------ create, mask, reveal


async def test_valid_student_is_stored_masked_and_revealed_only_on_purpose(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    created = await create(client, token, student(directory.school_a.id, name=" 王 雨桐 "))
    assert created["kind"] == "student"
    assert created["name"] == "王 雨桐"
    assert created["sex"] == "female"  # derived from the ID number
    assert created["birth_date"] == "2016-03-05"  # derived from the ID number
    assert created["resident_id_masked"] == f"350203********{GIRL_ID[-4:]}"
    assert created["active"] is True
    # The G student number and the login name derived from it embed the ID number: masked too.
    assert created["student_number"] == f"G350203********{GIRL_ID[-4:]}"
    assert created["username"] == created["student_number"]
    assert GIRL_ID not in json.dumps(created)
    assert "20160305" not in json.dumps(created)

    # At rest: encrypted, and found by keyed hash, never stored in the clear.
    with directory.database.session() as session:
        row = session.get(Person, created["id"])
        assert row is not None
        assert row.resident_id_cipher and GIRL_ID not in row.resident_id_cipher
        assert row.resident_id_hash and GIRL_ID not in row.resident_id_hash
    # Nor in the events waiting for the bus.
    events = [event for event in outbox(directory) if event.get("subject") == created["id"]]
    assert {event["type"] for event in events} == {
        "edu.identity.person.created.v1", "edu.identity.role.granted.v1"
    }  # fmt: skip
    assert all(GIRL_ID not in json.dumps(event) and "20160305" not in json.dumps(event) for event in events)

    # Reading the record is audited; so is revealing the full number, which needs the scope.
    read = await client.get(f"/people/{created['id']}", headers=bearer(token))
    assert read.status_code == 200
    assert GIRL_ID not in read.text
    revealed = await client.get(f"/people/{created['id']}/resident-id", headers=bearer(token))
    assert revealed.status_code == 200
    assert revealed.json() == {"person_id": created["id"], "resident_id_number": GIRL_ID}
    await client.get(f"/people/{created['id']}/resident-id", headers=bearer(token))

    reads = audit_entries(directory, action="person.read", target_id=created["id"])
    reveals = audit_entries(directory, action="person.reveal_resident_id", target_id=created["id"])
    assert len(reads) == 1
    assert len(reveals) == 2
    for entry in reads + reveals:
        assert entry.actor_id == directory.school_admin_a.id
        assert entry.actor_client == "platform-admin-console"
        assert entry.org_id == directory.school_a.id
        assert entry.result == "success"
        assert GIRL_ID not in entry.detail
    creation = audit_entries(directory, action="person.create", target_id=created["id"])
    assert [entry.actor_id for entry in creation] == [directory.school_admin_a.id]


async def test_reveal_needs_the_identity_scope_and_an_admin_role(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    created = await create(client, token_for(directory.school_admin_a), student(directory.school_a.id))
    url = f"/people/{created['id']}/resident-id"
    without_scope = token_for(directory.school_admin_a, scopes=("people.read", "people.write"))
    response = await client.get(url, headers=bearer(without_scope))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/insufficient-scope")
    assert GIRL_ID not in response.text
    # A teacher of the same school is no directory reader.
    response = await client.get(url, headers=bearer(token_for(directory.teacher_a)))
    assert response.status_code == 404
    assert GIRL_ID not in response.text
    assert audit_entries(directory, action="person.reveal_resident_id") == []
    # A person without an ID number on record has nothing to reveal.
    response = await client.get(
        f"/people/{directory.teacher_a.id}/resident-id", headers=bearer(token_for(directory.school_admin_a))
    )
    assert response.status_code == 404


# ------------------------------------------------------------------------------------------ bad input


def with_check(first17: str) -> str:
    return first17 + resident_id_check_character(first17)


async def test_bad_input(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    headers = {**bearer(token_for(directory.school_admin_a)), "Accept-Language": "en"}
    school = directory.school_a.id
    wrong_check = GIRL_ID[:17] + ("0" if GIRL_ID[17] != "0" else "1")
    impossible = with_check("35020320230230124")  # 30 February
    future_day = date.today() + timedelta(days=30)
    future = with_check(f"350203{future_day:%Y%m%d}124")
    persons_before, events_before = count(directory, Person), len(outbox(directory))

    cases: list[tuple[dict[str, Any], str, str | None]] = [
        (student(school, rid=wrong_check), "resident_id_number", "check_digit"),
        (student(school, rid=impossible), "resident_id_number", "birth_date"),
        (student(school, rid=future), "resident_id_number", "future_birth_date"),
        (student(school, student_number="G" + BOY_ID), "student_number", None),  # not her ID number
        (student(school, sex="male"), "sex", None),  # contradicts the ID number
        (
            {
                "kind": "student",
                "name": "张欣怡",
                "org_id": school,
                "sex": "female",
                "student_number": "G" + GIRL_ID,
                "birth_date": future_day.isoformat(),
            },
            "birth_date",
            None,
        ),
        ({"kind": "student", "name": "张欣怡", "org_id": school, "sex": "female"}, "student_number", None),
        ({"kind": "guardian", "name": "王建华", "org_id": school}, "phone", None),
        ({"kind": "staff", "name": "黄志强", "org_id": school, "phone": "12345"}, "phone", None),
        ({"kind": "staff", "name": "黄志强", "org_id": school, "student_number": "G" + BOY_ID}, "student_number", None),
    ]
    for body, field, code in cases:
        response = await client.post("/people", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["type"].endswith("/identity/invalid-person-data"), problem
        fields = {error["field"]: error for error in problem["errors"]}
        assert field in fields, (body, problem)
        if code is not None:
            assert fields[field]["code"] == code

    # Wrong types and unknown fields are named too.
    response = await client.post(
        "/people", json={"kind": "student", "name": 123, "org_id": school, "birth_date": "2016-13-01"},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} >= {"name", "birth_date"}
    response = await client.post("/people", json={**student(school), "password": "x"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "password"
    response = await client.post("/people", json={**student(school), "kind": "teacher"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"
    # Malformed JSON is a 400 of its own.
    response = await client.post(
        "/people", content=b'{"kind": "student", "name": ', headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/malformed-request")
    # A student belongs to a school, not to a district office.
    response = await client.post(
        "/people", json=student(directory.district_a.id), headers=bearer(token_for(directory.district_admin_a))
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "org_id"
    # An organisation that does not exist.
    response = await client.post("/people", json=student("no-such-school"), headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "org_id"

    # Nothing half-written: no person, no event.
    assert count(directory, Person) == persons_before
    assert len(outbox(directory)) == events_before


async def test_duplicates_are_409_naming_the_field(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    await create(client, token, student(directory.school_a.id))
    persons, events = count(directory, Person), len(outbox(directory))
    again = await client.post("/people", json=student(directory.school_a.id, name="王雨彤"), headers=bearer(token))
    assert again.status_code == 409
    assert again.json()["type"].endswith("/identity/duplicate-student-number")
    assert again.json()["errors"][0]["field"] == "student_number"
    # The same ID number under a J (no-ID) student number is the same person.
    same_id = await client.post(
        "/people", json=student(directory.school_a.id, student_number="J" + BOY_ID), headers=bearer(token)
    )
    assert same_id.status_code == 409
    assert same_id.json()["errors"][0]["field"] == "resident_id_number"
    # A login name already in use.
    taken = await client.post(
        "/people",
        json={"kind": "staff", "name": "黄志强", "org_id": directory.school_a.id, "phone": "13712345678",
              "username": directory.teacher_a.username},
        headers=bearer(token),
    )  # fmt: skip
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "username"
    assert (count(directory, Person), len(outbox(directory))) == (persons, events)


# ----------------------------------------------------------------------------------------- wrong school


async def test_wrong_school(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    other = await create(client, token_for(directory.school_admin_b), student(directory.school_b.id, rid=BOY_ID))
    intruder = bearer(token_for(directory.school_admin_a))
    not_found = [
        await client.get(f"/people/{other['id']}", headers=intruder),
        await client.get(f"/people/{other['id']}/resident-id", headers=intruder),
        await client.patch(f"/people/{other['id']}", json={"name": "李梓轩"}, headers=intruder),
        await client.post(f"/people/{other['id']}/deactivate", json={"reason": "转学离校"}, headers=intruder),
        await client.get(f"/people/{other['id']}/roles", headers=intruder),
        await client.get(f"/people/{other['id']}/guardians", headers=intruder),
    ]
    unknown = await client.get("/people/00000000-0000-0000-0000-000000000000", headers=intruder)
    for response in not_found:
        assert response.status_code == 404, response.text
        # Indistinguishable from a person that does not exist at all.
        assert response.json()["type"] == unknown.json()["type"]
        assert BOY_ID not in response.text
    listed = await client.get("/people", headers=intruder)
    assert other["id"] not in {item["id"] for item in listed.json()["items"]}
    assert (await client.get("/people", params={"student_number": "G" + BOY_ID}, headers=intruder)).json()["total"] == 0

    persons = count(directory, Person)
    refused = await client.post("/people", json=student(directory.school_b.id), headers=intruder)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")
    assert count(directory, Person) == persons
    denied = audit_entries(directory, actor_id=directory.school_admin_a.id, result="denied")
    assert [entry.action for entry in denied] == ["denied:POST /people"]
    # Moving one's own student into another school needs rights over that school as well.
    own = await create(client, token_for(directory.school_admin_a), student(directory.school_a.id))
    moved = await client.patch(f"/people/{own['id']}", json={"org_id": directory.school_b.id}, headers=intruder)
    assert moved.status_code == 403
    after = await client.get(f"/people/{own['id']}", headers=intruder)
    assert after.json()["org_id"] == directory.school_a.id


async def test_district_admin_sees_both_schools_of_own_district_only(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    with directory.database.session() as session:
        second = organisations.create(
            session,
            OrganisationCreate(kind="school", name="鹭江中学", parent_id=directory.district_a.id,
                               school_code="3135020302", school_type="junior"),
        )  # fmt: skip
    district = token_for(directory.district_admin_a)
    in_a = await create(client, district, student(directory.school_a.id))
    in_second = await create(client, district, student(second.id, name="李子轩", rid=BOY_ID))
    in_b = await create(
        client, token_for(directory.school_admin_b),
        student(directory.school_b.id, name="张欣怡", rid=resident_id(date(2016, 7, 9), 88, "350206")),
    )  # fmt: skip
    response = await client.get("/people", params={"kind": "student"}, headers=bearer(district))
    assert response.status_code == 200
    assert {item["id"] for item in response.json()["items"]} == {in_a["id"], in_second["id"]}
    assert response.json()["total"] == 2
    assert (await client.get(f"/people/{in_second['id']}", headers=bearer(district))).status_code == 200
    assert (await client.get(f"/people/{in_b['id']}", headers=bearer(district))).status_code == 404
    # The city sees everyone.
    city = await client.get("/people", params={"kind": "student"}, headers=bearer(token_for(directory.city_admin)))
    assert {item["id"] for item in city.json()["items"]} == {in_a["id"], in_second["id"], in_b["id"]}


async def test_list_filters(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    girl = await create(client, token, student(directory.school_a.id))
    boy = await create(client, token, student(directory.school_a.id, name="李子轩", rid=BOY_ID))
    headers = bearer(token)

    async def ids(**params: str) -> set[str]:
        response = await client.get("/people", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return {item["id"] for item in body["items"]}

    assert await ids(kind="student") == {girl["id"], boy["id"]}
    assert await ids(kind="staff") == {directory.school_admin_a.id, directory.teacher_a.id}
    assert await ids(q="子轩") == {boy["id"]}
    assert await ids(student_number="g" + BOY_ID.lower()) == {boy["id"]}  # typed in lower case
    assert await ids(resident_id_number=GIRL_ID) == {girl["id"]}  # exact lookup by keyed hash
    assert await ids(resident_id_number=GIRL_ID[:-1]) == set()  # never a partial match
    assert await ids(kind="guardian") == set()
    response = await client.get("/people", params={"kind": "teacher"}, headers=headers)
    assert response.status_code == 422
    response = await client.get("/people", params={"limit": 1}, headers=headers)
    assert len(response.json()["items"]) == 1
    assert response.json()["total"] == 4
    # Listing personal data is audited with the ids shown.
    listed = audit_entries(directory, action="person.list")
    assert listed and all(entry.actor_id == directory.school_admin_a.id for entry in listed)
    assert boy["id"] in listed[0].detail


# ---------------------------------------------------------------------------- update and deactivation


async def test_update_person(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    response = await client.patch(
        f"/people/{directory.teacher_a.id}", json={"name": "林慧敏", "phone": "13712345678"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["phone_masked"] == "137****5678"
    events = outbox(directory, "edu.identity.person.updated.v1")
    assert [event["data"]["changed"] for event in events] == [["phone"]]
    assert "13712345678" not in json.dumps(events)
    # Changing nothing emits nothing.
    response = await client.patch(f"/people/{directory.teacher_a.id}", json={"name": "林慧敏"}, headers=bearer(token))
    assert response.status_code == 200
    assert len(outbox(directory, "edu.identity.person.updated.v1")) == 1
    bad = await client.patch(f"/people/{directory.teacher_a.id}", json={"phone": "010-1234"}, headers=bearer(token))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "phone"


async def test_update_keeps_sex_and_birth_date_in_line_with_the_id_number(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    girl = await create(client, token, student(directory.school_a.id))
    events = len(outbox(directory))
    for change, field in [({"birth_date": "2016-04-01"}, "birth_date"), ({"sex": "male"}, "sex")]:
        response = await client.patch(f"/people/{girl['id']}", json=change, headers=bearer(token))
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    renamed = await client.patch(f"/people/{girl['id']}", json={"name": "王雨彤"}, headers=bearer(token))
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["sex"], renamed.json()["birth_date"]) == (
        "王雨彤",
        "female",
        "2016-03-05",
    )
    assert GIRL_ID not in renamed.text
    assert len(outbox(directory)) == events + 1


async def test_deactivate_never_deletes(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    girl = await create(client, token, student(directory.school_a.id))
    response = await client.post(f"/people/{girl['id']}/deactivate", json={"reason": "x"}, headers=bearer(token))
    assert response.status_code == 422  # a reason of at least two characters
    response = await client.post(f"/people/{girl['id']}/deactivate", json={"reason": "转学离校"}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["deactivation_reason"] == "转学离校"
    again = await client.post(f"/people/{girl['id']}/deactivate", json={"reason": "转学离校"}, headers=bearer(token))
    assert again.status_code == 200
    # Still there, still readable, and one event for one deactivation.
    read = await client.get(f"/people/{girl['id']}", headers=bearer(token))
    assert read.status_code == 200 and read.json()["active"] is False
    assert count(directory, Person, Person.id == girl["id"]) == 1
    events = outbox(directory, "edu.identity.person.deactivated.v1")
    assert [(event["subject"], event["data"]["reason"]) for event in events] == [(girl["id"], "转学离校")]
    listed = await client.get("/people", params={"active": "false"}, headers=bearer(token))
    assert [item["id"] for item in listed.json()["items"]] == [girl["id"]]
    edit = await client.patch(f"/people/{girl['id']}", json={"name": "王雨彤"}, headers=bearer(token))
    assert edit.status_code == 409


# ------------------------------------------------------------------------------------------------ roles


async def test_roles_grant_and_revoke(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    staff = await create(
        client, token, {"kind": "staff", "name": "黄志强", "org_id": directory.school_a.id, "phone": "13712345678"}
    )
    response = await client.post(
        f"/people/{staff['id']}/roles", json={"role": "teacher", "org_id": directory.school_a.id}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    grant = response.json()
    assert (grant["role"], grant["org_id"], grant["active"]) == ("teacher", directory.school_a.id, True)
    granted = outbox(directory, "edu.identity.role.granted.v1")
    assert granted[-1]["data"]["grant_id"] == grant["id"]
    assert granted[-1]["data"]["org_path"] == directory.school_a.path

    revoked = await client.post(f"/people/{staff['id']}/roles/{grant['id']}/revoke", headers=bearer(token))
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    assert [event["data"]["grant_id"] for event in outbox(directory, "edu.identity.role.revoked.v1")] == [grant["id"]]
    roles = await client.get(f"/people/{staff['id']}/roles", headers=bearer(token))
    assert [(item["role"], item["active"]) for item in roles.json()] == [("teacher", False)]
    # A grant of someone else is not reachable through this person.
    response = await client.post(f"/people/{staff['id']}/roles/nope/revoke", headers=bearer(token))
    assert response.status_code == 404


async def test_roles_escalation_is_refused(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    school_admin = bearer(token_for(directory.school_admin_a))
    target = directory.teacher_a.id
    grants = count(directory, RoleGrant)
    for role, org in [
        ("district_admin", directory.district_a.id),
        ("city_admin", directory.city.id),
        ("auditor", directory.city.id),
        ("teacher", directory.school_b.id),  # another school
    ]:
        response = await client.post(
            f"/people/{target}/roles", json={"role": role, "org_id": org}, headers=school_admin
        )
        assert response.status_code == 403, (role, response.text)
    # Nor may a school admin take away a role it could not give.
    grant_id = next(grant.id for grant in directory_roles(directory, directory.school_admin_a.id))
    response = await client.post(
        f"/people/{directory.school_admin_a.id}/roles/{grant_id}/revoke",
        headers=bearer(token_for(directory.teacher_a)),
    )
    assert response.status_code == 404
    assert count(directory, RoleGrant) == grants
    # A role at the wrong kind of organisation is invalid input, even for the city admin.
    city_admin = bearer(token_for(directory.city_admin))
    for role, org in [("teacher", directory.district_a.id), ("district_admin", directory.school_a.id)]:
        response = await client.post(f"/people/{target}/roles", json={"role": role, "org_id": org}, headers=city_admin)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "org_id"
    response = await client.post(
        f"/people/{target}/roles", json={"role": "janitor", "org_id": directory.school_a.id}, headers=city_admin
    )
    assert response.status_code == 422
    assert count(directory, RoleGrant) == grants
    # District admins can appoint school admins in their district.
    response = await client.post(
        f"/people/{target}/roles",
        json={"role": "school_admin", "org_id": directory.school_a.id},
        headers=bearer(token_for(directory.district_admin_a)),
    )
    assert response.status_code == 201


def directory_roles(directory: Directory, person_id: str) -> list[RoleGrant]:
    with directory.database.session() as session:
        return list(session.exec(select(RoleGrant).where(RoleGrant.person_id == person_id)).all())


# --------------------------------------------------------------------------------------------- guardians


async def test_guardian_link(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    girl = await create(client, token, student(directory.school_a.id))
    mother = await create(
        client, token, {"kind": "guardian", "name": "王丽娟", "org_id": directory.school_a.id, "phone": "13812345678"}
    )
    response = await client.post(
        f"/people/{girl['id']}/guardians", json={"guardian_id": mother["id"], "relationship": "mother"},
        headers=bearer(token),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    link = response.json()
    assert (link["guardian_id"], link["student_id"], link["relationship"]) == (mother["id"], girl["id"], "mother")

    roles = [(grant.role, grant.org_id, grant.active) for grant in directory_roles(directory, mother["id"])]
    assert roles == [("parent", directory.school_a.id, True)]
    # The event was stored with the link, in the same unit of work.
    with directory.database.session() as session:
        stored = session.get(GuardianLink, link["id"])
        assert stored is not None
        linked = session.exec(
            select(OutboxEvent).where(OutboxEvent.event_type == "edu.identity.guardian.linked.v1")
        ).all()
    assert len(linked) == 1
    envelope = json.loads(linked[0].envelope)
    assert envelope["data"] == {"link_id": link["id"], "guardian_id": mother["id"], "student_id": girl["id"],
                                "relationship": "mother"}  # fmt: skip
    assert envelope["orgid"] == directory.school_a.id
    listed = await client.get(f"/people/{girl['id']}/guardians", headers=bearer(token))
    assert [item["id"] for item in listed.json()] == [link["id"]]
    # Linking again changes nothing.
    again = await client.post(
        f"/people/{girl['id']}/guardians", json={"guardian_id": mother["id"], "relationship": "mother"},
        headers=bearer(token),
    )  # fmt: skip
    assert again.json()["id"] == link["id"]
    assert len(outbox(directory, "edu.identity.guardian.linked.v1")) == 1


async def test_failed_guardian_links_leave_nothing(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    girl = await create(client, token, student(directory.school_a.id))
    other_school = await create(
        client, token_for(directory.school_admin_b),
        {"kind": "guardian", "name": "李建华", "org_id": directory.school_b.id, "phone": "13912345678"},
    )  # fmt: skip
    events, grants = len(outbox(directory)), count(directory, RoleGrant)
    attempts = [
        ({"guardian_id": other_school["id"], "relationship": "father"}, 404),
        ({"guardian_id": directory.teacher_a.id, "relationship": "father"}, 422),  # not a guardian
        ({"guardian_id": girl["id"], "relationship": "uncle"}, 422),
    ]
    for body, status in attempts:
        response = await client.post(f"/people/{girl['id']}/guardians", json=body, headers=bearer(token))
        assert response.status_code == status, response.text
    response = await client.post(
        f"/people/{directory.teacher_a.id}/guardians", json={"guardian_id": girl["id"], "relationship": "mother"},
        headers=bearer(token),
    )  # fmt: skip
    assert response.status_code == 422
    assert count(directory, GuardianLink) == 0
    assert (len(outbox(directory)), count(directory, RoleGrant)) == (events, grants)
