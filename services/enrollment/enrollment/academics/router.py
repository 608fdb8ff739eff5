"""HTTP routes of the academic structure: school years and terms, classes, teachers, membership, 均衡分班.

Reads need ``roster.read`` (classes, teachers) or ``roster.students.read`` (pupils) and a roster role at the
school, or, for a vendor's app, the school's installation; writes need ``enrollment.write`` and an administrator
of the school or of an organisation above it, and are never open to apps.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status
from sqlmodel import Session

from enrollment.academics import service
from enrollment.academics.errors import OrganisationNotFound
from enrollment.academics.schemas import (
    AcademicSessionCreate,
    AcademicSessionRead,
    ClassAssignmentRead,
    ClassAssignmentRequest,
    ClassCreate,
    ClassRead,
    ClassTransfer,
    ClassUpdate,
    EnrolledStudentRead,
    Grade,
    MemberRead,
    MembersAdd,
    MembershipRead,
    TeacherAssignmentRead,
    TeacherAssignmentWrite,
    TransferRead,
)
from enrollment.deps import ADMIN_ROLES, ROSTER_ROLES, Caller, CallerDep, school_path, visible_school_ids
from enrollment.directory.models import DirectoryOrganisation
from kit.db import ReadSessionDep, SessionDep
from kit.errors import Forbidden
from kit.pagination import Page, PageDep

router = APIRouter(tags=["academics"])

ROSTER_READ = "roster.read"
STUDENTS_READ = "roster.students.read"
ENROLLMENT_READ = "enrollment.read"
ENROLLMENT_WRITE = "enrollment.write"
#: Who may define a school year or term, by the kind of organisation it belongs to.
SESSION_WRITERS = {"city": ("city_admin",), "school": ADMIN_ROLES}

SchoolYearQuery = Annotated[str | None, Query(max_length=36, description="Only classes of this school year")]


def _require_read(session: Session, caller: Caller, school_id: str, scope: str) -> None:
    caller.require(roles=ROSTER_ROLES, org_path=school_path(session, school_id), scope=scope)


def _require_write(session: Session, caller: Caller, school_id: str) -> None:
    _refuse_apps(caller)
    caller.require(roles=ADMIN_ROLES, org_path=school_path(session, school_id), scope=ENROLLMENT_WRITE)


def _refuse_apps(caller: Caller) -> None:
    if caller.is_app:
        raise Forbidden("应用不能修改学年、班级或分班；Apps cannot change school years, classes or class placement.")


# ----------------------------------------------------------------------------------------- sessions


@router.post("/academic-sessions", status_code=status.HTTP_201_CREATED)
def create_academic_session(body: AcademicSessionCreate, caller: CallerDep, session: SessionDep) -> AcademicSessionRead:
    """Define a school year (city administrators, city-wide) or a term (city-wide, or a school's own)."""
    _refuse_apps(caller)
    organisation = session.get(DirectoryOrganisation, body.org_id)
    if organisation is None:
        raise OrganisationNotFound(body.org_id, field="org_id")
    roles = SESSION_WRITERS.get(organisation.kind, ("city_admin",))
    caller.require(roles=roles, org_path=organisation.path, scope=ENROLLMENT_WRITE)
    created = service.create_academic_session(session, body, organisation=organisation)
    return AcademicSessionRead.model_validate(created)


@router.get("/academic-sessions")
def list_academic_sessions(
    caller: CallerDep,
    session: ReadSessionDep,
    org_id: Annotated[
        str | None, Query(max_length=36, description="A school: the city's sessions and the school's own")
    ] = None,
    school_year: Annotated[int | None, Query(ge=1990, le=2200, description="The year a school year ends in")] = None,
) -> list[AcademicSessionRead]:
    """School years and terms: the city's, and those of the schools the caller may see (or of one school)."""
    caller.require_scope(ROSTER_READ)
    visible = visible_school_ids(session, caller)
    if org_id is not None:
        organisation = session.get(DirectoryOrganisation, org_id)
        if organisation is None:
            raise OrganisationNotFound(org_id)
        if organisation.kind == "school":
            _require_read(session, caller, org_id, ROSTER_READ)
        elif visible == []:
            raise Forbidden("您在任何学校都没有查看班级的权限；You may not read any school's rosters.")
    elif visible == []:
        raise Forbidden("您在任何学校都没有查看班级的权限；You may not read any school's rosters.")
    org_ids = service.session_org_ids(session, org_id=org_id, visible_school_ids=visible)
    rows = service.list_academic_sessions(session, org_ids=org_ids, school_year=school_year)
    return [AcademicSessionRead.model_validate(row) for row in rows]


# ------------------------------------------------------------------------------------------ classes


@router.post("/schools/{school_id}/classes", status_code=status.HTTP_201_CREATED)
def create_class(school_id: str, body: ClassCreate, caller: CallerDep, session: SessionDep) -> ClassRead:
    """Open a homeroom class (一年级(1)班) for a school year, optionally with its head teacher."""
    _require_write(session, caller, school_id)
    school_class = service.create_class(session, school_id=school_id, data=body)
    return service.describe_classes(session, [school_class])[0]


@router.get("/schools/{school_id}/classes")
def list_classes(
    school_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    school_year_id: SchoolYearQuery = None,
    grade: Grade | None = None,
) -> Page[ClassRead]:
    """The school's classes with their head teacher, current teachers and number of pupils."""
    _require_read(session, caller, school_id, ROSTER_READ)
    rows, total = service.list_classes(
        session, school_id=school_id, school_year_id=school_year_id, grade=grade, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip
    return Page(items=service.describe_classes(session, rows), total=total, limit=page.limit, offset=page.offset)


@router.get("/schools/{school_id}/classes/{class_id}")
def get_class(school_id: str, class_id: str, caller: CallerDep, session: ReadSessionDep) -> ClassRead:
    """One class with its head teacher, current teachers and number of pupils."""
    _require_read(session, caller, school_id, ROSTER_READ)
    return service.describe_classes(session, [service.get_class(session, school_id, class_id)])[0]


@router.patch("/schools/{school_id}/classes/{class_id}")
def update_class(school_id: str, class_id: str, body: ClassUpdate, caller: CallerDep, session: SessionDep) -> ClassRead:
    """Rename or renumber a class, or change its head teacher."""
    _require_write(session, caller, school_id)
    school_class = service.update_class(session, service.get_class(session, school_id, class_id), body)
    return service.describe_classes(session, [school_class])[0]


@router.delete("/schools/{school_id}/classes/{class_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_class(school_id: str, class_id: str, caller: CallerDep, session: SessionDep) -> Response:
    """Delete an empty class; its membership history is kept."""
    _require_write(session, caller, school_id)
    service.delete_class(session, service.get_class(session, school_id, class_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ----------------------------------------------------------------------------------------- teachers


@router.get("/schools/{school_id}/classes/{class_id}/teachers")
def list_teachers(
    school_id: str,
    class_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    history: Annotated[bool, Query(description="Include assignments that have ended")] = False,
) -> list[TeacherAssignmentRead]:
    """The class's head teacher and subject teachers, now or over time."""
    _require_read(session, caller, school_id, ROSTER_READ)
    return service.list_teachers(session, service.get_class(session, school_id, class_id), history=history)


@router.put("/schools/{school_id}/classes/{class_id}/teachers")
def replace_teachers(
    school_id: str,
    class_id: str,
    body: Annotated[list[TeacherAssignmentWrite], Body(max_length=50)],
    caller: CallerDep,
    session: SessionDep,
) -> list[TeacherAssignmentRead]:
    """Set the class's teachers from today: at most one head teacher; replaced assignments end yesterday."""
    _require_write(session, caller, school_id)
    return service.replace_teachers(session, service.get_class(session, school_id, class_id), body)


# --------------------------------------------------------------------------------------- membership


@router.post("/schools/{school_id}/classes/{class_id}/members", status_code=status.HTTP_201_CREATED)
def add_members(
    school_id: str, class_id: str, body: MembersAdd, caller: CallerDep, session: SessionDep
) -> list[MemberRead]:
    """Place enrolled pupils who have no class into this class from a date."""
    _require_write(session, caller, school_id)
    school_class = service.get_class(session, school_id, class_id)
    added = service.add_members(session, school_class, body.student_ids, start_date=body.start_date)
    added_ids = {row.id for row in added}
    day = added[0].start_date
    return [member for member in service.members_on(session, school_class, day) if member.membership_id in added_ids]


@router.get("/schools/{school_id}/classes/{class_id}/members")
def list_members(
    school_id: str,
    class_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    on: Annotated[date | None, Query(description="The day to look at (default: today)")] = None,
) -> list[MemberRead]:
    """The class's pupils on a day: name, sex, student number, and since when."""
    _require_read(session, caller, school_id, STUDENTS_READ)
    school_class = service.get_class(session, school_id, class_id)
    return service.members_on(session, school_class, on or service.school_today())


@router.post("/schools/{school_id}/students/{student_id}/class-transfer")
def transfer_student(
    school_id: str, student_id: str, body: ClassTransfer, caller: CallerDep, session: SessionDep
) -> TransferRead:
    """Move a pupil to another class from a date; the current membership ends the day before."""
    _require_write(session, caller, school_id)
    return service.transfer_student(session, school_id=school_id, student_id=student_id, data=body)


@router.get("/schools/{school_id}/students/{student_id}/class-history")
def class_history(school_id: str, student_id: str, caller: CallerDep, session: ReadSessionDep) -> list[MembershipRead]:
    """Every class the pupil has been in at this school, with dates and reasons."""
    _require_read(session, caller, school_id, STUDENTS_READ)
    with_notes = not caller.is_app and caller.principal.has_scope(ENROLLMENT_READ)
    return service.class_history(session, school_id=school_id, student_id=student_id, with_notes=with_notes)


@router.get("/schools/{school_id}/students")
def list_students(
    school_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    grade: Grade | None = None,
    unassigned: Annotated[bool, Query(description="Only pupils without a homeroom class")] = False,
) -> Page[EnrolledStudentRead]:
    """The pupils enrolled at the school, with their class; optionally one grade or only those without a class."""
    _require_read(session, caller, school_id, STUDENTS_READ)
    items, total = service.enrolled_students(
        session, school_id=school_id, grade=grade, unassigned=unassigned, limit=page.limit, offset=page.offset
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


# ------------------------------------------------------------------------------- balanced assignment


@router.post("/schools/{school_id}/class-assignments")
def assign_classes(
    school_id: str, body: ClassAssignmentRequest, caller: CallerDep, session: SessionDep
) -> ClassAssignmentRead:
    """Balanced class assignment (均衡分班): plan, and with ``commit`` write, a fair split of new pupils."""
    _require_write(session, caller, school_id)
    return service.assign_balanced(session, school_id=school_id, data=body)
