"""The JSON shapes of the OneRoster 1.2 Rostering REST binding that this service returns, for the OpenAPI document.

The routes build these objects as plain dicts (a page of 100 users is rendered without a validation pass) and
the tests check them against an independent JSON Schema written from the specification. Only the fields this
service can fill are declared; every other field of the standard is optional and left out.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["active", "tobedeleted"]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sourcedId: str
    status: Status
    dateLastModified: str = Field(description="ISO 8601 UTC date-time with milliseconds, e.g. 2026-09-01T08:00:00.000Z")
    metadata: dict[str, object] | None = None


class OneRosterGUIDRef(BaseModel):
    """A reference to another object: where to fetch it, its sourcedId and its type."""

    href: str
    sourcedId: str
    type: Literal["org", "academicSession", "course", "class", "user"]


class OneRosterOrg(_Base):
    name: str
    type: Literal["district", "school", "local"] = Field(
        description="school; district for a district (区) bureau; local for the city (市) bureau above districts"
    )
    identifier: str | None = Field(default=None, description="The school code (学校标识码), when known")
    parent: OneRosterGUIDRef | None = None
    children: list[OneRosterGUIDRef] | None = None


class OneRosterAcademicSession(_Base):
    title: str
    type: Literal["schoolYear", "term"]
    startDate: date
    endDate: date
    parent: OneRosterGUIDRef | None = None
    children: list[OneRosterGUIDRef] | None = None
    schoolYear: str = Field(description="The calendar year the school year ends in, e.g. 2027 for 2026-2027学年")
    org: OneRosterGUIDRef


class OneRosterCourse(_Base):
    title: str
    schoolYear: OneRosterGUIDRef | None = None
    courseCode: str
    grades: list[str] = Field(description="CEDS grade level codes, e.g. ['01']")
    subjects: list[str] | None = None
    org: OneRosterGUIDRef


class OneRosterClass(_Base):
    title: str
    classCode: str = Field(description="<grade>-<number>, e.g. 01-3 for 一年级(3)班")
    classType: Literal["homeroom", "scheduled"]
    grades: list[str]
    subjects: list[str] | None = None
    course: OneRosterGUIDRef
    school: OneRosterGUIDRef
    terms: list[OneRosterGUIDRef] = Field(description="The school year the class runs in")


class OneRosterRole(BaseModel):
    roleType: Literal["primary", "secondary"]
    role: Literal["student", "teacher", "siteAdministrator", "districtAdministrator", "parent"]
    org: OneRosterGUIDRef


class OneRosterUserId(BaseModel):
    type: str
    identifier: str


class OneRosterUser(_Base):
    enabledUser: bool
    givenName: str = Field(description="The given name (名): the name after the family name")
    familyName: str = Field(description="The family name (姓): the first character, or a compound surname (欧阳…)")
    roles: list[OneRosterRole]
    primaryOrg: OneRosterGUIDRef | None = None
    identifier: str | None = Field(
        default=None, description="The national student number (全国学籍号); students only, roster.students.read"
    )
    userIds: list[OneRosterUserId] | None = None
    grades: list[str] | None = None


class OneRosterEnrollment(_Base):
    user: OneRosterGUIDRef
    # "class" is a Python keyword: the JSON field is named class.
    class_: OneRosterGUIDRef = Field(alias="class")
    school: OneRosterGUIDRef
    role: Literal["student", "teacher"]
    primary: bool = Field(description="True for a class's head teacher (班主任)")
    beginDate: date | None = None
    endDate: date | None = None


class OneRosterDemographics(_Base):
    sex: Literal["male", "female"] | None = Field(
        default=None, description="Only sex: no birth date or other demographics of minors are released"
    )


class OneRosterOrgSet(BaseModel):
    orgs: list[OneRosterOrg]


class OneRosterOrgOne(BaseModel):
    org: OneRosterOrg


class OneRosterAcademicSessionSet(BaseModel):
    academicSessions: list[OneRosterAcademicSession]


class OneRosterAcademicSessionOne(BaseModel):
    academicSession: OneRosterAcademicSession


class OneRosterCourseSet(BaseModel):
    courses: list[OneRosterCourse]


class OneRosterCourseOne(BaseModel):
    course: OneRosterCourse


class OneRosterClassSet(BaseModel):
    classes: list[OneRosterClass]


class OneRosterClassOne(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: OneRosterClass = Field(alias="class")


class OneRosterUserSet(BaseModel):
    users: list[OneRosterUser]


class OneRosterUserOne(BaseModel):
    user: OneRosterUser


class OneRosterEnrollmentSet(BaseModel):
    enrollments: list[OneRosterEnrollment]


class OneRosterEnrollmentOne(BaseModel):
    enrollment: OneRosterEnrollment


class OneRosterDemographicsSet(BaseModel):
    demographics: list[OneRosterDemographics]


class OneRosterDemographicsOne(BaseModel):
    demographics: OneRosterDemographics


class OneRosterCodeMinorField(BaseModel):
    imsx_codeMinorFieldName: str
    imsx_codeMinorFieldValue: str


class OneRosterCodeMinor(BaseModel):
    imsx_codeMinorField: list[OneRosterCodeMinorField]


class OneRosterStatusInfo(BaseModel):
    """The body of every failed OneRoster request (imsx_StatusInfo)."""

    imsx_codeMajor: Literal["failure"]
    imsx_severity: Literal["error"]
    imsx_description: str
    imsx_CodeMinor: OneRosterCodeMinor
