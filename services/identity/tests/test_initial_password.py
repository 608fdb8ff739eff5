"""School administrators hand out initial passwords; the person must replace theirs at first login."""

from __future__ import annotations

from datetime import date

import httpx
from fastapi import FastAPI

from identity.accounts import passwords
from identity.people import service as people
from identity.people.models import Person
from identity.people.schemas import PersonCreate
from identity.testing import Directory, TokenFactory, Visitor, bearer, resident_id


def imported_student(directory: Directory, app: FastAPI) -> Person:
    birth = date(2015, 9, 1)
    with directory.database.session() as session:
        school = directory.school_a
        number = resident_id(birth, 137)
        data = PersonCreate(kind="student", name="李子轩", org_id=school.id, sex="male", birth_date=birth,
                            resident_id_number=number, student_number="G" + number)  # fmt: skip
        return people.create(session, people.clean(data, school), app.state.cipher, created_by=None)


def test_generated_passwords_meet_the_policy_and_differ() -> None:
    generated = {passwords.generate_initial_password() for _ in range(200)}
    assert len(generated) == 200
    for password in generated:
        assert passwords.check_policy(password, username="li.zixuan") == []


async def test_admin_issues_an_initial_password_and_the_student_must_change_it(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    student = imported_student(directory, app)
    admin = bearer(token_for(directory.school_admin_a, scopes=("people.write",)))
    other_school = bearer(token_for(directory.school_admin_b, scopes=("people.write",)))
    teacher = bearer(token_for(directory.teacher_a, scopes=("people.write",)))

    assert (await client.post(f"/people/{student.id}/initial-password", headers=other_school)).status_code == 404
    assert (await client.post(f"/people/{student.id}/initial-password", headers=teacher)).status_code in (403, 404)
    issued = await client.post(f"/people/{student.id}/initial-password", headers=admin)
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["must_change_password"] is True and body["username"]

    async with Visitor(app) as browser:
        page = await browser.sign_in("/account", body["username"], body["initial_password"])
        assert 'action="/account/password"' in page.text  # the first step after the login is a new password
        account = await browser.submit(
            page, "/account/password", current_password=body["initial_password"], new_password="Xuesheng#2026",
            confirm_password="Xuesheng#2026",
        )  # fmt: skip
        assert "李子轩" in account.text

    again = await client.post(f"/people/{student.id}/initial-password", headers=admin)
    async with Visitor(app) as browser:  # the old password stops working; the new initial one must be changed
        refused = await browser.sign_in("/account", body["username"], "Xuesheng#2026")
        assert 'action="/login"' in refused.text
        forced = await browser.sign_in("/account", body["username"], again.json()["initial_password"])
        assert 'action="/account/password"' in forced.text


async def test_no_password_for_a_deactivated_account(
    app: FastAPI, client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    student = imported_student(directory, app)
    admin = bearer(token_for(directory.school_admin_a, scopes=("people.write",)))
    await client.post(f"/people/{student.id}/deactivate", json={"reason": "转学离校"}, headers=admin)
    refused = await client.post(f"/people/{student.id}/initial-password", headers=admin)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
