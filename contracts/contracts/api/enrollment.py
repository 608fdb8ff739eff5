"""The enrollment service's public routes (served at /api/enrollment).

* Admission: districts run seasons and the draw; families apply with ``admission.apply``; the draw's commitment,
  revealed seed and anonymised input are public, so anyone (a notary, a journalist) can re-run it.
* Academic structure: school-scoped; a vendor's app installed at the school may read classes (``roster.read``)
  and class lists (``roster.students.read``), never change them.
* OneRoster 1.2 rostering and the change feed: collections across schools, so an app gets the data of the schools
  that installed it (``installed``); the school-scoped OneRoster endpoints name the school in the path.
"""

from __future__ import annotations

from contracts.api.routes import RouteSpec, ServiceApi, TenantLocator

_SCHOOL = TenantLocator(source="path", name="school_id")
ONEROSTER = "/ims/oneroster/rostering/v1p2"
ROSTER = ("roster.read",)
STUDENTS = ("roster.read", "roster.students.read")

# (path under ONEROSTER, OneRoster operation, scopes): collections that list data across schools.
_ONEROSTER_ACROSS_SCHOOLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/orgs", "getAllOrgs", ROSTER),
    ("/orgs/{sourced_id}", "getOrg", ROSTER),
    ("/schools", "getAllSchools", ROSTER),
    ("/schools/{sourced_id}", "getSchool", ROSTER),
    ("/academicSessions", "getAllAcademicSessions", ROSTER),
    ("/academicSessions/{sourced_id}", "getAcademicSession", ROSTER),
    ("/terms", "getAllTerms", ROSTER),
    ("/terms/{sourced_id}", "getTerm", ROSTER),
    ("/terms/{term_id}/classes", "getClassesForTerm", ROSTER),
    ("/courses", "getAllCourses", ROSTER),
    ("/courses/{sourced_id}", "getCourse", ROSTER),
    ("/courses/{course_id}/classes", "getClassesForCourse", ROSTER),
    ("/classes", "getAllClasses", ROSTER),
    ("/classes/{sourced_id}", "getClass", ROSTER),
    ("/classes/{class_id}/students", "getStudentsForClass", STUDENTS),
    ("/classes/{class_id}/teachers", "getTeachersForClass", ROSTER),
    ("/users", "getAllUsers", STUDENTS),
    ("/users/{sourced_id}", "getUser", STUDENTS),
    ("/users/{user_id}/classes", "getClassesForUser", STUDENTS),
    ("/students", "getAllStudents", STUDENTS),
    ("/students/{sourced_id}", "getStudent", STUDENTS),
    ("/students/{student_id}/classes", "getClassesForStudent", STUDENTS),
    ("/teachers", "getAllTeachers", ROSTER),
    ("/teachers/{sourced_id}", "getTeacher", ROSTER),
    ("/teachers/{teacher_id}/classes", "getClassesForTeacher", ROSTER),
    ("/demographics", "getAllDemographics", STUDENTS),
    ("/demographics/{sourced_id}", "getDemographics", STUDENTS),
    ("/enrollments", "getAllEnrollments", STUDENTS),
    ("/enrollments/{sourced_id}", "getEnrollment", STUDENTS),
)
# School-scoped OneRoster endpoints: the gateway checks the named school's installation.
_ONEROSTER_FOR_SCHOOL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/schools/{school_id}/classes", "getClassesForSchool", ROSTER),
    ("/schools/{school_id}/courses", "getCoursesForSchool", ROSTER),
    ("/schools/{school_id}/terms", "getTermsForSchool", ROSTER),
    ("/schools/{school_id}/students", "getStudentsForSchool", STUDENTS),
    ("/schools/{school_id}/teachers", "getTeachersForSchool", ROSTER),
    ("/schools/{school_id}/enrollments", "getEnrollmentsForSchool", STUDENTS),
    ("/schools/{school_id}/classes/{class_id}/enrollments", "getEnrollmentsForClassInSchool", STUDENTS),
    ("/schools/{school_id}/classes/{class_id}/students", "getStudentsForClassInSchool", STUDENTS),
    ("/schools/{school_id}/classes/{class_id}/teachers", "getTeachersForClassInSchool", ROSTER),
)

_ADMISSION = (
    # Districts.
    RouteSpec(method="POST", path="/admission/seasons", summary="Create an admission season",
              scopes=("enrollment.write",)),
    RouteSpec(method="POST", path="/admission/seasons/{season_id}/open", summary="Open a season to applications",
              scopes=("enrollment.write",)),
    # Families and districts both read seasons; the service accepts admission.apply or enrollment.read.
    RouteSpec(method="GET", path="/admission/seasons", summary="List admission seasons"),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}", summary="Read an admission season"),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/pressure", summary="Seat pressure warnings",
              scopes=("enrollment.read",)),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/progress", summary="Admission progress",
              scopes=("enrollment.read",)),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/applications", summary="A season's applications",
              scopes=("enrollment.read",)),
    RouteSpec(method="POST", path="/admission/seasons/{season_id}/draw/commit",
              summary="Freeze the input and commit to the lottery seed", scopes=("enrollment.write",),
              timeout_seconds=60),
    RouteSpec(method="POST", path="/admission/seasons/{season_id}/draw", summary="Run the draw and reveal the seed",
              scopes=("enrollment.write",), timeout_seconds=120),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/results.csv", summary="Export the results",
              scopes=("enrollment.read",), timeout_seconds=60),
    RouteSpec(method="POST", path="/admission/documents/{document_id}/review", summary="Review a family's document",
              scopes=("enrollment.write",)),
    RouteSpec(method="GET", path="/admission/documents/{document_id}/content", summary="Read a family's document",
              scopes=("enrollment.read",)),
    # The public draw.
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/draw", summary="The draw's commitment and results",
              authenticated=False),
    RouteSpec(method="GET", path="/admission/seasons/{season_id}/draw/input",
              summary="The draw's anonymised input", authenticated=False),
    # Families.
    RouteSpec(method="POST", path="/admission/seasons/{season_id}/applications", summary="Apply for a child",
              scopes=("admission.apply",), rate_limit="30/minute"),
    RouteSpec(method="GET", path="/admission/applications", summary="My applications", scopes=("admission.apply",)),
    RouteSpec(method="GET", path="/admission/applications/{application_id}", summary="Read an application"),
    RouteSpec(method="GET", path="/admission/applications/{application_id}/history",
              summary="An application's history"),
    RouteSpec(method="PATCH", path="/admission/applications/{application_id}", summary="Change an application",
              scopes=("admission.apply",)),
    RouteSpec(method="DELETE", path="/admission/applications/{application_id}", summary="Withdraw an application",
              scopes=("admission.apply",)),
    RouteSpec(method="POST", path="/admission/applications/{application_id}/documents",
              summary="Upload a document for a fact that could not be verified", scopes=("admission.apply",),
              max_body_bytes=6 * 1024 * 1024, timeout_seconds=60),
    RouteSpec(method="POST", path="/admission/applications/{application_id}/accept", summary="Accept the offer",
              scopes=("admission.apply",)),
    RouteSpec(method="POST", path="/admission/applications/{application_id}/decline", summary="Decline the offer",
              scopes=("admission.apply",), timeout_seconds=120),
)  # fmt: skip

_ACADEMICS = (
    RouteSpec(method="POST", path="/academic-sessions", summary="Define a school year or term",
              scopes=("enrollment.write",)),
    RouteSpec(method="GET", path="/academic-sessions", summary="List school years and terms", scopes=ROSTER,
              app_access="installed"),
    RouteSpec(method="POST", path="/schools/{school_id}/classes", summary="Create a class",
              scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/classes", summary="List a school's classes", scopes=ROSTER,
              app_access="school", tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/classes/{class_id}", summary="Read a class", scopes=ROSTER,
              app_access="school", tenant=_SCHOOL),
    RouteSpec(method="PATCH", path="/schools/{school_id}/classes/{class_id}", summary="Change a class",
              scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="DELETE", path="/schools/{school_id}/classes/{class_id}", summary="Delete a class",
              scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/classes/{class_id}/teachers", summary="A class's teachers",
              scopes=ROSTER, app_access="school", tenant=_SCHOOL),
    RouteSpec(method="PUT", path="/schools/{school_id}/classes/{class_id}/teachers", summary="Assign teachers",
              scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="POST", path="/schools/{school_id}/classes/{class_id}/members", summary="Add pupils to a class",
              scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/classes/{class_id}/members", summary="A class's pupils",
              scopes=STUDENTS, app_access="school", tenant=_SCHOOL),
    RouteSpec(method="POST", path="/schools/{school_id}/students/{student_id}/class-transfer",
              summary="Move a pupil to another class", scopes=("enrollment.write",), tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/students/{student_id}/class-history",
              summary="A pupil's classes over time", scopes=STUDENTS, app_access="school", tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/students", summary="A school's enrolled pupils",
              scopes=STUDENTS, app_access="school", tenant=_SCHOOL),
    RouteSpec(method="POST", path="/schools/{school_id}/class-assignments",
              summary="Balanced class assignment for new pupils", scopes=("enrollment.write",), tenant=_SCHOOL,
              timeout_seconds=60),
)  # fmt: skip

_ROSTERS = (
    *(
        RouteSpec(method="GET", path=ONEROSTER + path, summary=f"OneRoster {operation}", scopes=scopes,
                  app_access="installed")
        for path, operation, scopes in _ONEROSTER_ACROSS_SCHOOLS
    ),
    *(
        RouteSpec(method="GET", path=ONEROSTER + path, summary=f"OneRoster {operation}", scopes=scopes,
                  app_access="school", tenant=_SCHOOL)
        for path, operation, scopes in _ONEROSTER_FOR_SCHOOL
    ),
    RouteSpec(method="GET", path="/changes", summary="Roster changes since a cursor", scopes=ROSTER,
              app_access="installed"),
)  # fmt: skip

ENROLLMENT_API = ServiceApi(
    service="enrollment",
    title="Enrollment: admission, school years, classes, OneRoster 1.2 rosters",
    routes=(*_ADMISSION, *_ACADEMICS, *_ROSTERS),
)
