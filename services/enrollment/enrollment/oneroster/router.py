"""OneRoster 1.2 Rostering Service, REST binding: read-only endpoints under /ims/oneroster/rostering/v1p2.

Every route authenticates the caller, checks the OAuth scope (``roster.read``; ``roster.students.read`` for
students, their demographics and their class lists) and confines the answer to the caller's schools: a person's
by their roles, an app's by the schools that installed it (``X-Edu-App-Schools``, set by the gateway). Failures
are answered in OneRoster's imsx_StatusInfo format (see ``errors``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from enrollment.config import EnrollmentSettings
from enrollment.deps import CallerDep, SettingsDep
from enrollment.oneroster import schemas
from enrollment.oneroster.errors import OneRosterRoute
from enrollment.oneroster.query import ListParams, known_selection, link_header, list_params, select_fields
from enrollment.oneroster.service import (
    ACADEMIC_SESSIONS,
    CLASSES,
    COURSES,
    DEMOGRAPHICS,
    ORGS,
    ROSTER_SCOPE,
    ROSTERING_PATH,
    SCHOOLS,
    STUDENTS,
    STUDENTS_SCOPE,
    TEACHERS,
    TERMS,
    USERS,
    Collection,
    ListingCache,
    RosterAccess,
    classes_of_course,
    classes_of_school,
    classes_of_session,
    classes_of_student,
    classes_of_teacher,
    courses_of_school,
    current_students_of,
    current_teachers_of,
    enrollments,
    get_object,
    list_collection,
    note_access,
    require_class_in_school,
    require_school,
    require_visible,
    roster_access,
    students_of_school,
    terms_of_school,
)
from kit.db import ReadSessionDep

router = APIRouter(prefix=ROSTERING_PATH, route_class=OneRosterRoute, tags=["OneRoster 1.2 rostering"])

_FAILURES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": schemas.OneRosterStatusInfo,
        "description": "invalid_filter_field, invalid_selection_field or invaliddata",
    },
    401: {"model": schemas.OneRosterStatusInfo, "description": "unauthorisedrequest"},
    403: {
        "model": schemas.OneRosterStatusInfo,
        "description": "forbidden: scope missing or the school is not the caller's",
    },
    404: {"model": schemas.OneRosterStatusInfo, "description": "unknownobject"},
}


def _responses(model: type) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}, **_FAILURES}


def list_query(
    settings: SettingsDep,
    limit: Annotated[str | None, Query(description="Records per page (default 100)")] = None,
    offset: Annotated[str | None, Query(description="Records to skip")] = None,
    sort: Annotated[str | None, Query(description="Field to sort on")] = None,
    order_by: Annotated[str | None, Query(alias="orderBy", description="asc (default) or desc")] = None,
    filter_text: Annotated[str | None, Query(alias="filter", description="e.g. status='active'")] = None,
    fields: Annotated[str | None, Query(description="Comma-separated fields to return")] = None,
) -> ListParams:
    return list_params(
        limit=limit, offset=offset, sort=sort, order_by=order_by, filter_text=filter_text, fields=fields,
        max_limit=settings.oneroster_max_limit,
    )  # fmt: skip


def fields_query(
    fields: Annotated[str | None, Query(description="Comma-separated fields to return")] = None,
) -> ListParams:
    return list_params(limit=None, offset=None, sort=None, order_by=None, filter_text=None, fields=fields, max_limit=1)


ListQuery = Annotated[ListParams, Depends(list_query)]
FieldsQuery = Annotated[ListParams, Depends(fields_query)]


def listing_cache(request: Request) -> ListingCache:
    """The app's cache of listing totals and page boundaries (made on first use)."""
    cache: ListingCache | None = getattr(request.app.state, "oneroster_listings", None)
    if cache is None:
        cache = ListingCache()
        request.app.state.oneroster_listings = cache
    return cache


def _base_url(settings: EnrollmentSettings) -> str:
    return settings.public_base_url.rstrip("/")


def _list(
    request: Request,
    session: Session,
    settings: EnrollmentSettings,
    collection: Collection,
    access: RosterAccess,
    params: ListParams,
    where: ColumnElement[bool] | None = None,
) -> JSONResponse:
    base_url = _base_url(settings)
    # The path names the collection and its scope (a class's students, ...); the rest decides matches and order.
    listing = (request.url.path, access.school_ids, access.students, params.filter, params.sort, params.descending)
    page = list_collection(session, collection, access, params, base_url=base_url, where=where,
                           cache=listing_cache(request), cache_key=listing)  # fmt: skip
    selection = known_selection(params.fields, set(collection.record_fields))
    records = [select_fields(record, selection) for record in page.records] if selection else page.records
    if collection.students_data(access):
        note_access(access, collection=request.url.path, records=len(records))
    headers = {
        "X-Total-Count": str(page.total),
        "Link": link_header(
            base_url + request.url.path,
            request.query_params.multi_items(),
            offset=params.offset,
            limit=params.limit,
            total=page.total,
        ),
    }
    return JSONResponse({collection.key: records}, headers=headers)


def _one(
    request: Request,
    session: Session,
    settings: EnrollmentSettings,
    collection: Collection,
    access: RosterAccess,
    sourced_id: str,
    params: ListParams,
) -> JSONResponse:
    record = get_object(session, collection, access, sourced_id, base_url=_base_url(settings))
    if collection.students_data(access):
        note_access(access, collection=request.url.path, records=1)
    selection = known_selection(params.fields, set(collection.record_fields))
    return JSONResponse({collection.singular: select_fields(record, selection)})


# ---------------------------------------------------------------------------------- orgs and schools


@router.get("/orgs", summary="getAllOrgs", responses=_responses(schemas.OneRosterOrgSet))
def get_all_orgs(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, ORGS, access, params)


@router.get("/orgs/{sourced_id}", summary="getOrg", responses=_responses(schemas.OneRosterOrgOne))
def get_org(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, ORGS, access, sourced_id, params)


@router.get("/schools", summary="getAllSchools", responses=_responses(schemas.OneRosterOrgSet))
def get_all_schools(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, SCHOOLS, access, params)


@router.get("/schools/{sourced_id}", summary="getSchool", responses=_responses(schemas.OneRosterOrgOne))
def get_school(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, SCHOOLS, access, sourced_id, params)


# --------------------------------------------------------------------------------- academic sessions


@router.get(
    "/academicSessions", summary="getAllAcademicSessions", responses=_responses(schemas.OneRosterAcademicSessionSet)
)
def get_all_academic_sessions(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, ACADEMIC_SESSIONS, access, params)


@router.get(
    "/academicSessions/{sourced_id}",
    summary="getAcademicSession",
    responses=_responses(schemas.OneRosterAcademicSessionOne),
)
def get_academic_session(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, ACADEMIC_SESSIONS, access, sourced_id, params)


@router.get("/terms", summary="getAllTerms", responses=_responses(schemas.OneRosterAcademicSessionSet))
def get_all_terms(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, TERMS, access, params)


@router.get("/terms/{sourced_id}", summary="getTerm", responses=_responses(schemas.OneRosterAcademicSessionOne))
def get_term(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, TERMS, access, sourced_id, params)


@router.get("/terms/{term_id}/classes", summary="getClassesForTerm", responses=_responses(schemas.OneRosterClassSet))
def get_classes_for_term(
    term_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_visible(session, ACADEMIC_SESSIONS, access, term_id)
    return _list(request, session, settings, CLASSES, access, params, classes_of_session(session, term_id))


# ------------------------------------------------------------------------------------ courses, classes


@router.get("/courses", summary="getAllCourses", responses=_responses(schemas.OneRosterCourseSet))
def get_all_courses(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, COURSES, access, params)


@router.get("/courses/{sourced_id}", summary="getCourse", responses=_responses(schemas.OneRosterCourseOne))
def get_course(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, COURSES, access, sourced_id, params)


@router.get(
    "/courses/{course_id}/classes", summary="getClassesForCourse", responses=_responses(schemas.OneRosterClassSet)
)
def get_classes_for_course(
    course_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_visible(session, COURSES, access, course_id)
    return _list(request, session, settings, CLASSES, access, params, classes_of_course(course_id))


@router.get("/classes", summary="getAllClasses", responses=_responses(schemas.OneRosterClassSet))
def get_all_classes(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, CLASSES, access, params)


@router.get("/classes/{sourced_id}", summary="getClass", responses=_responses(schemas.OneRosterClassOne))
def get_class(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, CLASSES, access, sourced_id, params)


@router.get(
    "/classes/{class_id}/students", summary="getStudentsForClass", responses=_responses(schemas.OneRosterUserSet)
)
def get_students_for_class(
    class_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    require_visible(session, CLASSES, access, class_id)
    return _list(request, session, settings, STUDENTS, access, params, current_students_of(class_id))


@router.get(
    "/classes/{class_id}/teachers", summary="getTeachersForClass", responses=_responses(schemas.OneRosterUserSet)
)
def get_teachers_for_class(
    class_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_visible(session, CLASSES, access, class_id)
    return _list(request, session, settings, TEACHERS, access, params, current_teachers_of(class_id))


# ------------------------------------------------------------------------------------------- users


@router.get("/users", summary="getAllUsers", responses=_responses(schemas.OneRosterUserSet))
def get_all_users(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, USERS, access, params)


@router.get("/users/{sourced_id}", summary="getUser", responses=_responses(schemas.OneRosterUserOne))
def get_user(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, USERS, access, sourced_id, params)


@router.get("/users/{user_id}/classes", summary="getClassesForUser", responses=_responses(schemas.OneRosterClassSet))
def get_classes_for_user(
    user_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_visible(session, USERS, access, user_id)
    where = classes_of_student(user_id) | classes_of_teacher(user_id)
    return _list(request, session, settings, CLASSES, access, params, where)


@router.get("/students", summary="getAllStudents", responses=_responses(schemas.OneRosterUserSet))
def get_all_students(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    return _list(request, session, settings, STUDENTS, access, params)


@router.get("/students/{sourced_id}", summary="getStudent", responses=_responses(schemas.OneRosterUserOne))
def get_student(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    return _one(request, session, settings, STUDENTS, access, sourced_id, params)


@router.get(
    "/students/{student_id}/classes", summary="getClassesForStudent", responses=_responses(schemas.OneRosterClassSet)
)
def get_classes_for_student(
    student_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    require_visible(session, STUDENTS, access, student_id)
    note_access(access, collection=request.url.path, records=1)
    return _list(request, session, settings, CLASSES, access, params, classes_of_student(student_id))


@router.get("/teachers", summary="getAllTeachers", responses=_responses(schemas.OneRosterUserSet))
def get_all_teachers(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, TEACHERS, access, params)


@router.get("/teachers/{sourced_id}", summary="getTeacher", responses=_responses(schemas.OneRosterUserOne))
def get_teacher(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, TEACHERS, access, sourced_id, params)


@router.get(
    "/teachers/{teacher_id}/classes", summary="getClassesForTeacher", responses=_responses(schemas.OneRosterClassSet)
)
def get_classes_for_teacher(
    teacher_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_visible(session, TEACHERS, access, teacher_id)
    return _list(request, session, settings, CLASSES, access, params, classes_of_teacher(teacher_id))


@router.get("/demographics", summary="getAllDemographics", responses=_responses(schemas.OneRosterDemographicsSet))
def get_all_demographics(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    return _list(request, session, settings, DEMOGRAPHICS, access, params)


@router.get(
    "/demographics/{sourced_id}", summary="getDemographics", responses=_responses(schemas.OneRosterDemographicsOne)
)
def get_demographics(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    return _one(request, session, settings, DEMOGRAPHICS, access, sourced_id, params)


# -------------------------------------------------------------------------------------- enrollments


@router.get("/enrollments", summary="getAllEnrollments", responses=_responses(schemas.OneRosterEnrollmentSet))
def get_all_enrollments(
    request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep, settings: SettingsDep
) -> JSONResponse:
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _list(request, session, settings, enrollments(access), access, params)


@router.get("/enrollments/{sourced_id}", summary="getEnrollment", responses=_responses(schemas.OneRosterEnrollmentOne))
def get_enrollment(
    sourced_id: str, request: Request, caller: CallerDep, params: FieldsQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    return _one(request, session, settings, enrollments(access), access, sourced_id, params)


# -------------------------------------------------------------------------------- within one school


@router.get(
    "/schools/{school_id}/classes", summary="getClassesForSchool", responses=_responses(schemas.OneRosterClassSet)
)
def get_classes_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_school(session, access, school_id)
    return _list(request, session, settings, CLASSES, access, params, classes_of_school(school_id))


@router.get(
    "/schools/{school_id}/courses", summary="getCoursesForSchool", responses=_responses(schemas.OneRosterCourseSet)
)
def get_courses_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_school(session, access, school_id)
    return _list(request, session, settings, COURSES, access, params, courses_of_school(school_id))


@router.get(
    "/schools/{school_id}/terms", summary="getTermsForSchool", responses=_responses(schemas.OneRosterAcademicSessionSet)
)
def get_terms_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_school(session, access, school_id)
    return _list(request, session, settings, TERMS, access, params, terms_of_school(session, school_id))


@router.get(
    "/schools/{school_id}/students", summary="getStudentsForSchool", responses=_responses(schemas.OneRosterUserSet)
)
def get_students_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    require_school(session, access, school_id)
    return _list(request, session, settings, STUDENTS, access, params, students_of_school(school_id))


@router.get(
    "/schools/{school_id}/teachers", summary="getTeachersForSchool", responses=_responses(schemas.OneRosterUserSet)
)
def get_teachers_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_school(session, access, school_id)
    school_access = RosterAccess(caller=access.caller, school_ids=(school_id,), students=access.students)
    return _list(request, session, settings, TEACHERS, school_access, params)


@router.get(
    "/schools/{school_id}/enrollments",
    summary="getEnrollmentsForSchool",
    responses=_responses(schemas.OneRosterEnrollmentSet),
)
def get_enrollments_for_school(
    school_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_school(session, access, school_id)
    return _list(request, session, settings, enrollments(access, school_id=school_id), access, params)


@router.get(
    "/schools/{school_id}/classes/{class_id}/enrollments",
    summary="getEnrollmentsForClassInSchool",
    responses=_responses(schemas.OneRosterEnrollmentSet),
)
def get_enrollments_for_class_in_school(
    school_id: str, class_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_class_in_school(session, access, school_id, class_id)
    collection = enrollments(access, school_id=school_id, class_id=class_id)
    return _list(request, session, settings, collection, access, params)


@router.get(
    "/schools/{school_id}/classes/{class_id}/students",
    summary="getStudentsForClassInSchool",
    responses=_responses(schemas.OneRosterUserSet),
)
def get_students_for_class_in_school(
    school_id: str, class_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=STUDENTS_SCOPE)
    require_class_in_school(session, access, school_id, class_id)
    return _list(request, session, settings, STUDENTS, access, params, current_students_of(class_id))


@router.get(
    "/schools/{school_id}/classes/{class_id}/teachers",
    summary="getTeachersForClassInSchool",
    responses=_responses(schemas.OneRosterUserSet),
)
def get_teachers_for_class_in_school(
    school_id: str, class_id: str, request: Request, caller: CallerDep, params: ListQuery, session: ReadSessionDep,
    settings: SettingsDep,
) -> JSONResponse:  # fmt: skip
    access = roster_access(session, caller, scope=ROSTER_SCOPE)
    require_class_in_school(session, access, school_id, class_id)
    school_access = RosterAccess(caller=access.caller, school_ids=(school_id,), students=access.students)
    return _list(request, session, settings, TEACHERS, school_access, params, current_teachers_of(class_id))
