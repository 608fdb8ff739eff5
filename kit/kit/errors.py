"""Typed errors, mapped once to RFC 9457 problem+json.

Every failure a client can cause is a subclass of :class:`Problem` with a stable ``type`` URI, a
title in Simplified Chinese and English (chosen by ``Accept-Language``), a detail that says what to
fix, and, for invalid input, ``errors[]`` naming each offending field.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://errors.edu-platform.cn/"

logger = logging.getLogger("kit.errors")


class FieldError(BaseModel):
    """One offending field: where it is (JSON pointer-ish dotted path or column) and what is wrong."""

    field: str
    message: str
    code: str | None = None
    row: int | None = None


class Problem(Exception):
    """Base of all client-visible failures."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title_zh: ClassVar[str] = "请求有误"
    title_en: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or self.title_en)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extensions = extensions

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_TYPE_BASE + cls.slug

    def body(self, language: str, instance: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri(),
            "title": self.title_zh if language == "zh" else self.title_en,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [error.model_dump(exclude_none=True) for error in self.errors]
        body.update(self.extensions)
        return body


class InvalidInput(Problem):
    """The request was understood but some fields are wrong."""

    status = 422
    slug = "invalid-input"
    title_zh = "输入内容有误"
    title_en = "Invalid input"


class MalformedRequest(Problem):
    """The body could not be parsed at all (malformed JSON, unreadable file)."""

    status = 400
    slug = "malformed-request"
    title_zh = "请求格式错误"
    title_en = "Malformed request"


class Unauthenticated(Problem):
    """No valid access token was presented."""

    status = 401
    slug = "unauthenticated"
    title_zh = "未登录或令牌无效"
    title_en = "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(detail, **kwargs)


class Forbidden(Problem):
    """The caller is known but may not do this here."""

    status = 403
    slug = "forbidden"
    title_zh = "无权执行此操作"
    title_en = "Forbidden"


class InsufficientScope(Forbidden):
    """The token lacks an OAuth scope the operation needs."""

    slug = "insufficient-scope"
    title_zh = "令牌缺少所需的授权范围"
    title_en = "Insufficient scope"


class NotFound(Problem):
    """The resource does not exist, or the caller may not know that it does."""

    status = 404
    slug = "not-found"
    title_zh = "资源不存在"
    title_en = "Not found"


class Conflict(Problem):
    """The request conflicts with the current state (a duplicate, a stale version)."""

    status = 409
    slug = "conflict"
    title_zh = "与现有数据冲突"
    title_en = "Conflict"


class PayloadTooLarge(Problem):
    status = 413
    slug = "payload-too-large"
    title_zh = "上传内容过大"
    title_en = "Payload too large"


class UnsupportedMediaType(Problem):
    status = 415
    slug = "unsupported-media-type"
    title_zh = "不支持的文件或内容类型"
    title_en = "Unsupported media type"


class ServiceUnavailable(Problem):
    status = 503
    slug = "service-unavailable"
    title_zh = "服务暂时不可用"
    title_en = "Service unavailable"


class RequestTimeout(Problem):
    """The client stopped sending its request before it was complete."""

    status = 408
    slug = "request-timeout"
    title_zh = "请求发送超时"
    title_en = "Request timeout"


class TooManyRequests(Problem):
    """A rate limit was reached; ``Retry-After`` says when to try again."""

    status = 429
    slug = "too-many-requests"
    title_zh = "请求过于频繁"
    title_en = "Too many requests"


class HeadersTooLarge(Problem):
    status = 431
    slug = "request-headers-too-large"
    title_zh = "请求头过大"
    title_en = "Request header fields too large"


class BadGateway(Problem):
    """An upstream service answered with something that is not a valid HTTP response."""

    status = 502
    slug = "bad-gateway"
    title_zh = "上游服务响应异常"
    title_en = "Bad gateway"


class GatewayTimeout(Problem):
    """An upstream service did not answer in time."""

    status = 504
    slug = "gateway-timeout"
    title_zh = "上游服务响应超时"
    title_en = "Gateway timeout"


def preferred_language(accept_language: str | None) -> str:
    """``zh`` unless the client prefers English (RFC 9110 Accept-Language with q-values)."""
    if not accept_language:
        return "zh"
    ranked: list[tuple[float, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((quality - position * 1e-6, tag.strip().lower()))
    for _quality, tag in sorted(ranked, reverse=True):
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    language = preferred_language(request.headers.get("accept-language"))
    headers = {"Content-Language": "zh-CN" if language == "zh" else "en", **problem.headers}
    return JSONResponse(
        problem.body(language, request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


_STATUS_PROBLEMS: dict[int, type[Problem]] = {
    400: MalformedRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    408: RequestTimeout,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
    431: HeadersTooLarge,
    502: BadGateway,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


class MethodNotAllowed(Problem):
    status = 405
    slug = "method-not-allowed"
    title_zh = "不支持此请求方法"
    title_en = "Method not allowed"


_STATUS_PROBLEMS[405] = MethodNotAllowed


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors: list[FieldError] = []
    malformed = False
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            malformed = True
        errors.append(
            FieldError(
                field=".".join(location) or "body",
                message=str(error.get("msg", "invalid value")),
                code=str(error.get("type", "")) or None,
            )
        )
    if malformed:
        return MalformedRequest("The request body is not valid JSON; check quotes, commas and brackets.", errors=errors)
    return InvalidInput("Some fields are missing or have the wrong type; see errors[].", errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error a request can raise to problem+json."""

    async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(request, _validation_problem(exc))

    async def handle_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem_class = _STATUS_PROBLEMS.get(exc.status_code, Problem)
        problem = problem_class(str(exc.detail) if exc.detail else None, headers=dict(exc.headers or {}))
        if problem_class is Problem:
            problem.status = exc.status_code  # type: ignore[misc]
        return problem_response(request, problem)

    async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem("An unexpected error occurred; it has been logged with the request's trace id.")
        problem.status = 500  # type: ignore[misc]
        return problem_response(request, problem)

    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(Exception, handle_unexpected)
