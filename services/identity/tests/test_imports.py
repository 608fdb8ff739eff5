"""Bulk import through the API: encodings, modes, idempotence, XLSX, guardians and teachers, scoping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import select

from identity.config import IdentitySettings
from identity.imports.models import ImportJob
from identity.main import create_app
from identity.people.models import GuardianLink, Person, RoleGrant
from identity.testing import Directory, TokenFactory, bearer, resident_id, xlsx
from kit.outbox import OutboxEvent

HEADER = ("姓名", "性别", "出生日期", "身份证号", "学籍号")
# (name, sex, birth date, sequence): odd sequences are boys, even ones girls (GB 11643).
PUPILS = [
    ("王雨桐", "女", date(2016, 3, 5), 124),
    ("李子轩", "男", date(2015, 11, 20), 137),
    ("张欣怡", "女", date(2016, 7, 9), 88),
    ("刘浩然", "男", date(2015, 9, 1), 211),
]
FINISHED = {"succeeded", "partially_succeeded", "failed"}


def pupil_row(name: str, sex: str, born: date, sequence: int) -> list[str]:
    rid = resident_id(born, sequence)
    return [name, sex, born.isoformat(), rid, "G" + rid]


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\r\n".join(",".join(row) for row in [list(header), *rows]) + "\r\n"


def students_csv(pupils: Sequence[tuple[str, str, date, int]] = PUPILS) -> str:
    return csv_text(HEADER, [pupil_row(*pupil) for pupil in pupils])


async def upload(
    client: httpx.AsyncClient,
    token: str,
    content: bytes,
    *,
    school_id: str,
    kind: str = "students",
    mode: str = "all_or_nothing",
    filename: str = "学生名单.csv",
) -> httpx.Response:
    media_type = "text/csv" if filename.endswith(".csv") else "application/octet-stream"
    return await client.post(
        "/imports",
        files={"file": (filename, content, media_type)},
        data={"kind": kind, "school_id": school_id, "mode": mode},
        headers=bearer(token),
    )


async def finished(client: httpx.AsyncClient, token: str, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll the job as a client would until it is done."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/imports/{job_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in FINISHED:
            return job
        assert job["status"] in ("queued", "running")
        assert asyncio.get_running_loop().time() < deadline, f"import still {job['status']}"
        await asyncio.sleep(0.05)


async def run_import(
    client: httpx.AsyncClient, token: str, content: bytes, *, school_id: str, **options: str
) -> dict[str, Any]:
    response = await upload(client, token, content, school_id=school_id, **options)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/imports/{response.json()['id']}"
    return await finished(client, token, response.json()["id"])


def count(directory: Directory, model: Any, *where: Any) -> int:
    with directory.database.session() as session:
        return int(session.exec(select(sa.func.count()).select_from(model).where(*where)).one())


def students_of(directory: Directory, school_id: str) -> dict[str, Person]:
    with directory.database.session() as session:
        rows = session.exec(select(Person).where(Person.kind == "student", Person.org_id == school_id)).all()
        return {row.name: row for row in rows}


# ------------------------------------------------------------------------------------------ anonymous


async def test_anonymous(client: httpx.AsyncClient, directory: Directory) -> None:
    response = await client.post(
        "/imports",
        files={"file": ("学生名单.csv", students_csv().encode(), "text/csv")},
        data={"kind": "students", "school_id": directory.school_a.id},
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/imports/whatever")).status_code == 401
    assert (await client.get("/imports", params={"school_id": directory.school_a.id})).status_code == 401
    assert count(directory, ImportJob) == 0


# -------------------------------------------------------------------------------------------- valid


async def test_valid_utf8_csv(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    response = await upload(client, token, students_csv().encode(), school_id=directory.school_a.id)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["encoding"] == "utf-8"
    assert (accepted["file_format"], accepted["kind"], accepted["mode"]) == ("csv", "students", "all_or_nothing")
    assert accepted["total_rows"] == 4
    assert accepted["filename"] == "学生名单.csv"

    job = await finished(client, token, accepted["id"])
    assert job["status"] == "succeeded", job
    # Progress and outcome fields.
    assert (job["total_rows"], job["processed_rows"]) == (4, 4)
    assert (job["created_count"], job["updated_count"], job["unchanged_count"], job["failed_count"]) == (4, 0, 0, 0)
    assert job["errors"] == [] and job["failure_reason"] is None
    assert job["started_at"] and job["finished_at"]
    assert "phase" in job

    pupils = students_of(directory, directory.school_a.id)
    assert set(pupils) == {name for name, *_ in PUPILS}
    girl = pupils["王雨桐"]
    assert (girl.sex, girl.birth_date) == ("female", date(2016, 3, 5))
    assert girl.resident_id_masked == "350203********" + resident_id(date(2016, 3, 5), 124)[-4:]
    assert count(directory, RoleGrant, RoleGrant.role == "student", RoleGrant.org_id == directory.school_a.id) == 4
    assert count(directory, OutboxEvent, OutboxEvent.event_type == "edu.identity.person.created.v1") == 4 + 6
    # The school's job list shows it.
    listed = await client.get("/imports", params={"school_id": directory.school_a.id}, headers=bearer(token))
    assert [item["id"] for item in listed.json()["items"]] == [accepted["id"]]


async def test_gbk_csv_from_excel(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    """Chinese Excel and WPS save CSV in GBK; the encoding is detected, the names arrive intact."""
    token = token_for(directory.school_admin_a)
    content = students_csv(PUPILS[:2]).encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    response = await upload(client, token, content, school_id=directory.school_a.id)
    assert response.status_code == 202, response.text
    assert response.json()["encoding"] == "gb18030"
    job = await finished(client, token, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["encoding"] == "gb18030"
    listed = await client.get("/people", params={"q": "子轩"}, headers=bearer(token))
    assert [item["name"] for item in listed.json()["items"]] == ["李子轩"]


async def test_xlsx_written_by_openpyxl(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    rows: list[list[Any]] = [list(HEADER)]
    for name, sex, born, sequence in PUPILS[:3]:
        rid = resident_id(born, sequence)
        rows.append([name, sex, born, rid, "G" + rid])  # a real date cell, IDs as text
    job = await run_import(client, token, xlsx(rows), school_id=directory.school_a.id, filename="学生名单.xlsx")
    assert job["status"] == "succeeded", job
    assert (job["file_format"], job["encoding"], job["created_count"]) == ("xlsx", None, 3)
    assert students_of(directory, directory.school_a.id)["张欣怡"].birth_date == date(2016, 7, 9)


# -------------------------------------------------------------------------------------- bad rows, modes


def one_bad_row() -> bytes:
    rows = [pupil_row(*pupil) for pupil in PUPILS[:3]]
    rows[1][3] = rows[1][3][:17] + ("1" if rows[1][3][17] != "1" else "2")  # row 3: a typo in the check digit
    return csv_text(HEADER, rows).encode()


async def test_all_or_nothing_with_one_bad_row_writes_nothing(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    persons, events = count(directory, Person), count(directory, OutboxEvent)
    job = await run_import(client, token, one_bad_row(), school_id=directory.school_a.id)
    assert job["status"] == "failed"
    assert job["failed_count"] == 1
    assert job["created_count"] == 0
    assert job["failure_reason"]
    assert [(error["row"], error["field"]) for error in job["errors"]] == [(3, "resident_id_number")]
    assert "校验位" in job["errors"][0]["message"]
    assert count(directory, Person) == persons
    assert count(directory, OutboxEvent) == events


async def test_valid_rows_writes_the_good_ones(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    job = await run_import(client, token, one_bad_row(), school_id=directory.school_a.id, mode="valid_rows")
    assert job["status"] == "partially_succeeded"
    assert (job["created_count"], job["failed_count"], job["processed_rows"]) == (2, 1, 3)
    assert [(error["row"], error["field"]) for error in job["errors"]] == [(3, "resident_id_number")]
    assert set(students_of(directory, directory.school_a.id)) == {"王雨桐", "张欣怡"}


async def test_row_problems_are_reported_by_row_and_column(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    rows = [pupil_row(*pupil) for pupil in PUPILS]
    rows[0][1] = "未知"  # row 2: sex
    rows[1][2] = "2015年11月20日"  # row 3: date format
    rows[3] = list(rows[2])  # row 5 repeats row 4
    job = await run_import(
        client, token, csv_text(HEADER, rows).encode(), school_id=directory.school_a.id, mode="valid_rows"
    )
    assert job["status"] == "partially_succeeded"
    assert [(error["row"], error["field"]) for error in job["errors"]] == [
        (2, "sex"), (3, "birth_date"), (5, "student_number")
    ]  # fmt: skip
    assert set(students_of(directory, directory.school_a.id)) == {"张欣怡"}


async def test_reimport_is_idempotent(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    content = students_csv().encode()
    first = await run_import(client, token, content, school_id=directory.school_a.id)
    assert first["created_count"] == 4
    persons, events = count(directory, Person), count(directory, OutboxEvent)
    again = await run_import(client, token, content, school_id=directory.school_a.id)
    assert again["status"] == "succeeded"
    assert (again["created_count"], again["updated_count"], again["unchanged_count"]) == (0, 0, 4)
    assert (count(directory, Person), count(directory, OutboxEvent)) == (persons, events)
    # A corrected name is an update, and only that.
    renamed = students_csv().replace("刘浩然", "刘皓然").encode()
    third = await run_import(client, token, renamed, school_id=directory.school_a.id)
    assert (third["created_count"], third["updated_count"], third["unchanged_count"]) == (0, 1, 3)
    assert count(directory, OutboxEvent) == events + 1


async def test_another_schools_student_is_not_taken_over(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    await run_import(client, token_for(directory.school_admin_b), students_csv(PUPILS[:1]).encode(),
                     school_id=directory.school_b.id)  # fmt: skip
    token = token_for(directory.school_admin_a)
    job = await run_import(client, token, students_csv(PUPILS[:2]).encode(), school_id=directory.school_a.id)
    assert job["status"] == "failed"
    assert [(error["row"], error["field"]) for error in job["errors"]] == [(2, "student_number")]
    assert students_of(directory, directory.school_a.id) == {}
    assert set(students_of(directory, directory.school_b.id)) == {"王雨桐"}


# ----------------------------------------------------------------------------- guardians and teachers


async def test_guardians_import_links_children_by_student_number(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    await run_import(client, token, students_csv().encode(), school_id=directory.school_a.id)
    numbers = {name: "G" + resident_id(born, sequence) for name, _sex, born, sequence in PUPILS}
    guardians = csv_text(
        ("姓名", "手机号", "学生学籍号", "关系"),
        [
            ["王建华", "13812340001", numbers["王雨桐"], "父亲"],
            ["李丽娟", "138 1234 0002", numbers["李子轩"], "妈妈"],
            ["李丽娟", "13812340002", numbers["刘浩然"], "母亲"],  # one mother, two children
            ["张奶奶", "13812340003", "G" + resident_id(date(2016, 1, 1), 2), "奶奶"],  # no such pupil
        ],
    )
    job = await run_import(
        client, token, guardians.encode(), school_id=directory.school_a.id, kind="guardians", mode="valid_rows",
        filename="家长.csv",
    )  # fmt: skip
    assert job["status"] == "partially_succeeded", job
    assert job["created_count"] == 2  # 王建华 and 李丽娟
    assert [(error["row"], error["field"]) for error in job["errors"]] == [(5, "student_number")]

    pupils = students_of(directory, directory.school_a.id)
    with directory.database.session() as session:
        links = session.exec(select(GuardianLink)).all()
        guardian_names = {row.id: row.name for row in session.exec(select(Person).where(Person.kind == "guardian"))}
    seen = {(guardian_names[link.guardian_id], link.student_id, link.relationship) for link in links}
    assert seen == {
        ("王建华", pupils["王雨桐"].id, "father"),
        ("李丽娟", pupils["李子轩"].id, "mother"),
        ("李丽娟", pupils["刘浩然"].id, "mother"),
    }
    assert count(directory, RoleGrant, RoleGrant.role == "parent") == 2
    assert count(directory, OutboxEvent, OutboxEvent.event_type == "edu.identity.guardian.linked.v1") == 3
    # Visible through the API as well.
    listed = await client.get(f"/people/{pupils['刘浩然'].id}/guardians", headers=bearer(token))
    assert [item["relationship"] for item in listed.json()] == ["mother"]
    # Importing the same list again changes nothing.
    events = count(directory, OutboxEvent)
    again = await run_import(
        client, token, guardians.encode(), school_id=directory.school_a.id, kind="guardians", mode="valid_rows",
        filename="家长.csv",
    )  # fmt: skip
    assert (again["created_count"], again["updated_count"]) == (0, 0)
    assert count(directory, OutboxEvent) == events


async def test_teachers_import_grants_the_teacher_role(
    client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory
) -> None:
    token = token_for(directory.school_admin_a)
    teachers = csv_text(
        ("姓名", "性别", "手机号", "工号"),
        [["黄志强", "男", "13712340001", "T001"], ["陈丽华", "女", "13712340002", "T002"]],
    )
    job = await run_import(
        client, token, teachers.encode("gbk"), school_id=directory.school_a.id, kind="teachers",
        filename="教师.csv",
    )  # fmt: skip
    assert job["status"] == "succeeded", job
    assert job["created_count"] == 2
    with directory.database.session() as session:
        rows = session.exec(
            select(Person.name, RoleGrant.role, RoleGrant.org_id).join(RoleGrant, RoleGrant.person_id == Person.id)
            .where(Person.org_id == directory.school_a.id, RoleGrant.role == "teacher")
        ).all()  # fmt: skip
    assert {tuple(row) for row in rows} == {
        ("黄志强", "teacher", directory.school_a.id),
        ("陈丽华", "teacher", directory.school_a.id),
        ("林慧敏", "teacher", directory.school_a.id),  # already there
    }


# ------------------------------------------------------------------------------------ refused uploads


async def test_bad_input(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    school = directory.school_a.id
    header = list(HEADER)
    row = pupil_row(*PUPILS[0])

    formula = xlsx([header, row, [*row[:3], "=D2", row[4]]])
    response = await upload(client, token, formula, school_id=school, filename="学生名单.xlsx")
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "formula"
    assert response.json()["errors"][0]["row"] == 3

    merged = xlsx([["学生信息", None, None, None, None], header, row], merge="A1:E1")
    response = await upload(client, token, merged, school_id=school, filename="学生名单.xlsx")
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "merged_cells"

    missing = csv_text(("姓名", "性别"), [["王雨桐", "女"]]).encode()
    response = await upload(client, token, missing, school_id=school)
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["student_number"]

    response = await upload(
        client, token, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1legacy", school_id=school, filename="a.xls"
    )
    assert response.status_code == 415
    response = await upload(client, token, students_csv().encode(), school_id=school, kind="pupils")
    assert response.status_code == 422
    response = await client.post("/imports", data={"kind": "students", "school_id": school}, headers=bearer(token))
    assert response.status_code == 422  # no file
    response = await upload(client, token, students_csv().encode(), school_id="no-such-school")
    assert response.status_code == 404
    city = token_for(directory.city_admin)
    response = await upload(client, city, students_csv().encode(), school_id=directory.district_a.id)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "school_id"
    assert count(directory, ImportJob) == 0
    assert count(directory, Person, Person.kind == "student") == 0


@pytest.fixture
async def small_app(settings: IdentitySettings) -> AsyncIterator[FastAPI]:
    """A second instance of the service on the same database, accepting uploads of at most 2 KB."""
    application = create_app(settings.model_copy(update={"import_max_bytes": 2048}))
    async with application.router.lifespan_context(application):
        yield application


async def test_oversized_upload_is_413(small_app: FastAPI, directory: Directory, token_for: TokenFactory) -> None:
    token = token_for(directory.school_admin_a)
    pupils = [(f"学生{index:03d}", "男", date(2015, 9, 1), 2 * index + 1) for index in range(60)]
    content = students_csv(pupils).encode()
    assert len(content) > 2048
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small_app), base_url="http://identity.test") as http:
        response = await upload(http, token, content, school_id=directory.school_a.id)
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/payload-too-large")
        small = await upload(http, token, students_csv(PUPILS[:1]).encode(), school_id=directory.school_a.id)
        assert small.status_code == 202
    assert count(directory, ImportJob) == 1


# ----------------------------------------------------------------------------------------- wrong school


async def test_wrong_school(client: httpx.AsyncClient, directory: Directory, token_for: TokenFactory) -> None:
    own = token_for(directory.school_admin_a)
    job = await run_import(client, own, students_csv(PUPILS[:1]).encode(), school_id=directory.school_a.id)
    other = token_for(directory.school_admin_b)
    response = await upload(client, other, students_csv(PUPILS[1:]).encode(), school_id=directory.school_a.id)
    assert response.status_code == 403
    assert response.json()["type"].endswith("/forbidden")
    read = await client.get(f"/imports/{job['id']}", headers=bearer(other))
    assert read.status_code == 404
    assert read.json()["type"] == (await client.get("/imports/nope", headers=bearer(other))).json()["type"]
    listed = await client.get("/imports", params={"school_id": directory.school_a.id}, headers=bearer(other))
    assert listed.status_code == 403
    # A teacher of the school itself may not import either.
    teacher = token_for(directory.teacher_a)
    response = await upload(client, teacher, students_csv(PUPILS[1:]).encode(), school_id=directory.school_a.id)
    assert response.status_code == 403
    assert count(directory, ImportJob) == 1
    assert set(students_of(directory, directory.school_a.id)) == {"王雨桐"}
    with directory.database.session() as session:
        job_row = session.get(ImportJob, job["id"])
        assert job_row is not None and json.loads(job_row.errors) == []


async def test_a_job_interrupted_by_a_restart_runs_again_on_the_next_start(
    settings: IdentitySettings, directory: Directory, token_for: TokenFactory
) -> None:
    """A job left 'running' by a crashed process is finished by the next instance, without duplicates."""
    from identity.imports import service as imports
    from identity.organisations.models import Organisation

    content = students_csv().encode()
    with directory.database.session() as session:
        school = session.get(Organisation, directory.school_a.id)
        assert school is not None
        table = imports.parse("students", "学生名单.csv", content, max_bytes=10**6, max_rows=1000)
        job = imports.create_job(
            session, kind="students", school=school, mode="all_or_nothing", filename="学生名单.csv",
            content=content, table=table, requested_by=directory.school_admin_a.id,
        )  # fmt: skip
        job.status = "running"  # the process died mid-way
        job_id = job.id
    restarted = create_app(settings)
    async with (
        restarted.router.lifespan_context(restarted),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted), base_url="http://identity.test") as client,
    ):
        result = await finished(client, token_for(directory.school_admin_a), job_id)
    assert result["status"] == "succeeded"
    assert result["created_count"] == len(PUPILS)
    assert sorted(students_of(directory, directory.school_a.id)) == sorted(pupil[0] for pupil in PUPILS)
