"""Typed failures of the academic structure; each renders as problem+json with a stable ``enrollment/...`` type."""

from __future__ import annotations

from kit.errors import Conflict, FieldError, InvalidInput, NotFound


class AcademicSessionNotFound(NotFound):
    """No school year or term has this id (or the caller's school cannot use it)."""

    slug = "enrollment/academic-session-not-found"
    title_zh = "学年或学期不存在"
    title_en = "Academic session not found"

    def __init__(self, session_id: str, *, field: str = "school_year_id") -> None:
        super().__init__(
            f"没有编号为 {session_id[:64]} 的学年或学期；No school year or term has the id {session_id[:64]!r}.",
            errors=[FieldError(field=field, message="unknown academic session", code="not_found")],
            session_id=session_id[:64],
        )


class OrganisationNotFound(NotFound):
    """No city or school of the directory has this id."""

    slug = "enrollment/organisation-not-found"
    title_zh = "机构不存在"
    title_en = "Organisation not found"

    def __init__(self, org_id: str, *, field: str | None = None) -> None:
        errors = [FieldError(field=field, message="unknown organisation", code="not_found")] if field else None
        super().__init__(
            f"没有编号为 {org_id[:64]} 的机构；No organisation has the id {org_id[:64]!r}.",
            errors=errors,
            org_id=org_id[:64],
        )


class InvalidAcademicSession(InvalidInput):
    """The dates, kind or parent of a school year or term do not fit together."""

    slug = "enrollment/invalid-academic-session"
    title_zh = "学年或学期设置有误"
    title_en = "Invalid academic session"


class AcademicSessionConflict(Conflict):
    """A school year overlaps another of the same organisation, or a title is already used."""

    slug = "enrollment/academic-session-conflict"
    title_zh = "学年或学期与现有设置冲突"
    title_en = "Academic session conflicts with an existing one"


class ClassNotFound(NotFound):
    """No live class of this school has this id."""

    slug = "enrollment/class-not-found"
    title_zh = "班级不存在"
    title_en = "Class not found"

    def __init__(self, class_id: str, *, field: str | None = None) -> None:
        errors = [FieldError(field=field, message="unknown class", code="not_found")] if field else None
        super().__init__(
            f"本校没有编号为 {class_id[:64]} 的班级；This school has no class with the id {class_id[:64]!r}.",
            errors=errors,
            class_id=class_id[:64],
        )


class InvalidClass(InvalidInput):
    """A class's grade, number or school year is not acceptable."""

    slug = "enrollment/invalid-class"
    title_zh = "班级信息有误"
    title_en = "Invalid class"


class ClassConflict(Conflict):
    """Another live class of the same school year already has this name or number."""

    slug = "enrollment/class-conflict"
    title_zh = "班级名称或班号已被使用"
    title_en = "Class name or number already in use"


class ClassNotEmpty(Conflict):
    """A class that still has pupils cannot be deleted, nor can balancing place pupils into it."""

    slug = "enrollment/class-not-empty"
    title_zh = "班级仍有学生"
    title_en = "Class still has pupils"


class InvalidTeacherAssignment(InvalidInput):
    """A teacher list names someone who does not teach at the school, or two head teachers."""

    slug = "enrollment/invalid-teacher-assignment"
    title_zh = "任课安排有误"
    title_en = "Invalid teacher assignment"


class StudentNotEnrolled(InvalidInput):
    """Pupils named in the request are not enrolled at the school (or not in the class's grade)."""

    slug = "enrollment/student-not-enrolled"
    title_zh = "学生未在本校注册学籍"
    title_en = "Student not enrolled at this school"


class StudentNotFound(NotFound):
    """The pupil has never been enrolled at this school."""

    slug = "enrollment/student-not-found"
    title_zh = "本校没有该学生"
    title_en = "Student not found at this school"

    def __init__(self, student_id: str) -> None:
        super().__init__(
            f"本校没有编号为 {student_id[:64]} 的学生；No student with the id {student_id[:64]!r} was ever enrolled "
            "at this school.",
            student_id=student_id[:64],
        )


class MembershipConflict(Conflict):
    """A pupil already has a homeroom class, or has none to transfer out of."""

    slug = "enrollment/membership-conflict"
    title_zh = "学生分班状态冲突"
    title_en = "Class membership conflict"


class InvalidMembershipDate(InvalidInput):
    """A start or effective date lies outside the school year, or before the pupil joined the class."""

    slug = "enrollment/invalid-membership-date"
    title_zh = "分班日期有误"
    title_en = "Invalid membership date"


class InvalidClassAssignment(InvalidInput):
    """A balanced assignment request names classes, pupils or scores that do not fit together."""

    slug = "enrollment/invalid-class-assignment"
    title_zh = "均衡分班参数有误"
    title_en = "Invalid balanced class assignment"
