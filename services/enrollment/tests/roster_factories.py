"""Roster rows for the OneRoster and change-feed tests, inserted as the academics service would write them.

Each write also notes its change (``changes.record``) in the same transaction, as every writer of a roster
entity must; people come in through identity's events (``City.add_person``), as in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlmodel import select

from enrollment.academics.models import (
    AcademicSession,
    ClassMembership,
    ClassTeacher,
    Course,
    SchoolClass,
    StudentEnrollment,
)
from enrollment.changes import service as changes
from enrollment.testing import City
from kit.db import Database


def add_school_year(
    database: Database, org_id: str, *, year: int = 2027, school_id: str | None = None
) -> tuple[str, list[str]]:
    """A school year ending in ``year`` with its two terms; returns the ids of the year and of its terms."""
    with database.session() as session:
        school_year = AcademicSession(
            org_id=org_id,
            kind="school_year",
            title=f"{year - 1}-{year}学年",
            school_year=year,
            start_date=date(year - 1, 9, 1),
            end_date=date(year, 7, 31),
        )
        session.add(school_year)
        session.flush()
        terms = [
            AcademicSession(
                org_id=org_id,
                kind="term",
                title=f"{year - 1}-{year}学年{name}",
                school_year=year,
                start_date=start,
                end_date=end,
                parent_id=school_year.id,
            )
            for name, start, end in (
                ("第一学期", date(year - 1, 9, 1), date(year, 1, 20)),
                ("第二学期", date(year, 2, 20), date(year, 7, 10)),
            )
        ]
        session.add_all(terms)
        session.flush()
        for item in [school_year, *terms]:
            changes.record(session, entity="academicSessions", entity_id=item.id, school_id=school_id)
        return school_year.id, [term.id for term in terms]


def add_course(
    database: Database,
    school_id: str,
    school_year_id: str,
    *,
    code: str,
    title: str,
    grade: str = "01",
    subject: str | None = None,
) -> str:
    with database.session() as session:
        course = Course(
            school_id=school_id,
            school_year_id=school_year_id,
            course_code=code,
            title=title,
            grade=grade,
            subject=subject,
        )
        session.add(course)
        session.flush()
        changes.record(session, entity="courses", entity_id=course.id, school_id=school_id)
        return course.id


def add_class(
    database: Database,
    school_id: str,
    school_year_id: str,
    course_id: str,
    *,
    grade: str,
    number: int,
    name: str,
    class_type: str = "homeroom",
) -> str:
    with database.session() as session:
        school_class = SchoolClass(
            school_id=school_id,
            school_year_id=school_year_id,
            course_id=course_id,
            grade=grade,
            number=number,
            name=name,
            class_type=class_type,
        )
        session.add(school_class)
        session.flush()
        changes.record(session, entity="classes", entity_id=school_class.id, school_id=school_id)
        return school_class.id


def place(
    database: Database,
    class_id: str,
    school_id: str,
    student_id: str,
    *,
    start: date = date(2026, 9, 1),
    end: date | None = None,
    homeroom: bool = True,
) -> str:
    """A pupil's membership of a class (ended when ``end`` is given); ``homeroom`` False for a teaching group."""
    with database.session() as session:
        membership = ClassMembership(
            class_id=class_id,
            school_id=school_id,
            student_id=student_id,
            start_date=start,
            end_date=end,
            reason="left" if end else "assigned",
            homeroom=homeroom,
        )
        session.add(membership)
        session.flush()
        changes.record(
            session,
            entity="enrollments",
            entity_id=membership.id,
            school_id=school_id,
            operation="delete" if end else "upsert",
        )
        return membership.id


def assign_teacher(
    database: Database,
    class_id: str,
    school_id: str,
    teacher_id: str,
    *,
    role: str = "head",
    subject: str | None = None,
) -> str:
    with database.session() as session:
        assignment = ClassTeacher(
            class_id=class_id,
            school_id=school_id,
            teacher_id=teacher_id,
            role=role,
            subject=subject,
            start_date=date(2026, 9, 1),
        )
        session.add(assignment)
        session.flush()
        changes.record(session, entity="enrollments", entity_id=assignment.id, school_id=school_id)
        return assignment.id


def enrol(database: Database, student_id: str, school_id: str, *, grade: str = "01") -> None:
    """The pupil's 学籍 at the school in ``grade`` (gives the OneRoster user its grade).

    The service enrols a student when identity announces them, without a grade; that enrolment gets the grade.
    """
    with database.session() as session:
        enrolment = session.exec(
            select(StudentEnrollment).where(
                StudentEnrollment.student_id == student_id, StudentEnrollment.school_id == school_id
            )
        ).first()
        if enrolment is None:
            enrolment = StudentEnrollment(
                student_id=student_id, school_id=school_id, source="directory", start_date=date(2026, 9, 1)
            )
        enrolment.grade = grade
        session.add(enrolment)


@dataclass
class Roster:
    """The rosters built by :func:`build_roster`, by name."""

    school_year: str
    b1_school_year: str
    term: str
    b1_term: str
    courses: dict[str, str] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    students: dict[str, str] = field(default_factory=dict)
    memberships: dict[str, str] = field(default_factory=dict)
    assignments: dict[str, str] = field(default_factory=dict)


STUDENTS_A1 = {
    "wang": ("王小明", "male", "G110105201901010017"),
    "ouyang": ("欧阳子轩", "male", "G110105201902020015"),
    "li": ("李思涵", "female", "G110105201903030021"),
    "zhao": ("赵一", "female", "G110105201904040027"),
}
STUDENTS_B1 = {
    "chen": ("陈雨桐", "female", "G110105201905050023"),
    "liu": ("刘浩然", "male", "G110105201906060011"),
}


def build_roster(city: City) -> Roster:
    """Two first-grade homerooms and a maths group at 春晓一小 (A1), one homeroom at 秋实小学 (B1).

    A1's class 1 has 王小明, 欧阳子轩 and 李思涵 (head teacher 王老师, maths teacher 李老师); class 2 has 赵一
    and had 李思涵 before she moved to class 1. B1's class has 陈雨桐 and 刘浩然 (head teacher 赵老师).
    """
    database = city.database
    school_year, terms = add_school_year(database, city.city_id)
    b1_year, b1_terms = add_school_year(database, city.school_b1, year=2026, school_id=city.school_b1)
    roster = Roster(school_year=school_year, b1_school_year=b1_year, term=terms[0], b1_term=b1_terms[0])
    roster.courses["a1_homeroom"] = add_course(database, city.school_a1, school_year, code="G01-HR", title="一年级")
    roster.courses["a1_maths"] = add_course(
        database, city.school_a1, school_year, code="G01-MA", title="一年级数学", subject="数学"
    )
    roster.courses["b1_homeroom"] = add_course(database, city.school_b1, b1_year, code="G01-HR", title="一年级")
    roster.classes["a1_1"] = add_class(
        database, city.school_a1, school_year, roster.courses["a1_homeroom"], grade="01", number=1, name="一年级(1)班"
    )
    roster.classes["a1_2"] = add_class(
        database, city.school_a1, school_year, roster.courses["a1_homeroom"], grade="01", number=2, name="一年级(2)班"
    )
    roster.classes["a1_maths"] = add_class(
        database,
        city.school_a1,
        school_year,
        roster.courses["a1_maths"],
        grade="01",
        number=9,
        name="一年级数学A组",
        class_type="scheduled",
    )
    roster.classes["b1_1"] = add_class(
        database, city.school_b1, b1_year, roster.courses["b1_homeroom"], grade="01", number=1, name="一年级(1)班"
    )
    for key, (name, sex, number) in STUDENTS_A1.items():
        person = city.add_person(key, kind="student", name=name, org_id=city.school_a1, sex=sex, student_number=number)
        roster.students[key] = person.id
        enrol(database, person.id, city.school_a1)
    for key, (name, sex, number) in STUDENTS_B1.items():
        person = city.add_person(key, kind="student", name=name, org_id=city.school_b1, sex=sex, student_number=number)
        roster.students[key] = person.id
        enrol(database, person.id, city.school_b1)
    a1, b1 = city.school_a1, city.school_b1
    for key in ("wang", "ouyang", "li"):
        roster.memberships[key] = place(database, roster.classes["a1_1"], a1, roster.students[key])
    roster.memberships["zhao"] = place(database, roster.classes["a1_2"], a1, roster.students["zhao"])
    roster.memberships["li_before"] = place(
        database, roster.classes["a1_2"], a1, roster.students["li"], start=date(2026, 8, 25), end=date(2026, 8, 31)
    )
    for key in ("chen", "liu"):
        roster.memberships[key] = place(database, roster.classes["b1_1"], b1, roster.students[key])
    roster.assignments["a1_head"] = assign_teacher(database, roster.classes["a1_1"], a1, city.people["a1_teacher"].id)
    roster.assignments["a1_maths"] = assign_teacher(
        database, roster.classes["a1_1"], a1, city.people["a1_teacher2"].id, role="subject", subject="数学"
    )
    roster.assignments["b1_head"] = assign_teacher(database, roster.classes["b1_1"], b1, city.people["b1_teacher"].id)
    return roster
