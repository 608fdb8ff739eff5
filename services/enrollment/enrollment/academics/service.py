"""The academic structure as plain functions over a session: every write records its roster changes and emits
its events in the caller's transaction.

Periods (teacher assignments, class membership) are closed intervals of days: a change effective on day D ends
the old period on D-1 and starts the new one on D. A period replaced on the very day it began never took effect;
it is removed rather than kept as an empty interval (the change feed reports its deletion).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlmodel import Session, col, or_, select

from contracts.events.enrollment import ClassChangedV1, ClassDeletedV1, ClassMembershipChangedV1, MembershipReason
from enrollment.academics import balancing
from enrollment.academics.errors import (
    AcademicSessionConflict,
    AcademicSessionNotFound,
    ClassConflict,
    ClassNotEmpty,
    ClassNotFound,
    InvalidAcademicSession,
    InvalidClass,
    InvalidClassAssignment,
    InvalidMembershipDate,
    InvalidTeacherAssignment,
    MembershipConflict,
    StudentNotEnrolled,
    StudentNotFound,
)
from enrollment.academics.models import (
    AcademicSession,
    ClassMembership,
    ClassTeacher,
    Course,
    SchoolClass,
    StudentEnrollment,
)
from enrollment.academics.schemas import (
    AcademicSessionCreate,
    AssignmentSummary,
    ClassAssignmentRead,
    ClassAssignmentRequest,
    ClassCreate,
    ClassRead,
    ClassRef,
    ClassTransfer,
    ClassUpdate,
    EnrolledStudentRead,
    MemberRead,
    MembershipRead,
    PlannedClass,
    PlannedPupil,
    RandomComparison,
    TeacherAssignmentRead,
    TeacherAssignmentWrite,
    TeacherRef,
    TransferRead,
    default_class_name,
    grade_name,
)
from enrollment.changes import service as changes
from enrollment.directory.models import DirectoryOrganisation, DirectoryPerson, DirectoryRole
from enrollment.errors import UnknownSchool
from kit.errors import FieldError
from kit.outbox import PendingEvent, emit, emit_many, utcnow

#: China has kept UTC+8 without daylight saving since 1991, so school days need no time-zone database.
SCHOOL_TIMEZONE = timezone(timedelta(hours=8), "CST")

#: Grades a school of each type teaches (CEDS codes); a type not listed here may open any grade.
GRADES_BY_SCHOOL_TYPE: dict[str, frozenset[str]] = {
    "primary": frozenset({"01", "02", "03", "04", "05", "06"}),
    "junior": frozenset({"07", "08", "09"}),
    "senior": frozenset({"10", "11", "12"}),
    "nine_year": frozenset({f"{grade:02d}" for grade in range(1, 10)}),
    "twelve_year": frozenset({f"{grade:02d}" for grade in range(1, 13)}),
    "vocational": frozenset({"10", "11", "12"}),
    "kindergarten": frozenset(),
}
HOMEROOM = "homeroom"


def school_today() -> date:
    """Today's date in China, where the schools are (the server may run on UTC)."""
    return datetime.now(UTC).astimezone(SCHOOL_TIMEZONE).date()


# ------------------------------------------------------------------------------------------ helpers


def _school(session: Session, school_id: str) -> DirectoryOrganisation:
    organisation = session.get(DirectoryOrganisation, school_id)
    if organisation is None or organisation.kind != "school":
        raise UnknownSchool(school_id)
    return organisation


def _path_ids(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def _day_before(day: date) -> date:
    return day - timedelta(days=1)


def _note_enrollments(session: Session, rows: Iterable[ClassTeacher | ClassMembership], school_id: str) -> None:
    # OneRoster models both a teacher's and a pupil's place in a class as an "enrollment".
    for row in rows:
        changes.record(session, entity="enrollments", entity_id=row.id, school_id=school_id)


def _end_period(
    session: Session, row: ClassTeacher | ClassMembership, effective_on: date, *, record: bool = True
) -> bool:
    """End ``row`` the day before ``effective_on``; False when it never took effect and was removed instead."""
    if row.start_date >= effective_on:
        session.delete(row)
        session.flush()  # before the period that replaces it is inserted (one open homeroom per pupil)
        if record:
            changes.record(session, entity="enrollments", entity_id=row.id, school_id=row.school_id, operation="delete")
        return False
    row.end_date = _day_before(effective_on)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    if record:
        changes.record(session, entity="enrollments", entity_id=row.id, school_id=row.school_id)
    return True


# ----------------------------------------------------------------------------------------- sessions


def create_academic_session(
    session: Session, data: AcademicSessionCreate, *, organisation: DirectoryOrganisation
) -> AcademicSession:
    """Define a school year (city-wide) or a term (city-wide, or a school's own) after checking its dates."""
    problems: list[FieldError] = []
    if data.end_date <= data.start_date:
        problems.append(
            FieldError(
                field="end_date", message="结束日期必须晚于开始日期；must be after start_date", code="before_start"
            )
        )
    if organisation.kind not in ("city", "school"):
        problems.append(
            FieldError(
                field="org_id", message="学年学期由市或学校设置；must be the city or a school", code="wrong_org_kind"
            )
        )
    elif data.kind == "school_year" and organisation.kind != "city":
        problems.append(
            FieldError(
                field="kind",
                message="学年由全市统一设置，学校只能设置本校学期；school years are city-wide, a school defines terms",
                code="school_year_not_city",
            )
        )
    parent: AcademicSession | None = None
    if data.kind == "school_year" and data.parent_id is not None:
        problems.append(
            FieldError(field="parent_id", message="学年没有上级；a school year has no parent", code="parent")
        )
    if data.kind == "term":
        if data.parent_id is None:
            problems.append(
                FieldError(
                    field="parent_id", message="学期必须属于某一学年；a term needs its school year", code="missing"
                )
            )
        else:
            parent = session.get(AcademicSession, data.parent_id)
            if (
                parent is None
                or parent.deleted_at is not None
                or parent.kind != "school_year"
                or parent.org_id not in _path_ids(organisation.path)
            ):
                raise AcademicSessionNotFound(data.parent_id, field="parent_id")
            if data.start_date < parent.start_date or data.end_date > parent.end_date:
                problems.append(
                    FieldError(
                        field="start_date" if data.start_date < parent.start_date else "end_date",
                        message=(
                            f"学期须在学年 {parent.start_date}–{parent.end_date} 之内；"
                            f"a term lies within its school year {parent.start_date}–{parent.end_date}"
                        ),
                        code="outside_school_year",
                    )
                )
    if problems:
        raise InvalidAcademicSession(
            "学年或学期的日期、类型或上级不正确，见 errors[]；The dates, kind or parent do not fit, see errors[].",
            errors=problems,
        )

    same_title = session.exec(
        select(AcademicSession.id).where(
            AcademicSession.org_id == organisation.id,
            AcademicSession.title == data.title,
            col(AcademicSession.deleted_at).is_(None),
        )
    ).first()
    if same_title is not None:
        raise AcademicSessionConflict(
            f"名称“{data.title}”已被使用；The title {data.title!r} is already used.",
            errors=[FieldError(field="title", message="already used", code="duplicate")],
            conflicting_id=same_title,
        )
    overlapping = select(AcademicSession).where(
        AcademicSession.org_id == organisation.id,
        AcademicSession.kind == data.kind,
        col(AcademicSession.deleted_at).is_(None),
        col(AcademicSession.start_date) <= data.end_date,
        col(AcademicSession.end_date) >= data.start_date,
    )
    if parent is not None:
        overlapping = overlapping.where(AcademicSession.parent_id == parent.id)
    clash = session.exec(overlapping).first()
    if clash is not None:
        what = ("学年", "school year") if data.kind == "school_year" else ("学期", "term")
        raise AcademicSessionConflict(
            f"与{what[0]}“{clash.title}”（{clash.start_date}–{clash.end_date}）日期重叠；"
            f"It overlaps the {what[1]} {clash.title!r} ({clash.start_date}–{clash.end_date}).",
            errors=[FieldError(field="start_date", message="overlaps an existing session", code="overlap")],
            conflicting_id=clash.id,
        )

    academic_session = AcademicSession(
        org_id=organisation.id,
        kind=data.kind,
        title=data.title,
        school_year=parent.school_year if parent is not None else data.end_date.year,
        start_date=data.start_date,
        end_date=data.end_date,
        parent_id=parent.id if parent is not None else None,
    )
    session.add(academic_session)
    session.flush()
    changes.record(
        session,
        entity="academicSessions",
        entity_id=academic_session.id,
        school_id=organisation.id if organisation.kind == "school" else None,
    )
    return academic_session


def list_academic_sessions(
    session: Session, *, org_ids: Collection[str] | None, school_year: int | None
) -> list[AcademicSession]:
    """School years and terms of the given organisations (None: all), oldest first, years before their terms."""
    statement = select(AcademicSession).where(col(AcademicSession.deleted_at).is_(None))
    if org_ids is not None:
        statement = statement.where(col(AcademicSession.org_id).in_(list(org_ids)))
    if school_year is not None:
        statement = statement.where(AcademicSession.school_year == school_year)
    order = sa.case((col(AcademicSession.kind) == "school_year", 0), else_=1)
    return list(
        session.exec(
            statement.order_by(
                col(AcademicSession.school_year),
                order,
                col(AcademicSession.start_date),
                col(AcademicSession.end_date),
                col(AcademicSession.title),
            )
        )
    )


def session_org_ids(session: Session, *, org_id: str | None, visible_school_ids: list[str] | None) -> list[str] | None:
    """Whose sessions a caller sees: an organisation's and its ancestors', or the city's plus visible schools'."""
    if org_id is not None:
        organisation = session.get(DirectoryOrganisation, org_id)
        return _path_ids(organisation.path) if organisation is not None else [org_id]
    if visible_school_ids is None:
        return None
    roots = session.exec(select(DirectoryOrganisation.id).where(DirectoryOrganisation.kind == "city")).all()
    return [*roots, *visible_school_ids]


def _usable_school_year(session: Session, school_year_id: str, *, school: DirectoryOrganisation) -> AcademicSession:
    year = session.get(AcademicSession, school_year_id)
    if (
        year is None
        or year.deleted_at is not None
        or year.kind != "school_year"
        or year.org_id not in _path_ids(school.path)
    ):
        raise AcademicSessionNotFound(school_year_id)
    return year


# ------------------------------------------------------------------------------------------ classes


def get_class(session: Session, school_id: str, class_id: str, *, field: str | None = None) -> SchoolClass:
    """A live class of this school; another school's class is as unknown as a missing one."""
    school_class = session.get(SchoolClass, class_id)
    if school_class is None or school_class.school_id != school_id or school_class.deleted_at is not None:
        raise ClassNotFound(class_id, field=field)
    return school_class


def create_class(session: Session, *, school_id: str, data: ClassCreate) -> SchoolClass:
    """Open a homeroom class for a school year (and the grade's homeroom course, if it is the first)."""
    school = _school(session, school_id)
    year = _usable_school_year(session, data.school_year_id, school=school)
    _check_grade_offered(school, data.grade)
    name = (data.name or default_class_name(data.grade, data.number)).strip()
    _check_class_unique(session, school_id, year.id, data.grade, data.number, name, exclude_id=None)
    course = _homeroom_course(session, school_id, year, data.grade)
    school_class = SchoolClass(
        school_id=school_id,
        school_year_id=year.id,
        course_id=course.id,
        grade=data.grade,
        number=data.number,
        name=name,
        class_type=HOMEROOM,
    )
    session.add(school_class)
    session.flush()
    changes.record(session, entity="classes", entity_id=school_class.id, school_id=school_id)
    if data.head_teacher_id is not None:
        wanted = [TeacherAssignmentWrite(teacher_id=data.head_teacher_id, role="head")]
        _apply_teachers(session, school_class, wanted, today=school_today(), field_prefix="head_teacher_id")
    _emit_class_changed(session, school_class)
    return school_class


def _check_grade_offered(school: DirectoryOrganisation, grade: str) -> None:
    offered = GRADES_BY_SCHOOL_TYPE.get(school.school_type or "")
    if offered is not None and grade not in offered:
        raise InvalidClass(
            f"{school.name}（{school.school_type}）不开设{grade_name(grade)}；"
            f"{school.name} ({school.school_type}) does not teach grade {grade}.",
            errors=[FieldError(field="grade", message="not taught at this school", code="grade_not_offered")],
        )


def _check_class_unique(
    session: Session, school_id: str, school_year_id: str, grade: str, number: int, name: str, *, exclude_id: str | None
) -> None:
    statement = select(SchoolClass).where(
        SchoolClass.school_id == school_id,
        SchoolClass.school_year_id == school_year_id,
        col(SchoolClass.deleted_at).is_(None),
        or_(col(SchoolClass.name) == name, sa.and_(SchoolClass.grade == grade, SchoolClass.number == number)),
    )
    if exclude_id is not None:
        statement = statement.where(SchoolClass.id != exclude_id)
    clash = session.exec(statement).first()
    if clash is None:
        return
    field = "number" if (clash.grade, clash.number) == (grade, number) else "name"
    raise ClassConflict(
        f"本学年已有班级“{clash.name}”；This school year already has the class {clash.name!r}.",
        errors=[FieldError(field=field, message="already used in this school year", code="duplicate")],
        conflicting_id=clash.id,
    )


def _homeroom_course(session: Session, school_id: str, year: AcademicSession, grade: str) -> Course:
    code = f"homeroom-{grade}"
    course = session.exec(
        select(Course).where(
            Course.school_id == school_id, Course.school_year_id == year.id, Course.course_code == code
        )
    ).first()
    if course is not None:
        return course
    course = Course(
        school_id=school_id, school_year_id=year.id, course_code=code, title=f"{grade_name(grade)}行政班", grade=grade
    )
    session.add(course)
    session.flush()
    changes.record(session, entity="courses", entity_id=course.id, school_id=school_id)
    return course


def list_classes(
    session: Session, *, school_id: str, school_year_id: str | None, grade: str | None, limit: int, offset: int
) -> tuple[list[SchoolClass], int]:
    """A page of the school's live classes in grade and number order."""
    statement = select(SchoolClass).where(SchoolClass.school_id == school_id, col(SchoolClass.deleted_at).is_(None))
    if school_year_id is not None:
        statement = statement.where(SchoolClass.school_year_id == school_year_id)
    if grade is not None:
        statement = statement.where(SchoolClass.grade == grade)
    total = session.exec(select(sa.func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(
            col(SchoolClass.school_year_id), col(SchoolClass.grade), col(SchoolClass.number), col(SchoolClass.id)
        )
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def describe_classes(session: Session, classes: Sequence[SchoolClass], *, on: date | None = None) -> list[ClassRead]:
    """Classes with their current teachers (named) and the number of pupils they have on ``on`` (today)."""
    if not classes:
        return []
    day = on or school_today()
    class_ids = [school_class.id for school_class in classes]
    assignments = session.exec(
        select(ClassTeacher)
        .where(col(ClassTeacher.class_id).in_(class_ids), col(ClassTeacher.end_date).is_(None))
        .order_by(col(ClassTeacher.role), col(ClassTeacher.subject), col(ClassTeacher.start_date))
    ).all()
    names = _names(session, {row.teacher_id for row in assignments} | {c.head_teacher_id or "" for c in classes})
    counts = dict(
        session.exec(
            select(ClassMembership.class_id, sa.func.count())
            .where(col(ClassMembership.class_id).in_(class_ids), *_on_day(day))
            .group_by(col(ClassMembership.class_id))
        ).all()
    )
    teachers: dict[str, list[TeacherAssignmentRead]] = {class_id: [] for class_id in class_ids}
    for row in assignments:
        teachers[row.class_id].append(_teacher_read(row, names))
    return [
        ClassRead(
            id=school_class.id,
            school_id=school_class.school_id,
            school_year_id=school_class.school_year_id,
            course_id=school_class.course_id,
            grade=school_class.grade,
            grade_name=grade_name(school_class.grade),
            number=school_class.number,
            name=school_class.name,
            class_type=school_class.class_type,
            head_teacher=(
                TeacherRef(id=school_class.head_teacher_id, name=names.get(school_class.head_teacher_id))
                if school_class.head_teacher_id
                else None
            ),
            teachers=teachers[school_class.id],
            member_count=int(counts.get(school_class.id, 0)),
            created_at=school_class.created_at,
            updated_at=school_class.updated_at,
        )
        for school_class in classes
    ]


def _names(session: Session, person_ids: Iterable[str]) -> dict[str, str]:
    wanted = [person_id for person_id in set(person_ids) if person_id]
    if not wanted:
        return {}
    rows = session.exec(
        select(DirectoryPerson.id, DirectoryPerson.name).where(col(DirectoryPerson.id).in_(wanted))
    ).all()
    return dict(rows)


def _teacher_read(row: ClassTeacher, names: dict[str, str]) -> TeacherAssignmentRead:
    return TeacherAssignmentRead(
        id=row.id,
        teacher_id=row.teacher_id,
        name=names.get(row.teacher_id),
        role=row.role,
        subject=row.subject,
        start_date=row.start_date,
        end_date=row.end_date,
    )


def update_class(session: Session, school_class: SchoolClass, data: ClassUpdate) -> SchoolClass:
    """Rename or renumber a class (a default name follows the number), or change its head teacher."""
    sent = data.model_fields_set
    if "name" in sent and data.name is None:
        raise InvalidClass(
            "班级名称不能为空；A class needs a name.",
            errors=[FieldError(field="name", message="must not be null", code="null")],
        )
    if "number" in sent and data.number is None:
        raise InvalidClass(
            "班号不能为空；A class needs a number.",
            errors=[FieldError(field="number", message="must not be null", code="null")],
        )
    number = data.number if data.number is not None else school_class.number
    if data.name is not None:
        name = data.name.strip()
    elif school_class.name == default_class_name(school_class.grade, school_class.number):
        name = default_class_name(school_class.grade, number)
    else:
        name = school_class.name
    _check_class_unique(
        session, school_class.school_id, school_class.school_year_id, school_class.grade, number, name,
        exclude_id=school_class.id,
    )  # fmt: skip
    school_class.number = number
    school_class.name = name
    school_class.updated_at = utcnow()
    session.add(school_class)
    if "head_teacher_id" in sent:
        current = _current_assignments(session, school_class.id)
        wanted = [
            TeacherAssignmentWrite(teacher_id=row.teacher_id, role="subject", subject=row.subject)
            for row in current
            if row.role == "subject"
        ]
        if data.head_teacher_id is not None:
            wanted.append(TeacherAssignmentWrite(teacher_id=data.head_teacher_id, role="head"))
        _apply_teachers(session, school_class, wanted, today=school_today(), field_prefix="head_teacher_id")
    changes.record(session, entity="classes", entity_id=school_class.id, school_id=school_class.school_id)
    _emit_class_changed(session, school_class)
    return school_class


def delete_class(session: Session, school_class: SchoolClass) -> None:
    """Soft-delete an empty class: its teachers' assignments end, its membership history stays."""
    today = school_today()
    members = session.exec(
        select(sa.func.count()).where(
            ClassMembership.class_id == school_class.id,
            or_(col(ClassMembership.end_date).is_(None), col(ClassMembership.end_date) >= today),
        )
    ).one()
    if members:
        raise ClassNotEmpty(
            f"“{school_class.name}”仍有 {members} 名学生，请先调出；"
            f"{school_class.name} still has {members} pupil(s); move them to other classes first.",
            members=int(members),
        )
    ended = _current_assignments(session, school_class.id)
    for row in ended:
        _end_period(session, row, today, record=False)
    school_class.deleted_at = utcnow()
    school_class.updated_at = school_class.deleted_at
    school_class.head_teacher_id = None
    session.add(school_class)
    session.flush()
    # A OneRoster consumer drops a deleted class's enrollments; our own history keeps them.
    teacher_ids = {row.id for row in ended}
    teacher_ids.update(session.exec(select(ClassTeacher.id).where(ClassTeacher.class_id == school_class.id)).all())
    membership_ids = session.exec(select(ClassMembership.id).where(ClassMembership.class_id == school_class.id)).all()
    for row_id in [*sorted(teacher_ids), *membership_ids]:
        changes.record(
            session, entity="enrollments", entity_id=row_id, school_id=school_class.school_id, operation="delete"
        )
    changes.record(
        session, entity="classes", entity_id=school_class.id, school_id=school_class.school_id, operation="delete"
    )
    emit(
        session,
        ClassDeletedV1(class_id=school_class.id, school_id=school_class.school_id),
        subject_id=school_class.id,
        org_id=school_class.school_id,
    )


def _emit_class_changed(session: Session, school_class: SchoolClass) -> None:
    session.flush()
    teacher_ids = sorted(
        {row.teacher_id for row in _current_assignments(session, school_class.id)},
    )
    emit(
        session,
        ClassChangedV1(
            class_id=school_class.id,
            school_id=school_class.school_id,
            school_year_id=school_class.school_year_id,
            grade=school_class.grade,
            name=school_class.name,
            head_teacher_id=school_class.head_teacher_id,
            teacher_ids=teacher_ids,
        ),
        subject_id=school_class.id,
        org_id=school_class.school_id,
    )


# ----------------------------------------------------------------------------------------- teachers


def _current_assignments(session: Session, class_id: str) -> list[ClassTeacher]:
    return list(
        session.exec(
            select(ClassTeacher)
            .where(ClassTeacher.class_id == class_id, col(ClassTeacher.end_date).is_(None))
            .order_by(col(ClassTeacher.start_date), col(ClassTeacher.id))
        )
    )


def list_teachers(session: Session, school_class: SchoolClass, *, history: bool) -> list[TeacherAssignmentRead]:
    """The class's current teacher assignments, or every assignment it ever had (newest first)."""
    statement = select(ClassTeacher).where(ClassTeacher.class_id == school_class.id)
    if not history:
        statement = statement.where(col(ClassTeacher.end_date).is_(None))
    rows = session.exec(
        statement.order_by(col(ClassTeacher.start_date).desc(), col(ClassTeacher.role), col(ClassTeacher.id))
    ).all()
    names = _names(session, {row.teacher_id for row in rows})
    return [_teacher_read(row, names) for row in rows]


def replace_teachers(
    session: Session, school_class: SchoolClass, wanted: Sequence[TeacherAssignmentWrite]
) -> list[TeacherAssignmentRead]:
    """Make ``wanted`` the class's teachers from today: unchanged ones stay, dropped ones end, new ones start."""
    _apply_teachers(session, school_class, wanted, today=school_today(), field_prefix=None)
    changes.record(session, entity="classes", entity_id=school_class.id, school_id=school_class.school_id)
    _emit_class_changed(session, school_class)
    return list_teachers(session, school_class, history=False)


def _apply_teachers(
    session: Session,
    school_class: SchoolClass,
    wanted: Sequence[TeacherAssignmentWrite],
    *,
    today: date,
    field_prefix: str | None,
) -> None:
    def field(index: int, name: str) -> str:
        return field_prefix if field_prefix is not None else f"{index}.{name}"

    keys = [(item.teacher_id, item.role, item.subject) for item in wanted]
    problems = [
        FieldError(field=field(index, "teacher_id"), message="重复的任课安排；repeated assignment", code="duplicate")
        for index, key in enumerate(keys)
        if key in keys[:index]
    ]
    heads = [index for index, item in enumerate(wanted) if item.role == "head"]
    problems += [
        FieldError(field=field(index, "role"), message="一个班级只能有一位班主任；one head teacher per class",
                   code="second_head_teacher")
        for index in heads[1:]
    ]  # fmt: skip
    current = _current_assignments(session, school_class.id)
    current_keys = {(row.teacher_id, row.role, row.subject) for row in current}
    # Only new assignments are checked against the directory: one that stays unchanged was checked when it began.
    new = [(index, item) for index, item in enumerate(wanted) if keys[index] not in current_keys]
    teachers_here = _teachers_at(session, school_class.school_id, {item.teacher_id for _index, item in new})
    problems += [
        FieldError(
            field=field(index, "teacher_id"),
            message="不是本校在职教师；not a teacher at this school",
            code="not_a_teacher_here",
        )
        for index, item in new
        if item.teacher_id not in teachers_here
    ]
    if problems:
        raise InvalidTeacherAssignment(
            "任课安排有误，见 errors[]；The teacher assignments are not valid, see errors[].", errors=problems
        )

    for row in current:
        if (row.teacher_id, row.role, row.subject) not in keys:
            _end_period(session, row, today)
    added = [
        ClassTeacher(
            class_id=school_class.id, school_id=school_class.school_id, teacher_id=item.teacher_id, role=item.role,
            subject=item.subject, start_date=today,
        )
        for item in wanted
        if (item.teacher_id, item.role, item.subject) not in current_keys
    ]  # fmt: skip
    session.add_all(added)
    session.flush()
    _note_enrollments(session, added, school_class.school_id)
    school_class.head_teacher_id = wanted[heads[0]].teacher_id if heads else None
    school_class.updated_at = utcnow()
    session.add(school_class)


def _teachers_at(session: Session, school_id: str, person_ids: Collection[str]) -> set[str]:
    """Those of ``person_ids`` who are active staff holding the teacher role at the school (directory)."""
    if not person_ids:
        return set()
    rows = session.exec(
        select(DirectoryPerson.id)
        .join(DirectoryRole, col(DirectoryRole.person_id) == col(DirectoryPerson.id))
        .where(
            col(DirectoryPerson.id).in_(list(person_ids)),
            DirectoryPerson.kind == "staff",
            col(DirectoryPerson.active).is_(True),
            DirectoryRole.role == "teacher",
            DirectoryRole.org_id == school_id,
            col(DirectoryRole.active).is_(True),
        )
    ).all()
    return set(rows)


# --------------------------------------------------------------------------------------- membership


def _on_day(day: date) -> list[sa.ColumnElement[bool]]:
    return [
        col(ClassMembership.start_date) <= day,
        or_(col(ClassMembership.end_date).is_(None), col(ClassMembership.end_date) >= day),
    ]


def _active_enrolments(
    session: Session, school_id: str, student_ids: Collection[str] | None
) -> dict[str, StudentEnrollment]:
    statement = select(StudentEnrollment).where(
        StudentEnrollment.school_id == school_id, StudentEnrollment.status == "active"
    )
    if student_ids is not None:
        statement = statement.where(col(StudentEnrollment.student_id).in_(list(student_ids)))
    # Oldest first, so that if a pupil somehow has two active enrolments here the latest wins.
    rows = session.exec(statement.order_by(col(StudentEnrollment.start_date), col(StudentEnrollment.id))).all()
    return {row.student_id: row for row in rows}


def _open_homerooms(
    session: Session, student_ids: Collection[str], *, lasting_until: date | None = None
) -> dict[str, ClassMembership]:
    """Each pupil's open homeroom membership at any school (or, with ``lasting_until``, one still running then)."""
    if not student_ids:
        return {}
    still_running: sa.ColumnElement[bool] = col(ClassMembership.end_date).is_(None)
    if lasting_until is not None:
        still_running = or_(still_running, col(ClassMembership.end_date) >= lasting_until)
    rows = session.exec(
        select(ClassMembership)
        .join(SchoolClass, col(SchoolClass.id) == col(ClassMembership.class_id))
        .where(
            col(ClassMembership.student_id).in_(list(student_ids)),
            still_running,
            SchoolClass.class_type == HOMEROOM,
        )
        .order_by(col(ClassMembership.start_date))
    ).all()
    return {row.student_id: row for row in rows}


def _check_enrolled(
    session: Session, school_id: str, student_ids: Sequence[str], *, grade: str, field: str
) -> dict[str, StudentEnrollment]:
    enrolments = _active_enrolments(session, school_id, student_ids)
    problems = []
    for index, student_id in enumerate(student_ids):
        enrolment = enrolments.get(student_id)
        if enrolment is None:
            problems.append(
                FieldError(field=f"{field}.{index}", message="未在本校注册学籍；not enrolled here", code="not_enrolled")
            )
        elif enrolment.grade is not None and enrolment.grade != grade:
            problems.append(
                FieldError(
                    field=f"{field}.{index}",
                    message=f"学生在{grade_name(enrolment.grade)}，不在{grade_name(grade)}；enrolled in grade "
                    f"{enrolment.grade}, not {grade}",
                    code="grade_mismatch",
                )
            )
    if problems:
        raise StudentNotEnrolled(
            f"{len(problems)} 名学生未在本校该年级注册学籍；{len(problems)} pupil(s) are not enrolled in this grade "
            "at this school, see errors[].",
            errors=problems[:100],
        )
    return enrolments


def _check_unplaced(session: Session, student_ids: Sequence[str], *, start: date, field: str) -> None:
    # A pupil in a class on or after ``start`` (including one who leaves it later) would be in two classes at once.
    placed = _open_homerooms(session, student_ids, lasting_until=start)
    if placed:
        raise MembershipConflict(
            f"{len(placed)} 名学生已有班级，请改用调班；{len(placed)} pupil(s) already have a class; use a class "
            "transfer instead.",
            errors=[
                FieldError(field=f"{field}.{index}", message="已有班级；already in a class", code="already_in_class")
                for index, student_id in enumerate(student_ids)
                if student_id in placed
            ][:100],
        )


def _start_in_year(session: Session, school_year_id: str, requested: date | None, *, field: str) -> date:
    year = session.get(AcademicSession, school_year_id)
    if year is None:
        raise AcademicSessionNotFound(school_year_id)
    start = requested or max(school_today(), year.start_date)
    if not year.start_date <= start <= year.end_date:
        raise InvalidMembershipDate(
            f"日期须在学年 {year.start_date}–{year.end_date} 之内；The date must lie within the school year "
            f"{year.start_date}–{year.end_date}.",
            errors=[FieldError(field=field, message="outside the school year", code="outside_school_year")],
        )
    return start


def add_members(
    session: Session, school_class: SchoolClass, student_ids: Sequence[str], *, start_date: date | None
) -> list[ClassMembership]:
    """Place enrolled pupils of the class's grade who have no homeroom class into this one."""
    start = _start_in_year(session, school_class.school_year_id, start_date, field="start_date")
    enrolments = _check_enrolled(
        session, school_class.school_id, student_ids, grade=school_class.grade, field="student_ids"
    )
    _check_unplaced(session, student_ids, start=start, field="student_ids")
    _settle_grades(session, [enrolments[student_id] for student_id in student_ids], school_class.grade)
    return _place(session, {student_id: school_class for student_id in student_ids}, start, reason="assigned")


def _settle_grades(session: Session, enrolments: Iterable[StudentEnrollment], grade: str) -> None:
    """A pupil who came from the directory has no grade until a class gives them one."""
    for enrolment in enrolments:
        if enrolment.grade is None:
            enrolment.grade = grade
            enrolment.updated_at = utcnow()
            session.add(enrolment)
            # OneRoster users carry their grades.
            changes.record(session, entity="users", entity_id=enrolment.student_id, school_id=enrolment.school_id)


def _place(
    session: Session, placement: dict[str, SchoolClass], start: date, *, reason: MembershipReason
) -> list[ClassMembership]:
    rows = [
        ClassMembership(
            class_id=school_class.id, school_id=school_class.school_id, student_id=student_id, start_date=start,
            reason=reason,
        )
        for student_id, school_class in placement.items()
    ]  # fmt: skip
    session.add_all(rows)
    session.flush()
    for row in rows:
        changes.record(session, entity="enrollments", entity_id=row.id, school_id=row.school_id)
    emit_many(
        session,
        [
            PendingEvent(
                payload=ClassMembershipChangedV1(
                    student_id=row.student_id, school_id=row.school_id, to_class_id=row.class_id,
                    effective_on=start, reason=reason,
                ),
                subject_id=row.student_id,
                org_id=row.school_id,
            )
            for row in rows
        ],
    )  # fmt: skip
    return rows


def transfer_student(session: Session, *, school_id: str, student_id: str, data: ClassTransfer) -> TransferRead:
    """Move a pupil to another class of the school: the old membership ends the day before, history is kept."""
    enrolment = _active_enrolments(session, school_id, [student_id]).get(student_id)
    if enrolment is None:
        raise StudentNotFound(student_id)
    target = get_class(session, school_id, data.to_class_id, field="to_class_id")
    current = _open_homerooms(session, [student_id]).get(student_id)
    if current is None or current.school_id != school_id:
        raise MembershipConflict(
            "该生目前没有本校班级，请直接分班；The pupil has no class at this school to move out of; add them to a "
            "class instead.",
        )
    if current.class_id == target.id:
        raise MembershipConflict(
            f"该生已在“{target.name}”；The pupil is already in {target.name}.",
            errors=[FieldError(field="to_class_id", message="already the pupil's class", code="same_class")],
        )
    if enrolment.grade is not None and target.grade != enrolment.grade:
        raise StudentNotEnrolled(
            f"学生在{grade_name(enrolment.grade)}，“{target.name}”是{grade_name(target.grade)}；The pupil is enrolled "
            f"in grade {enrolment.grade}, {target.name} is grade {target.grade}.",
            errors=[FieldError(field="to_class_id", message="another grade", code="grade_mismatch")],
        )
    if data.effective_on < current.start_date:
        raise InvalidMembershipDate(
            f"调班日期早于该生进入现班级的日期 {current.start_date}；The transfer cannot take effect before the pupil "
            f"joined the current class on {current.start_date}.",
            errors=[FieldError(field="effective_on", message="before the current membership began", code="too_early")],
        )
    _start_in_year(session, target.school_year_id, data.effective_on, field="effective_on")
    _settle_grades(session, [enrolment], target.grade)

    from_class = session.get(SchoolClass, current.class_id)
    kept = _end_period(session, current, data.effective_on)
    started = ClassMembership(
        class_id=target.id, school_id=school_id, student_id=student_id, start_date=data.effective_on,
        reason="transfer", note=data.reason.strip(),
    )  # fmt: skip
    session.add(started)
    session.flush()
    changes.record(session, entity="enrollments", entity_id=started.id, school_id=school_id)
    emit(
        session,
        ClassMembershipChangedV1(
            student_id=student_id, school_id=school_id, from_class_id=current.class_id, to_class_id=target.id,
            effective_on=data.effective_on, reason="transfer",
        ),
        subject_id=student_id,
        org_id=school_id,
    )  # fmt: skip
    return TransferRead(
        student_id=student_id,
        from_class_id=current.class_id,
        to_class_id=target.id,
        effective_on=data.effective_on,
        ended=_membership_read(current, from_class) if kept and from_class is not None else None,
        started=_membership_read(started, target),
    )


def _membership_read(row: ClassMembership, school_class: SchoolClass) -> MembershipRead:
    return MembershipRead(
        id=row.id,
        class_id=row.class_id,
        class_name=school_class.name,
        grade=school_class.grade,
        school_year_id=school_class.school_year_id,
        start_date=row.start_date,
        end_date=row.end_date,
        reason=row.reason,
        note=row.note,
    )


def members_on(session: Session, school_class: SchoolClass, day: date) -> list[MemberRead]:
    """The class's pupils on ``day``, by student number then name."""
    rows = session.exec(
        select(ClassMembership, DirectoryPerson)
        .join(DirectoryPerson, col(DirectoryPerson.id) == col(ClassMembership.student_id), isouter=True)
        .where(ClassMembership.class_id == school_class.id, *_on_day(day))
        .order_by(col(DirectoryPerson.student_number), col(DirectoryPerson.name), col(ClassMembership.student_id))
    ).all()
    return [
        MemberRead(
            student_id=membership.student_id,
            name=person.name if person else None,
            sex=person.sex if person else None,
            student_number=person.student_number if person else None,
            membership_id=membership.id,
            start_date=membership.start_date,
            end_date=membership.end_date,
            reason=membership.reason,
        )
        for membership, person in rows
    ]


def class_history(session: Session, *, school_id: str, student_id: str, with_notes: bool) -> list[MembershipRead]:
    """Every class the pupil has been in at this school, oldest first (deleted classes included).

    The school's note on why a pupil moved is free text about a child, so it goes only to callers who may read
    enrolment records (``with_notes``); a class list does not release it.
    """
    ever_enrolled = session.exec(
        select(StudentEnrollment.id).where(
            StudentEnrollment.school_id == school_id, StudentEnrollment.student_id == student_id
        )
    ).first()
    if ever_enrolled is None:
        raise StudentNotFound(student_id)
    rows = session.exec(
        select(ClassMembership, SchoolClass)
        .join(SchoolClass, col(SchoolClass.id) == col(ClassMembership.class_id))
        .where(ClassMembership.school_id == school_id, ClassMembership.student_id == student_id)
        .order_by(col(ClassMembership.start_date), col(ClassMembership.id))
    ).all()
    history = [_membership_read(membership, school_class) for membership, school_class in rows]
    return history if with_notes else [item.model_copy(update={"note": None}) for item in history]


def enrolled_students(
    session: Session, *, school_id: str, grade: str | None, unassigned: bool, limit: int, offset: int
) -> tuple[list[EnrolledStudentRead], int]:
    """A page of the pupils enrolled at the school, with their homeroom class; optionally only those without."""
    open_membership = (
        select(ClassMembership.student_id, ClassMembership.class_id, ClassMembership.start_date)
        .join(SchoolClass, col(SchoolClass.id) == col(ClassMembership.class_id))
        .where(
            ClassMembership.school_id == school_id,
            col(ClassMembership.end_date).is_(None),
            SchoolClass.class_type == HOMEROOM,
        )
        .subquery()
    )
    statement = (
        select(StudentEnrollment, DirectoryPerson, open_membership.c.class_id, open_membership.c.start_date)
        .join(DirectoryPerson, col(DirectoryPerson.id) == col(StudentEnrollment.student_id), isouter=True)
        .join(open_membership, open_membership.c.student_id == col(StudentEnrollment.student_id), isouter=True)
        .where(StudentEnrollment.school_id == school_id, StudentEnrollment.status == "active")
    )
    if grade is not None:
        statement = statement.where(StudentEnrollment.grade == grade)
    if unassigned:
        statement = statement.where(open_membership.c.class_id.is_(None))
    total = session.exec(select(sa.func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(
            col(StudentEnrollment.grade), col(DirectoryPerson.student_number), col(StudentEnrollment.student_id)
        )
        .limit(limit)
        .offset(offset)
    ).all()
    class_names = dict(
        session.exec(
            select(SchoolClass.id, SchoolClass.name).where(
                col(SchoolClass.id).in_([class_id for *_rest, class_id, _start in rows if class_id])
            )
        ).all()
    )
    items = [
        EnrolledStudentRead(
            student_id=enrolment.student_id,
            name=person.name if person else None,
            sex=person.sex if person else None,
            student_number=person.student_number if person else None,
            grade=enrolment.grade,
            grade_name=grade_name(enrolment.grade) if enrolment.grade else None,
            current_class=(
                ClassRef(id=class_id, name=class_names.get(class_id, ""), start_date=started)
                if class_id is not None
                else None
            ),
        )
        for enrolment, person, class_id, started in rows
    ]
    return items, int(total)


# ------------------------------------------------------------------------------- balanced assignment


def assign_balanced(session: Session, *, school_id: str, data: ClassAssignmentRequest) -> ClassAssignmentRead:
    """Plan (and with ``commit``, write) a balanced split of a grade's new pupils into empty classes."""
    school = _school(session, school_id)
    year = _usable_school_year(session, data.school_year_id, school=school)
    _check_grade_offered(school, data.grade)
    classes = _assignment_classes(session, school_id, data)
    start = _start_in_year(session, year.id, data.start_date, field="start_date")

    if data.student_ids is None:
        enrolments = _active_enrolments(session, school_id, None)
        candidates = [sid for sid, enrolment in enrolments.items() if enrolment.grade == data.grade]
        placed = _open_homerooms(session, candidates, lasting_until=start)
        student_ids = sorted(sid for sid in candidates if sid not in placed)
    else:
        student_ids = list(data.student_ids)
        enrolments = _check_enrolled(session, school_id, student_ids, grade=data.grade, field="student_ids")
        _check_unplaced(session, student_ids, start=start, field="student_ids")
    if len(student_ids) < len(classes):
        raise InvalidClassAssignment(
            f"待分班学生（{len(student_ids)} 名）少于班级数（{len(classes)} 个）；There are fewer pupils to place "
            f"({len(student_ids)}) than classes ({len(classes)}).",
            errors=[FieldError(field="student_ids", message="fewer pupils than classes", code="too_few_pupils")],
        )
    scores = data.scores or {}
    strangers = sorted(set(scores) - set(student_ids))
    if strangers:
        raise InvalidClassAssignment(
            "有成绩的学生不在待分班名单中；Scores were given for pupils who are not being placed.",
            errors=[
                FieldError(field=f"scores.{student_id[:64]}", message="not among the pupils placed", code="unknown")
                for student_id in strangers[:100]
            ],
        )

    people = {
        person.id: person
        for person in session.exec(select(DirectoryPerson).where(col(DirectoryPerson.id).in_(student_ids))).all()
    }
    pupils = [
        balancing.Pupil(
            id=student_id,
            sex=people[student_id].sex if student_id in people else None,
            score=scores.get(student_id),
        )
        for student_id in student_ids
    ]
    plan = balancing.balance(pupils, [school_class.id for school_class in classes])

    if data.commit:
        by_id = {school_class.id: school_class for school_class in classes}
        placement = {student_id: by_id[class_id] for student_id, class_id in sorted(plan.assignment.items())}
        _settle_grades(session, [enrolments[student_id] for student_id in placement], data.grade)
        _place(session, placement, start, reason="balanced_assignment")

    names = {school_class.id: school_class.name for school_class in classes}
    return ClassAssignmentRead(
        committed=data.commit,
        school_year_id=year.id,
        grade=data.grade,
        start_date=start,
        classes=[
            PlannedClass(
                class_id=report.class_id,
                class_name=names[report.class_id],
                size=report.size,
                boys=report.boys,
                girls=report.girls,
                unknown_sex=report.unknown_sex,
                scored=report.scored,
                mean_score=_rounded(report.mean_score),
                std_score=_rounded(report.std_score),
                pupils=[
                    PlannedPupil(
                        student_id=pupil_id,
                        name=people[pupil_id].name if pupil_id in people else None,
                        score=scores.get(pupil_id),
                    )
                    for pupil_id in report.pupil_ids
                ],
            )
            for report in plan.classes
        ],
        summary=AssignmentSummary(
            pupils=len(student_ids),
            mean_spread=_rounded(plan.mean_spread),
            size_spread=plan.size_spread,
            boys_share_spread=_rounded(plan.boys_share_spread),
            swaps=plan.swaps,
        ),
        random_comparison=RandomComparison(
            trials=plan.random_baseline.trials,
            expected_mean_spread=_rounded(plan.random_baseline.expected_mean_spread),
            expected_boys_share_spread=_rounded(plan.random_baseline.expected_boys_share_spread),
            share_at_least_as_balanced=_rounded(plan.random_baseline.share_at_least_as_balanced),
        ),
    )


def _assignment_classes(session: Session, school_id: str, data: ClassAssignmentRequest) -> list[SchoolClass]:
    found = {
        school_class.id: school_class
        for school_class in session.exec(
            select(SchoolClass).where(
                col(SchoolClass.id).in_(data.class_ids),
                SchoolClass.school_id == school_id,
                col(SchoolClass.deleted_at).is_(None),
            )
        ).all()
    }
    problems = []
    for index, class_id in enumerate(data.class_ids):
        school_class = found.get(class_id)
        if school_class is None:
            problems.append(
                FieldError(field=f"class_ids.{index}", message="本校无此班级；unknown class", code="not_found")
            )
        elif school_class.school_year_id != data.school_year_id or school_class.grade != data.grade:
            problems.append(
                FieldError(
                    field=f"class_ids.{index}",
                    message="不属于该学年该年级；not a class of this school year and grade",
                    code="wrong_year_or_grade",
                )
            )
    if problems:
        raise InvalidClassAssignment(
            "班级列表有误，见 errors[]；Some classes cannot take part, see errors[].", errors=problems
        )
    occupied = session.exec(
        select(ClassMembership.class_id)
        .where(col(ClassMembership.class_id).in_(data.class_ids), col(ClassMembership.end_date).is_(None))
        .distinct()
    ).all()
    if occupied:
        raise ClassNotEmpty(
            "均衡分班只能分入空班级，已有学生的班级请用“添加学生”；Balanced assignment fills empty classes only; add "
            "late pupils to a class directly.",
            errors=[
                FieldError(field=f"class_ids.{data.class_ids.index(class_id)}", message="has pupils", code="not_empty")
                for class_id in occupied
            ],
        )
    return [found[class_id] for class_id in data.class_ids]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
