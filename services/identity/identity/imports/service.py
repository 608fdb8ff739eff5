"""Bulk import of students, teachers and guardians from CSV or XLSX.

A job first validates every row (collecting row, column and reason), then writes. In
``all_or_nothing`` mode one bad row fails the job and nothing is written; in ``valid_rows`` mode the
good rows are written and the bad ones reported. Rows are matched to existing people by their
natural key (student number; a teacher's phone or staff number; a guardian's phone), so importing
the same file again changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from pydantic import ValidationError
from sqlmodel import Session, col, select

from identity.errors import InvalidPersonData
from identity.imports.models import ImportJob, ImportUpload
from identity.imports.parsing import ParsedTable, parse_upload, require_columns
from identity.organisations.models import Organisation
from identity.people import service as people
from identity.people.models import GuardianLink, Person
from identity.people.schemas import PersonCreate
from kit.crypto import FieldCipher
from kit.db import Database
from kit.errors import FieldError
from kit.identifiers import validate_student_number

logger = logging.getLogger("identity.imports")

CHUNK_ROWS = 1000
MAX_REPORTED_ERRORS = 1000

COLUMNS: dict[str, dict[str, str]] = {
    "students": {
        "姓名": "name", "name": "name",
        "性别": "sex", "sex": "sex",
        "出生日期": "birth_date", "birth_date": "birth_date",
        "身份证号": "resident_id_number", "身份证号码": "resident_id_number",
        "resident_id_number": "resident_id_number",
        "学籍号": "student_number", "全国学籍号": "student_number", "student_number": "student_number",
    },
    "teachers": {
        "姓名": "name", "name": "name",
        "性别": "sex", "sex": "sex",
        "手机号": "phone", "手机号码": "phone", "phone": "phone",
        "工号": "staff_number", "staff_number": "staff_number",
        "身份证号": "resident_id_number", "身份证号码": "resident_id_number",
        "resident_id_number": "resident_id_number",
    },
    "guardians": {
        "姓名": "name", "name": "name",
        "手机号": "phone", "手机号码": "phone", "phone": "phone",
        "学生学籍号": "student_number", "student_number": "student_number",
        "关系": "relationship", "与学生关系": "relationship", "relationship": "relationship",
    },
}  # fmt: skip
REQUIRED = {
    "students": ("name", "sex", "student_number"),
    "teachers": ("name", "phone"),
    "guardians": ("name", "phone", "student_number", "relationship"),
}
SEX_WORDS = {"男": "male", "女": "female", "male": "male", "female": "female", "m": "male", "f": "female"}
RELATIONSHIP_WORDS = {
    "父亲": "father", "父": "father", "爸爸": "father", "father": "father",
    "母亲": "mother", "母": "mother", "妈妈": "mother", "mother": "mother",
    "祖父母": "grandparent", "爷爷": "grandparent", "奶奶": "grandparent", "外公": "grandparent",
    "外婆": "grandparent", "grandparent": "grandparent",
    "其他亲属": "other_relative", "other_relative": "other_relative",
    "法定监护人": "legal_guardian", "监护人": "legal_guardian", "legal_guardian": "legal_guardian",
}  # fmt: skip


def parse(kind: str, filename: str, content: bytes, *, max_bytes: int, max_rows: int) -> ParsedTable:
    """Read the file and check its columns; structural problems are raised before any job exists."""
    table = parse_upload(filename, content, max_bytes=max_bytes, max_rows=max_rows, columns=COLUMNS[kind])
    require_columns(table, REQUIRED[kind])
    return table


def create_job(
    session: Session, *, kind: str, school: Organisation, mode: str, filename: str, content: bytes,
    table: ParsedTable, requested_by: str,
) -> ImportJob:  # fmt: skip
    job = ImportJob(
        kind=kind, school_id=school.id, mode=mode, filename=filename[:200], content_sha256=table.content_sha256,
        file_format=table.format, encoding=table.encoding, total_rows=len(table.rows), requested_by=requested_by,
    )  # fmt: skip
    session.add(job)
    session.flush()
    session.add(ImportUpload(job_id=job.id, content=content))
    session.flush()
    return job


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[FieldError] = field(default_factory=list)
    failed_rows: set[int] = field(default_factory=set)

    def fail(self, row: int, column: str, message: str) -> None:
        self.failed_rows.add(row)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(FieldError(row=row, field=column, message=message))


@dataclass(frozen=True)
class _Prepared:
    row: int
    person: people.CleanPerson
    relationship: str | None = None
    child_number: str | None = None  # guardians: the student number of their child


def _prepare_row(
    kind: str, school: Organisation, row: int, values: dict[str, str], outcome: _Outcome
) -> _Prepared | None:
    sex = values.get("sex", "").strip().lower()
    if sex and sex not in SEX_WORDS:
        outcome.fail(row, "sex", "性别应为“男”或“女” / sex must be 男 or 女")
        return None
    relationship = child_number = None
    if kind == "guardians":
        relationship = RELATIONSHIP_WORDS.get(values.get("relationship", "").strip().lower())
        if relationship is None:
            outcome.fail(row, "relationship", "关系应为父亲、母亲、祖父母、其他亲属或法定监护人 / unknown relationship")
            return None
        try:
            child_number = validate_student_number(values.get("student_number", ""))
        except ValueError as error:
            outcome.fail(row, "student_number", str(error))
            return None
    birth_date: date | None = None
    if values.get("birth_date"):
        try:
            birth_date = date.fromisoformat(values["birth_date"].replace("/", "-"))
        except ValueError:
            outcome.fail(row, "birth_date", "日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD")
            return None
    try:
        data = PersonCreate(
            kind={"students": "student", "teachers": "staff", "guardians": "guardian"}[kind],
            name=values.get("name", ""),
            org_id=school.id,
            sex=SEX_WORDS.get(sex) if sex else None,
            birth_date=birth_date,
            resident_id_number=values.get("resident_id_number") or None,
            student_number=(values.get("student_number") or None) if kind == "students" else None,
            staff_number=values.get("staff_number") or None,
            phone=values.get("phone") or None,
        )
        cleaned = people.clean(data, school)
    except ValidationError as error:
        for item in error.errors():
            outcome.fail(row, ".".join(str(part) for part in item["loc"]), str(item["msg"]))
        return None
    except InvalidPersonData as problem:
        for item in problem.errors:
            outcome.fail(row, item.field, item.message)
        return None
    return _Prepared(row=row, person=cleaned, relationship=relationship, child_number=child_number)


class ImportRunner:
    """Runs import jobs one at a time on a worker thread, tracking progress for polling."""

    def __init__(self, database: Database, cipher: FieldCipher, *, max_bytes: int, max_rows: int) -> None:
        self.database = database
        self.cipher = cipher
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="identity-import")
        self._progress: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def progress(self, job_id: str) -> tuple[str, int] | None:
        """(phase, rows done in that phase) of a running job, for polling."""
        with self._lock:
            return self._progress.get(job_id)

    def _set_progress(self, job_id: str, phase: str, done: int) -> None:
        with self._lock:
            self._progress[job_id] = (phase, done)

    def submit(self, job_id: str, table: ParsedTable | None = None) -> None:
        self._executor.submit(self._run_safely, job_id, table)

    def resume_unfinished(self) -> None:
        """After a restart, run again the jobs that were queued or interrupted (imports are idempotent)."""
        with self.database.session() as session:
            job_ids = session.exec(
                select(ImportJob.id)
                .where(col(ImportJob.status).in_(["queued", "running"]))
                .order_by(col(ImportJob.created_at))
            ).all()
        for job_id in job_ids:
            self.submit(job_id)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run_safely(self, job_id: str, table: ParsedTable | None) -> None:
        try:
            self.run(job_id, table)
        except Exception as error:
            logger.exception("import job %s failed", job_id)
            with self.database.session() as session:
                job = session.get(ImportJob, job_id)
                if job is not None:
                    job.status, job.finished_at = "failed", datetime.now(UTC)
                    job.failure_reason = f"internal error: {type(error).__name__}"[:500]
                    session.add(job)
        finally:
            with self._lock:
                self._progress.pop(job_id, None)

    def run(self, job_id: str, table: ParsedTable | None = None) -> None:
        with self.database.session() as session:
            job = session.get(ImportJob, job_id)
            assert job is not None
            job.status, job.started_at, job.processed_rows = "running", datetime.now(UTC), 0
            session.add(job)
            kind, mode, school_id = job.kind, job.mode, job.school_id
            if table is None:
                upload = session.get(ImportUpload, job_id)
                assert upload is not None
                table = parse(kind, job.filename, upload.content, max_bytes=self.max_bytes, max_rows=self.max_rows)
        outcome = _Outcome()
        with self.database.session() as session:
            school = session.get(Organisation, school_id)
            assert school is not None
            prepared = self._validate(session, kind, school, table, outcome, job_id)
        if outcome.failed_rows and mode == "all_or_nothing":
            self._finish(job_id, "failed", outcome, processed=len(table.rows),
                         reason=f"{len(outcome.failed_rows)} rows have errors; nothing was imported")  # fmt: skip
            return
        if mode == "all_or_nothing":
            with self.database.session() as session:
                self._write(session, kind, school_id, prepared, outcome, job_id, base=0)
        else:
            for start in range(0, len(prepared), CHUNK_ROWS):
                with self.database.session() as session:
                    self._write(
                        session,
                        kind,
                        school_id,
                        prepared[start : start + CHUNK_ROWS],
                        outcome,
                        job_id,
                        base=start,
                    )
        status = "partially_succeeded" if outcome.failed_rows else "succeeded"
        self._finish(job_id, status, outcome, processed=len(table.rows))

    def _validate(
        self,
        session: Session,
        kind: str,
        school: Organisation,
        table: ParsedTable,
        outcome: _Outcome,
        job_id: str,
    ) -> list[_Prepared]:
        prepared: list[_Prepared] = []
        seen: dict[tuple[str, str], int] = {}
        for index, (row, values) in enumerate(table.rows, start=1):
            item = _prepare_row(kind, school, row, values, outcome)
            if item is not None:
                duplicate = self._duplicate_in_file(kind, item, seen)
                if duplicate is not None:
                    column, first_row = duplicate
                    outcome.fail(row, column, f"与第{first_row}行重复 / duplicates row {first_row}")
                else:
                    prepared.append(item)
            if index % CHUNK_ROWS == 0:
                self._set_progress(job_id, "validating", index)
        return self._check_against_directory(session, kind, school, prepared, outcome)

    @staticmethod
    def _duplicate_in_file(kind: str, item: _Prepared, seen: dict[tuple[str, str], int]) -> tuple[str, int] | None:
        keys: list[tuple[str, str]] = []
        person = item.person
        if person.student_number:
            keys.append(("student_number", person.student_number))
        if person.resident_id_number:
            keys.append(("resident_id_number", person.resident_id_number))
        if kind != "students" and person.phone:
            # A guardian with two children appears on two rows; only the same child twice is a duplicate.
            student = item.child_number if kind == "guardians" else ""
            keys.append(("phone", f"{person.phone}|{student}|{item.relationship or ''}"))
        for key in keys:
            if key in seen:
                return key[0], seen[key]
        for key in keys:
            seen[key] = item.row
        return None

    def _check_against_directory(
        self, session: Session, kind: str, school: Organisation, prepared: list[_Prepared], outcome: _Outcome
    ) -> list[_Prepared]:
        """Reject rows whose unique identifiers belong to someone else (another school's student, say)."""
        cipher = self.cipher
        kept: list[_Prepared] = []
        for start in range(0, len(prepared), CHUNK_ROWS):
            chunk = prepared[start : start + CHUNK_ROWS]
            existing = _existing_people(session, kind, school.id, [item.person for item in chunk], cipher)
            hashes = [
                cipher.lookup_hash("resident_id", i.person.resident_id_number)
                for i in chunk
                if i.person.resident_id_number
            ]
            owners = select(Person.resident_id_hash, Person.id).where(col(Person.resident_id_hash).in_(hashes))
            id_owner = dict(session.exec(owners).all()) if hashes else {}
            numbers = [i.person.student_number for i in chunk if kind == "students" and i.person.student_number]
            foreign_students = set(
                session.exec(
                    select(Person.student_number).where(
                        col(Person.student_number).in_(numbers), Person.org_id != school.id
                    )
                ).all()
            ) if numbers else set()  # fmt: skip
            for item in chunk:
                person = item.person
                if kind == "students" and person.student_number in foreign_students:
                    outcome.fail(
                        item.row,
                        "student_number",
                        "该学籍号属于其他学校的学生，请办理转学 / belongs to a student of another school",
                    )
                    continue
                if person.resident_id_number:
                    owner = id_owner.get(cipher.lookup_hash("resident_id", person.resident_id_number))
                    match = existing.get(_natural_key(kind, person, cipher))
                    if owner is not None and (match is None or match.id != owner):
                        outcome.fail(
                            item.row,
                            "resident_id_number",
                            "身份证号已登记给其他人 / registered to another person",
                        )
                        continue
                if kind == "guardians":
                    child = session.exec(
                        select(Person.id).where(Person.student_number == item.child_number, Person.org_id == school.id)
                    ).first() if item.child_number else None  # fmt: skip
                    if child is None:
                        outcome.fail(
                            item.row,
                            "student_number",
                            "本校没有该学籍号的学生 / no such student in this school",
                        )
                        continue
                kept.append(item)
        return kept

    def _write(
        self,
        session: Session,
        kind: str,
        school_id: str,
        items: list[_Prepared],
        outcome: _Outcome,
        job_id: str,
        *,
        base: int,
    ) -> None:
        cipher = self.cipher
        school = session.get(Organisation, school_id)
        assert school is not None
        role = "teacher" if kind == "teachers" else None
        for start in range(0, len(items), CHUNK_ROWS):
            chunk = items[start : start + CHUNK_ROWS]
            existing = _existing_people(session, kind, school_id, [item.person for item in chunk], cipher)
            new: dict[str, _Prepared] = {}
            for item in chunk:
                key = _natural_key(kind, item.person, cipher)
                match = existing.get(key)
                if match is None and key in new:
                    outcome.unchanged += 1  # a guardian with two children: one person on two rows
                elif match is None:
                    new[key] = item
                elif people.apply_changes(session, match, item.person, cipher):
                    outcome.updated += 1
                else:
                    outcome.unchanged += 1
            people.create_many(session, [item.person for item in new.values()], cipher, organisation=school, role=role)
            outcome.created += len(new)
            if kind == "guardians":
                existing = _existing_people(session, kind, school_id, [item.person for item in chunk], cipher)
                for item in chunk:
                    if item.child_number:
                        guardian = existing[_natural_key(kind, item.person, cipher)]
                        self._link(
                            session, guardian, item.child_number, school_id, item.relationship or "other_relative"
                        )
            session.flush()
            self._set_progress(job_id, "writing", base + start + len(chunk))

    @staticmethod
    def _link(session: Session, guardian: Person, student_number: str, school_id: str, relationship: str) -> None:
        student = session.exec(
            select(Person).where(Person.student_number == student_number, Person.org_id == school_id)
        ).first()
        if student is None:
            return
        existing = session.exec(
            select(GuardianLink).where(GuardianLink.guardian_id == guardian.id, GuardianLink.student_id == student.id)
        ).first()
        if existing is None or not existing.active or existing.relationship != relationship:
            people.link_guardian(session, student, guardian, relationship=relationship, linked_by=None)

    def _finish(
        self, job_id: str, status: str, outcome: _Outcome, *, processed: int, reason: str | None = None
    ) -> None:
        with self.database.session() as session:
            job = session.get(ImportJob, job_id)
            assert job is not None
            job.status, job.finished_at, job.processed_rows = status, datetime.now(UTC), processed
            job.created_count, job.updated_count = outcome.created, outcome.updated
            job.unchanged_count, job.failed_count = outcome.unchanged, len(outcome.failed_rows)
            job.errors = json.dumps(
                [error.model_dump(exclude_none=True) for error in sorted(outcome.errors, key=lambda e: e.row or 0)],
                ensure_ascii=False,
            )
            job.failure_reason = reason
            session.add(job)


def _natural_key(kind: str, person: people.CleanPerson, cipher: FieldCipher) -> str:
    if kind == "students":
        return f"student:{person.student_number}"
    if kind == "teachers" and person.staff_number:
        return f"staff:{person.staff_number}"
    return f"phone:{cipher.lookup_hash('phone', person.phone or '')}"


def _existing_people(
    session: Session, kind: str, school_id: str, persons: Iterable[people.CleanPerson], cipher: FieldCipher
) -> dict[str, Person]:
    persons = list(persons)
    found: dict[str, Person] = {}
    if kind == "students":
        numbers = [p.student_number for p in persons if p.student_number]
        for row in session.exec(select(Person).where(col(Person.student_number).in_(numbers))).all():
            found[f"student:{row.student_number}"] = row
        return found
    person_kind = "staff" if kind == "teachers" else "guardian"
    hashes = [cipher.lookup_hash("phone", p.phone) for p in persons if p.phone]
    query = select(Person).where(
        Person.kind == person_kind, Person.org_id == school_id, col(Person.phone_hash).in_(hashes)
    )
    for row in session.exec(query).all():
        found[f"phone:{row.phone_hash}"] = row
    if kind == "teachers":
        staff_numbers = [p.staff_number for p in persons if p.staff_number]
        query = select(Person).where(
            Person.kind == "staff", Person.org_id == school_id, col(Person.staff_number).in_(staff_numbers)
        )
        for row in session.exec(query).all():
            found[f"staff:{row.staff_number}"] = row
    return found
