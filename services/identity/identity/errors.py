"""Identity's typed failures; each renders as problem+json through the kit's one handler."""

from __future__ import annotations

from kit.errors import Conflict, Forbidden, InvalidInput, NotFound


class OrganisationNotFound(NotFound):
    slug = "identity/organisation-not-found"
    title_zh = "机构不存在"
    title_en = "Organisation not found"


class PersonNotFound(NotFound):
    slug = "identity/person-not-found"
    title_zh = "人员不存在"
    title_en = "Person not found"


class ImportJobNotFound(NotFound):
    slug = "identity/import-job-not-found"
    title_zh = "导入任务不存在"
    title_en = "Import job not found"


class InvalidOrganisationPlacement(InvalidInput):
    slug = "identity/invalid-organisation-placement"
    title_zh = "机构层级不正确"
    title_en = "Invalid place in the organisation tree"


class DuplicateSchoolCode(Conflict):
    slug = "identity/duplicate-school-code"
    title_zh = "学校标识码已存在"
    title_en = "School code already in use"


class DuplicateStudentNumber(Conflict):
    slug = "identity/duplicate-student-number"
    title_zh = "学籍号已存在"
    title_en = "Student number already in use"


class DuplicateResidentId(Conflict):
    slug = "identity/duplicate-resident-id"
    title_zh = "身份证号已登记"
    title_en = "Resident ID number already registered"


class DuplicateUsername(Conflict):
    slug = "identity/duplicate-username"
    title_zh = "登录名已存在"
    title_en = "Username already in use"


class InvalidPersonData(InvalidInput):
    slug = "identity/invalid-person-data"
    title_zh = "人员信息有误"
    title_en = "Invalid person data"


class OutsideYourOrganisation(Forbidden):
    slug = "identity/outside-your-organisation"
    title_zh = "超出您所管理的机构范围"
    title_en = "Outside the organisations you manage"


class InactiveRecord(Conflict):
    slug = "identity/inactive-record"
    title_zh = "记录已停用"
    title_en = "Record is deactivated"


class NoLoginName(Conflict):
    slug = "identity/no-login-name"
    title_zh = "该账号没有登录名"
    title_en = "The account has no login name"
