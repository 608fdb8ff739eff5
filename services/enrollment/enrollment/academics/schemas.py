"""Request and response bodies of the academics API (school years, terms, classes, teachers, membership)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SessionKind = Literal["school_year", "term"]
#: CEDS grade-level codes used by OneRoster: "01".."06" primary, "07".."09" junior secondary, "10".."12" senior.
Grade = Literal["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
TeacherRole = Literal["head", "subject"]
Sex = Literal["male", "female"]

GRADE_NAMES: dict[str, str] = {
    "01": "一年级", "02": "二年级", "03": "三年级", "04": "四年级", "05": "五年级", "06": "六年级",
    "07": "七年级", "08": "八年级", "09": "九年级", "10": "高一", "11": "高二", "12": "高三",
}  # fmt: skip

Id = Annotated[str, Field(min_length=1, max_length=36)]
Score = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]


def grade_name(grade: str) -> str:
    """The Chinese name of a CEDS grade code ("01" → 一年级, "10" → 高一)."""
    return GRADE_NAMES.get(grade, grade)


def default_class_name(grade: str, number: int) -> str:
    """The customary name of a homeroom: 一年级(1)班."""
    return f"{grade_name(grade)}({number})班"


def _unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    repeated = [value for value in values if value in seen or seen.add(value)]  # type: ignore[func-returns-value]
    if repeated:
        raise ValueError(f"{what} must not repeat (repeated: {', '.join(sorted(set(repeated))[:5])})")
    return values


# ----------------------------------------------------------------------------------------- sessions


class AcademicSessionCreate(BaseModel):
    """A school year (city-wide) or a term within one (city-wide, or a school's own)."""

    model_config = ConfigDict(extra="forbid")

    org_id: Id = Field(description="The city (school years and city-wide terms) or a school (its own terms)")
    kind: SessionKind
    title: str = Field(min_length=1, max_length=64, examples=["2026-2027学年", "2026-2027学年第一学期"])
    start_date: date
    end_date: date
    parent_id: Id | None = Field(default=None, description="For a term: the school year it belongs to")

    @field_validator("title")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("title must not be blank")
        return value


class AcademicSessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    org_id: str
    kind: SessionKind
    title: str
    school_year: int = Field(description="The calendar year the school year ends in (OneRoster schoolYear)")
    start_date: date
    end_date: date
    parent_id: str | None


# ------------------------------------------------------------------------------------------ classes


class TeacherRef(BaseModel):
    id: str
    name: str | None


class ClassCreate(BaseModel):
    """A homeroom class (行政班) of a school year."""

    model_config = ConfigDict(extra="forbid")

    school_year_id: Id
    grade: Grade
    number: int = Field(ge=1, le=99, description="The (1) in 一年级(1)班")
    name: str | None = Field(default=None, min_length=1, max_length=64, description="Default: 一年级(1)班")
    head_teacher_id: Id | None = None


class ClassUpdate(BaseModel):
    """Rename or renumber a class, or change its head teacher (null removes the head teacher)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=64)
    number: int | None = Field(default=None, ge=1, le=99)
    head_teacher_id: Id | None = None


class TeacherAssignmentWrite(BaseModel):
    """One teacher of a class: the head teacher (班主任) or the teacher of a subject."""

    model_config = ConfigDict(extra="forbid")

    teacher_id: Id
    role: TeacherRole
    subject: str | None = Field(default=None, min_length=1, max_length=32, examples=["语文", "数学"])

    @model_validator(mode="after")
    def _subject_matches_role(self) -> Self:
        if self.role == "subject" and self.subject is None:
            raise ValueError("a subject teacher needs a subject")
        if self.role == "head" and self.subject is not None:
            raise ValueError("a head teacher has no subject here; add a separate subject assignment")
        return self


class TeacherAssignmentRead(BaseModel):
    id: str
    teacher_id: str
    name: str | None
    role: TeacherRole
    subject: str | None
    start_date: date
    end_date: date | None


class ClassRead(BaseModel):
    id: str
    school_id: str
    school_year_id: str
    course_id: str
    grade: str
    grade_name: str
    number: int
    name: str
    class_type: str
    head_teacher: TeacherRef | None
    teachers: list[TeacherAssignmentRead] = Field(description="Current assignments")
    member_count: int = Field(description="Pupils in the class today")
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------------------- membership


class MembersAdd(BaseModel):
    """Put enrolled pupils into a class from a date (default: today, or the first day of the school year)."""

    model_config = ConfigDict(extra="forbid")

    student_ids: list[Id] = Field(min_length=1, max_length=500)
    start_date: date | None = None

    @field_validator("student_ids")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        return _unique(value, "student_ids")


class MemberRead(BaseModel):
    """A pupil of a class: only what roster.students.read releases (no birth date, no ID number)."""

    student_id: str
    name: str | None
    sex: str | None
    student_number: str | None
    membership_id: str
    start_date: date
    end_date: date | None
    reason: str


class ClassTransfer(BaseModel):
    """Move a pupil to another class from a date; the current membership ends the day before."""

    model_config = ConfigDict(extra="forbid")

    to_class_id: Id
    effective_on: date
    reason: str = Field(min_length=1, max_length=200, examples=["家长申请，经年级组同意"])


class MembershipRead(BaseModel):
    id: str
    class_id: str
    class_name: str
    grade: str
    school_year_id: str
    start_date: date
    end_date: date | None
    reason: str
    note: str | None = Field(description="Why the pupil moved; only for the platform's staff with enrollment.read")


class TransferRead(BaseModel):
    student_id: str
    from_class_id: str
    to_class_id: str
    effective_on: date
    ended: MembershipRead | None = Field(description="The previous membership; null when it never took effect")
    started: MembershipRead


class ClassRef(BaseModel):
    id: str
    name: str
    start_date: date


class EnrolledStudentRead(BaseModel):
    student_id: str
    name: str | None
    sex: str | None
    student_number: str | None
    grade: str | None = Field(description="Unknown for a pupil from the directory until they join a class")
    grade_name: str | None
    current_class: ClassRef | None


# ------------------------------------------------------------------------------- balanced assignment


class ClassAssignmentRequest(BaseModel):
    """Split new pupils of a grade into empty classes: equal sizes, boys and girls, and mean scores."""

    model_config = ConfigDict(extra="forbid")

    school_year_id: Id
    grade: Grade
    class_ids: list[Id] = Field(min_length=1, max_length=40)
    student_ids: list[Id] | None = Field(
        default=None, max_length=2000, description="Default: enrolled pupils of the grade who have no class"
    )
    scores: dict[str, Score] | None = Field(
        default=None,
        description="Any score to balance on (e.g. a placement test); a pupil without one counts as average",
    )
    start_date: date | None = Field(default=None, description="Default: today, or the first day of the school year")
    commit: bool = Field(default=False, description="false: only the plan; true: write the memberships")

    @field_validator("class_ids")
    @classmethod
    def _unique_classes(cls, value: list[str]) -> list[str]:
        return _unique(value, "class_ids")

    @field_validator("student_ids")
    @classmethod
    def _unique_students(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique(value, "student_ids")


class PlannedPupil(BaseModel):
    student_id: str
    name: str | None
    score: float | None


class PlannedClass(BaseModel):
    class_id: str
    class_name: str
    size: int
    boys: int
    girls: int
    unknown_sex: int
    scored: int = Field(description="Pupils of the class with a score")
    mean_score: float | None
    std_score: float | None = Field(description="Population standard deviation of the class's scores")
    pupils: list[PlannedPupil]


class AssignmentSummary(BaseModel):
    pupils: int
    mean_spread: float | None = Field(description="Highest minus lowest class mean score")
    size_spread: int = Field(description="Largest minus smallest class")
    boys_share_spread: float | None = Field(description="Highest minus lowest share of boys in a class")
    swaps: int = Field(description="Same-sex swaps the improvement pass made after the serpentine deal")


class RandomComparison(BaseModel):
    """The same pupils split at random into classes of the same sizes, repeated ``trials`` times."""

    trials: int
    expected_mean_spread: float | None
    expected_boys_share_spread: float | None
    share_at_least_as_balanced: float | None = Field(
        description="Share of random splits whose mean spread is no larger than the plan's"
    )


class ClassAssignmentRead(BaseModel):
    committed: bool
    school_year_id: str
    grade: str
    start_date: date
    classes: list[PlannedClass]
    summary: AssignmentSummary
    random_comparison: RandomComparison
