"""Typed failures of launching apps and of the LTI platform endpoints; each renders as problem+json.

Errors of the LTI token endpoint also carry the OAuth ``error`` code (RFC 6749 §5.2) as an extension member,
so a tool's OAuth library finds the code it expects in the problem body.
"""

from __future__ import annotations

from typing import Any

from kit.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, Problem, Unauthenticated


class InstallationNotFound(NotFound):
    """No installation (LTI deployment) has this id."""

    slug = "appstore/installation-not-found"
    title_zh = "应用安装记录不存在"
    title_en = "Installation not found"

    def __init__(self, installation_id: str, *, field: str = "installation_id") -> None:
        super().__init__(
            f"没有编号为 {installation_id[:64]} 的应用安装；No installation has the id {installation_id[:64]!r}.",
            errors=[FieldError(field=field, message="unknown installation", code="not_found")],
        )


class NoRoleAtSchool(Forbidden):
    """The user holds no teacher, student or school administrator role at the installing school."""

    slug = "appstore/no-role-at-school"
    title_zh = "您不是该校师生"
    title_en = "No role at this school"

    def __init__(self) -> None:
        super().__init__(
            "只有该校的教师、学生或学校管理员可以打开本校安装的应用；"
            "Only teachers, students and administrators of the installing school may open its apps."
        )


class AppNotAvailable(Conflict):
    """The installation was removed, or the app is suspended or retired."""

    slug = "appstore/app-not-available"
    title_zh = "应用当前不可用"
    title_en = "App not available"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class ClassNotOpen(Forbidden):
    """The school opened the app to some grades or classes only, and this launch is outside them."""

    slug = "appstore/class-not-open"
    title_zh = "该班级未开通此应用"
    title_en = "App not opened to this class"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class NotInClass(Forbidden):
    """A teacher launched from a class they do not teach, or a pupil from a class they are not in."""

    slug = "appstore/not-in-class"
    title_zh = "您不在该班级"
    title_en = "Not a member of this class"

    def __init__(self) -> None:
        super().__init__(
            "只能从自己任教或就读的班级打开应用；Open the app from a class you teach or belong to.",
            errors=[FieldError(field="class_id", message="not a class of yours", code="not_member")],
        )


class UnknownClass(InvalidInput):
    """The class is not an active class of the installing school."""

    slug = "appstore/class-not-found"

    def __init__(self, class_id: str) -> None:
        super().__init__(
            f"本校没有编号为 {class_id[:64]} 的班级；The installing school has no class {class_id[:64]!r}.",
            errors=[FieldError(field="class_id", message="not a class of the installing school", code="not_found")],
        )


class LtiRequestRefused(Problem):
    """An LTI authentication request that cannot be answered at the tool's redirect URI (unknown client, or a
    redirect URI the manifest does not list): answering there would hand an id_token to a stranger."""

    status = 400
    slug = "appstore/lti-request-refused"
    title_zh = "LTI 登录请求无效"
    title_en = "Invalid LTI authentication request"


class LtiTokenError(Problem):
    """A refused request at the LTI token endpoint, with its OAuth error code."""

    status = 400
    slug = "appstore/lti-token-refused"
    title_zh = "LTI 服务令牌请求被拒绝"
    title_en = "LTI service token request refused"

    def __init__(self, error: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail, error=error, error_description=detail, **extensions)


class LtiInvalidClient(LtiTokenError):
    status = 401
    slug = "appstore/lti-invalid-client"
    title_zh = "LTI 工具身份验证失败"
    title_en = "LTI tool authentication failed"

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_client", detail)


class InvalidServiceToken(Unauthenticated):
    """No valid LTI service access token was presented to an LTI Advantage service."""

    slug = "appstore/lti-invalid-token"
    title_zh = "LTI 服务令牌无效"
    title_en = "Invalid LTI service token"


class ServiceScopeMissing(Forbidden):
    slug = "appstore/lti-insufficient-scope"
    title_zh = "LTI 服务令牌缺少所需范围"
    title_en = "LTI service token lacks the scope"


class ContextNotFound(NotFound):
    """The class is not a class of this deployment's school (or not open to the app there)."""

    slug = "appstore/lti-context-not-found"
    title_zh = "LTI 上下文（班级）不存在"
    title_en = "LTI context not found"

    def __init__(self, context_id: str) -> None:
        super().__init__(
            f"该部署所在学校没有编号为 {context_id[:64]} 的班级；"
            f"The deployment's school has no class {context_id[:64]!r}."
        )
