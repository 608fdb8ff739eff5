"""Tables of the academic structure every app reads: sessions, courses, classes, teachers, students, membership."""

from __future__ import annotations

from datetime import date, datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow


def new_id() -> str:
    return str(uuid4())


class AcademicSession(SQLModel, table=True):
    """A school year (学年) or a term (学期) within one; defined city-wide (org = the city) or by a school."""

    __tablename__ = "academic_session"
    __table_args__ = (sa.UniqueConstraint("org_id", "kind", "title"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    org_id: str = Field(index=True, max_length=36)
    kind: str = Field(max_length=16)  # school_year | term
    title: str = Field(max_length=64)  # "2026-2027学年", "2026-2027学年第一学期"
    school_year: int = Field(index=True)  # the calendar year the school year ends in (OneRoster schoolYear)
    start_date: date
    end_date: date
    parent_id: str | None = Field(default=None, foreign_key="academic_session.id", max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)
    deleted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Course(SQLModel, table=True):
    """What a class teaches in a school year: a subject at a grade, or the homeroom (行政班) itself."""

    __tablename__ = "course"
    __table_args__ = (sa.UniqueConstraint("school_id", "school_year_id", "course_code"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    school_year_id: str = Field(foreign_key="academic_session.id", index=True, max_length=36)
    course_code: str = Field(max_length=64)
    title: str = Field(max_length=100)
    grade: str = Field(max_length=2)  # CEDS grade level code, "01".."12"
    subject: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)
    deleted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SchoolClass(SQLModel, table=True):
    """A class: the homeroom (行政班) pupils belong to, or a teaching group scheduled for a course."""

    __tablename__ = "school_class"
    # Unique among live classes only: a deleted class keeps its row (membership history points at it), and its
    # name and number may be used again.
    __table_args__ = (
        sa.Index(
            "uq_school_class_live_name",
            "school_id",
            "school_year_id",
            "name",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
        sa.Index(
            "uq_school_class_live_number",
            "school_id",
            "school_year_id",
            "grade",
            "number",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL AND class_type = 'homeroom'"),
            sqlite_where=sa.text("deleted_at IS NULL AND class_type = 'homeroom'"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    school_year_id: str = Field(foreign_key="academic_session.id", index=True, max_length=36)
    course_id: str = Field(foreign_key="course.id", index=True, max_length=36)
    grade: str = Field(max_length=2)
    number: int  # the (1) in 一年级(1)班
    name: str = Field(max_length=64)
    class_type: str = Field(default="homeroom", max_length=16)  # homeroom | scheduled
    head_teacher_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)
    deleted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class ClassTeacher(SQLModel, table=True):
    """A teacher's assignment to a class: head teacher (班主任) or the teacher of a subject, over a period."""

    __tablename__ = "class_teacher"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    class_id: str = Field(foreign_key="school_class.id", index=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    teacher_id: str = Field(index=True, max_length=36)
    role: str = Field(max_length=16)  # head | subject
    subject: str | None = Field(default=None, max_length=32)
    start_date: date
    end_date: date | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)


class StudentEnrollment(SQLModel, table=True):
    """A pupil's enrolment at a school (学籍 at this school): from admission or from the directory."""

    __tablename__ = "student_enrollment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    student_id: str = Field(index=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    school_year_id: str | None = Field(default=None, max_length=36)
    # Known for admitted pupils (the entry grade) and once a pupil joins a class; None for a pupil who arrived
    # from the directory (identity's events carry no grade) until then.
    grade: str | None = Field(default=None, max_length=2)
    status: str = Field(default="active", max_length=16)  # active | transferred | graduated | withdrawn
    source: str = Field(max_length=16)  # admission | directory
    admission_application_id: str | None = Field(default=None, max_length=36)
    start_date: date
    end_date: date | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)


class ClassMembership(SQLModel, table=True):
    """A pupil in a class over a period; a transfer ends one membership and starts another, history kept."""

    __tablename__ = "class_membership"
    __table_args__ = (
        sa.Index("ix_class_membership_current", "class_id", "end_date"),
        # A pupil is in one homeroom class at a time, also when two placements race (checked in code first).
        sa.Index(
            "uq_class_membership_one_homeroom",
            "student_id",
            unique=True,
            postgresql_where=sa.text("end_date IS NULL AND homeroom"),
            sqlite_where=sa.text("end_date IS NULL AND homeroom"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    class_id: str = Field(foreign_key="school_class.id", index=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    student_id: str = Field(index=True, max_length=36)
    start_date: date
    end_date: date | None = None
    reason: str = Field(max_length=32)  # assigned | balanced_assignment | transfer | left
    homeroom: bool = True  # the pupil's 行政班 (a teaching group of a scheduled class would be False)
    note: str | None = Field(default=None, max_length=200)  # why a pupil moved, as the school recorded it
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), index=True)
