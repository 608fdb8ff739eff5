"""The catalogue of OAuth 2.0 / OpenID Connect scopes the platform's identity provider grants.

Each scope names the personal fields it releases, so the consent screen can list them and the
identity provider can decide whether a guardian must consent first. A scope is ``sensitive`` when
it releases personal information of minors: under PIPL Art. 28/31 the personal information of a
child under 14 is sensitive and may only be processed with a guardian's consent.

Scope ids are lower-case, dotted ``<resource>[.<sub-resource>].<action>``; the OpenID Connect
standard scopes (``openid``, ``profile``, ``phone``, ``offline_access``) keep their standard names.

``openid`` alone is not sensitive: it releases only an identifier that differs per app and says
nothing about the child; every scope that releases facts about a person that can be a minor is.

``audience`` says who may request a scope: ``app`` is a vendor application registered in the
app store, ``platform`` is a first-party platform service. Pure data: imports pydantic only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Audience = Literal["app", "platform"]
PersonalField = Literal[
    "pairwise_subject_id",
    "name",
    "person_kind",
    "sex",
    "phone_number",
    "student_number",
    "resident_id_number_masked",
    "school_membership",
    "class_membership",
    "role_grants",
    "guardian_relationship",
    "enrollment_record",
    "evaluation_record",
    "attendance_record",
    "access_log",
]

SCOPE_ID_PATTERN = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*$")


class PersonalFieldLabel(BaseModel):
    """How a personal field is named on the consent screen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: PersonalField
    label_zh: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


PERSONAL_FIELDS: tuple[PersonalFieldLabel, ...] = (
    PersonalFieldLabel(
        id="pairwise_subject_id",
        label_zh="每个应用各不相同的匿名用户标识",
        label_en="Per-app pseudonymous user id",
    ),
    PersonalFieldLabel(id="name", label_zh="姓名", label_en="Name"),
    PersonalFieldLabel(
        id="person_kind",
        label_zh="身份类别（教职工、学生或家长）",
        label_en="Kind (staff, student or guardian)",
    ),
    PersonalFieldLabel(id="sex", label_zh="性别", label_en="Sex"),
    PersonalFieldLabel(id="phone_number", label_zh="手机号码", label_en="Mobile phone number"),
    PersonalFieldLabel(id="student_number", label_zh="全国学籍号", label_en="National student number"),
    PersonalFieldLabel(
        id="resident_id_number_masked",
        label_zh="居民身份证号（部分隐藏）",
        label_en="Resident ID number (masked)",
    ),
    PersonalFieldLabel(id="school_membership", label_zh="所在学校", label_en="School attended or employed at"),
    PersonalFieldLabel(id="class_membership", label_zh="所在班级", label_en="Class membership"),
    PersonalFieldLabel(id="role_grants", label_zh="在各机构中的角色", label_en="Roles held in organisations"),
    PersonalFieldLabel(
        id="guardian_relationship", label_zh="监护人与学生的关系", label_en="Guardian–student relationship"
    ),
    PersonalFieldLabel(id="enrollment_record", label_zh="招生入学记录", label_en="Enrolment record"),
    PersonalFieldLabel(
        id="evaluation_record",
        label_zh="综合素质评价记录",
        label_en="Comprehensive quality evaluation record",
    ),
    PersonalFieldLabel(id="attendance_record", label_zh="课堂考勤记录", label_en="Classroom attendance record"),
    PersonalFieldLabel(
        id="access_log",
        label_zh="个人信息访问日志",
        label_en="Log of who accessed whose personal information",
    ),
)


class Scope(BaseModel):
    """One OAuth scope: what it grants, which personal fields it releases, and who may request it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SCOPE_ID_PATTERN.pattern, description="The scope token as used in `scope`")
    description_zh: str = Field(min_length=1, description="Shown on the consent screen (zh-CN)")
    description_en: str = Field(min_length=1, description="Shown on the consent screen (en)")
    personal_fields: tuple[PersonalField, ...] = Field(
        default=(), description="Personal fields the scope releases; empty for non-personal scopes"
    )
    sensitive: bool = Field(
        default=False,
        description="Releases personal information of minors: needs guardian consent for under-14s (PIPL Art. 28/31)",
    )
    audience: tuple[Audience, ...] = Field(
        description="Who may request the scope: vendor apps, platform services, or both"
    )

    @field_validator("personal_fields", "audience")
    @classmethod
    def _unique_and_sorted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("entries must be unique")
        return tuple(sorted(value))

    @field_validator("audience")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a scope needs at least one audience")
        return value

    def requestable_by(self, audience: Audience) -> bool:
        return audience in self.audience


_BOTH: tuple[Audience, ...] = ("app", "platform")
_APP: tuple[Audience, ...] = ("app",)
_PLATFORM: tuple[Audience, ...] = ("platform",)

SCOPES: tuple[Scope, ...] = (
    # OpenID Connect standard scopes.
    Scope(
        id="openid",
        description_zh="使用城市教育统一身份登录，应用只获得一个专属于它的匿名用户标识，以及您所在的学校和角色",
        description_en="Sign in with the city education account; the app gets a user id unique to it, "
        "your school and your roles there",
        personal_fields=("pairwise_subject_id", "role_grants", "school_membership"),
        audience=_BOTH,
    ),
    Scope(
        id="profile",
        description_zh="读取您的姓名和身份类别（教职工、学生或家长）",
        description_en="Read your name and whether you are staff, a student or a guardian",
        personal_fields=("name", "person_kind"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="phone",
        description_zh="读取您的手机号码",
        description_en="Read your mobile phone number",
        personal_fields=("phone_number",),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="offline_access",
        description_zh="在您未登录时继续访问已授权的数据（获取刷新令牌）",
        description_en="Keep accessing the data you granted while you are signed out (refresh token)",
        audience=_BOTH,
    ),
    # Organisations and directory.
    Scope(
        id="org.read",
        description_zh="读取市、区、学校的机构信息",
        description_en="Read the city, district and school organisation tree",
        audience=_BOTH,
    ),
    Scope(
        id="roster.read",
        description_zh="读取学校的班级设置和教师任课安排",
        description_en="Read a school's classes and the teachers assigned to them",
        personal_fields=("class_membership", "name"),
        audience=_BOTH,
    ),
    Scope(
        id="roster.students.read",
        description_zh="读取班级的学生名单（姓名、性别、学籍号、所在班级）",
        description_en="Read the students of a class (name, sex, student number, class)",
        personal_fields=("class_membership", "name", "sex", "student_number"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="student.identity.read",
        description_zh="读取学生的身份信息（姓名、学籍号、部分隐藏的身份证号），用于考试报名等身份核验",
        description_en="Read a student's identity (name, student number, masked resident ID number) "
        "to verify it, e.g. for exam registration",
        personal_fields=("name", "resident_id_number_masked", "student_number"),
        sensitive=True,
        audience=_PLATFORM,
    ),
    Scope(
        id="guardian.read",
        description_zh="读取学生的监护人及其与学生的关系、联系电话",
        description_en="Read a student's guardians, their relationship to the student and phone number",
        personal_fields=("guardian_relationship", "name", "phone_number"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="people.read",
        description_zh="读取人员目录（姓名、身份类别、学校、学籍号、角色）",
        description_en="Read the people directory (name, kind, school, student number, roles)",
        personal_fields=("name", "person_kind", "role_grants", "school_membership", "sex", "student_number"),
        sensitive=True,
        audience=_PLATFORM,
    ),
    Scope(
        id="people.write",
        description_zh="创建和修改人员、角色及监护关系",
        description_en="Create and change people, their roles and guardian links",
        personal_fields=(
            "guardian_relationship",
            "name",
            "person_kind",
            "phone_number",
            "resident_id_number_masked",
            "role_grants",
            "school_membership",
            "sex",
            "student_number",
        ),
        sensitive=True,
        audience=_PLATFORM,
    ),
    Scope(
        id="audit.read",
        description_zh="读取个人信息访问审计日志",
        description_en="Read the audit log of access to personal information",
        personal_fields=("access_log",),
        sensitive=True,
        audience=_PLATFORM,
    ),
    # Education services.
    Scope(
        id="enrollment.read",
        description_zh="读取学生的招生入学记录和就读学校",
        description_en="Read students' enrolment records and the schools they attend",
        personal_fields=("enrollment_record", "name", "school_membership"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="enrollment.write",
        description_zh="管理招生入学、学年学期、班级设置、任课安排和学生分班",
        description_en="Manage admission, school years and terms, classes, teacher assignments and class placement",
        personal_fields=("class_membership", "enrollment_record", "name", "resident_id_number_masked"),
        sensitive=True,
        audience=_PLATFORM,
    ),
    Scope(
        id="admission.apply",
        description_zh="家长为子女提交、修改和查看入学申请",
        description_en="Parents submit, change and follow their children's school admission applications",
        personal_fields=("enrollment_record", "guardian_relationship", "name", "resident_id_number_masked"),
        sensitive=True,
        audience=_PLATFORM,
    ),
    Scope(
        id="resources.read",
        description_zh="读取教学资源目录",
        description_en="Read the catalogue of teaching and learning resources",
        audience=_BOTH,
    ),
    Scope(
        id="evaluation.read",
        description_zh="读取学生的综合素质评价记录",
        description_en="Read students' comprehensive quality evaluation records",
        personal_fields=("class_membership", "evaluation_record", "name"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="evaluation.write",
        description_zh="提交学生的综合素质评价记录",
        description_en="Submit students' comprehensive quality evaluation records",
        personal_fields=("evaluation_record",),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="classroom.read",
        description_zh="读取课表、课堂及学生考勤情况",
        description_en="Read timetables, lessons and students' attendance",
        personal_fields=("attendance_record", "class_membership", "name"),
        sensitive=True,
        audience=_BOTH,
    ),
    Scope(
        id="org.write",
        description_zh="创建和修改市、区、学校的机构信息",
        description_en="Create and change city, district and school records",
        audience=_PLATFORM,
    ),
    Scope(
        id="keys.manage",
        description_zh="轮换平台令牌签名密钥",
        description_en="Rotate the platform's token signing keys",
        audience=_PLATFORM,
    ),
    Scope(
        id="clients.manage",
        description_zh="登记、修改和停用接入平台的 OAuth 客户端（应用超市内部使用）",
        description_en="Register, change and disable the platform's OAuth clients (used by the app store)",
        audience=_PLATFORM,
    ),
    Scope(
        id="tokens.introspect",
        description_zh="查验任意访问令牌的状态（网关和平台服务使用）",
        description_en="Introspect any access token (for the gateway and platform services)",
        audience=_PLATFORM,
    ),
    Scope(
        id="apps.read",
        description_zh="浏览应用超市、打开本校已安装的应用、申请新应用",
        description_en="Browse the app store, open the apps your school installed and request new ones",
        audience=_PLATFORM,
    ),
    Scope(
        id="apps.install",
        description_zh="为学校安装、调整授权和卸载应用，审批教师的应用申请",
        description_en="Install, re-grant and uninstall apps for a school; decide teachers' app requests",
        audience=_PLATFORM,
    ),
    Scope(
        id="apps.develop",
        description_zh="应用开发者管理本企业的应用、提交版本、查看审核意见和回调投递",
        description_en="Vendor developers manage their company's apps, versions, reviews and webhook deliveries",
        audience=_PLATFORM,
    ),
    Scope(
        id="apps.review",
        description_zh="审核应用准入，暂停或淘汰应用",
        description_en="Review apps for admission to the store; suspend or retire apps",
        audience=_PLATFORM,
    ),
    Scope(
        id="metering.read",
        description_zh="查看应用的使用量、费用、结算单和效益排名（按所在机构或企业的范围）",
        description_en="Read apps' usage, costs, statements and benefit ranking, within one's organisation or vendor",
        audience=_PLATFORM,
    ),
    Scope(
        id="metering.approve",
        description_zh="市级财务审核结算单、处理企业异议和待核用量",
        description_en="City finance: approve statements, resolve vendors' disputes, decide usage held for review",
        audience=_PLATFORM,
    ),
    Scope(
        id="metering.report",
        description_zh="上报应用的使用量统计（仅汇总数据，不含个人信息）",
        description_en="Report the app's usage figures (aggregates only, no personal information)",
        audience=_APP,
    ),
)

SCOPES_BY_ID: Mapping[str, Scope] = MappingProxyType({item.id: item for item in SCOPES})


def scope(scope_id: str) -> Scope:
    """The scope with this id; ``KeyError`` naming the known ids when there is none."""
    try:
        return SCOPES_BY_ID[scope_id]
    except KeyError:
        known = ", ".join(sorted(SCOPES_BY_ID))
        raise KeyError(f"unknown OAuth scope {scope_id!r}; known scopes: {known}") from None


def parse_scope_string(value: str) -> tuple[Scope, ...]:
    """The scopes of a space-separated OAuth ``scope`` parameter (RFC 6749 §3.3), in catalogue order."""
    wanted = set(value.split())
    for scope_id in wanted:
        scope(scope_id)
    return tuple(item for item in SCOPES if item.id in wanted)


def personal_fields_for(scope_ids: Iterable[str]) -> tuple[PersonalField, ...]:
    """The personal fields the given scopes release together, sorted; ``KeyError`` for unknown ids."""
    fields: set[PersonalField] = set()
    for scope_id in scope_ids:
        fields.update(scope(scope_id).personal_fields)
    return tuple(sorted(fields))


def requires_guardian_consent(scope_ids: Iterable[str]) -> bool:
    """Whether granting these scopes for a child under 14 needs a guardian's consent."""
    return any(scope(scope_id).sensitive for scope_id in scope_ids)


def personal_field_label(field: PersonalField) -> PersonalFieldLabel:
    for label in PERSONAL_FIELDS:
        if label.id == field:
            return label
    raise KeyError(f"no label for personal field {field!r}")
