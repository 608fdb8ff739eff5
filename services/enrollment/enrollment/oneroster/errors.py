"""OneRoster's own error payload (imsx_StatusInfo), and the route class that answers every failure with it.

OneRoster 1.2 Rostering REST binding, section 3.3 and Appendix B: a failed request is answered with an
``imsx_StatusInfo`` object (``imsx_codeMajor`` failure, ``imsx_severity`` error, ``imsx_description`` and
``imsx_CodeMinor``), never with the data payload. A standard OneRoster client parses that object, not RFC 9457
problem+json, so the routes under ``/ims/oneroster/`` translate the kit's problems into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Literal

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.errors import Problem

logger = logging.getLogger("enrollment.oneroster")

#: The codeMinor vocabulary of OneRoster 1.2 (imsx_CodeMinorFieldValue).
CodeMinor = Literal[
    "fullsuccess",
    "invalid_filter_field",
    "invalid_selection_field",
    "invalid_sort_field",
    "invaliddata",
    "unauthorisedrequest",
    "forbidden",
    "unknownobject",
    "server_busy",
    "internal_server_error",
]

_CODE_MINOR_FIELD_NAME = "TargetEndSystem"


def status_info(code_minor: CodeMinor, description: str) -> dict[str, Any]:
    """The imsx_StatusInfo body of a failed request."""
    return {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {"imsx_codeMinorFieldName": _CODE_MINOR_FIELD_NAME, "imsx_codeMinorFieldValue": code_minor}
            ]
        },
    }


class OneRosterError(Exception):
    """A request the OneRoster binding refuses; rendered as imsx_StatusInfo."""

    status: ClassVar[int] = 400
    code_minor: ClassVar[CodeMinor] = "invaliddata"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidFilterField(OneRosterError):
    code_minor = "invalid_filter_field"


class InvalidSelectionField(OneRosterError):
    code_minor = "invalid_selection_field"


class InvalidSortField(OneRosterError):
    code_minor = "invalid_sort_field"


class InvalidData(OneRosterError):
    code_minor = "invaliddata"


class UnknownObject(OneRosterError):
    status = 404
    code_minor = "unknownobject"

    def __init__(self, collection: str, sourced_id: str) -> None:
        shown = sourced_id[:64]
        super().__init__(
            f"{collection} 中没有 sourcedId 为 {shown} 的对象；No {collection} object has the sourcedId {shown!r}."
        )


class ForbiddenSchool(OneRosterError):
    status = 403
    code_minor = "forbidden"

    def __init__(self, school_id: str) -> None:
        shown = school_id[:64]
        super().__init__(f"无权读取学校 {shown} 的名单；The caller may not read the rosters of school {shown!r}.")


_STATUS_CODE_MINOR: dict[int, CodeMinor] = {
    400: "invaliddata",
    401: "unauthorisedrequest",
    403: "forbidden",
    404: "unknownobject",
    422: "invaliddata",
    429: "server_busy",
}


def _response(status: int, code_minor: CodeMinor, description: str, headers: dict[str, str] | None) -> JSONResponse:
    # A validation problem is a 400 in OneRoster's vocabulary (there is no 422 in the binding).
    return JSONResponse(status_info(code_minor, description), status_code=400 if status == 422 else status,
                        headers=headers)  # fmt: skip


def problem_as_status_info(problem: Problem) -> JSONResponse:
    """A kit problem (401 from the token check, 403 from a scope check, ...) in OneRoster's format."""
    status = problem.status
    code_minor = _STATUS_CODE_MINOR.get(status, "internal_server_error" if status >= 500 else "invaliddata")
    description = problem.detail or f"{problem.title_zh}；{problem.title_en}"
    return _response(status, code_minor, description, problem.headers or None)


def _validation_description(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "path"))
        parts.append(f"{location}: {item.get('msg', 'invalid value')}")
    return "请求参数有误；Invalid request parameters: " + "; ".join(parts)


class OneRosterRoute(APIRoute):
    """A route whose every failure, from authentication to an unknown sourcedId, is an imsx_StatusInfo body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except OneRosterError as error:
                return _response(error.status, error.code_minor, error.description, None)
            except Problem as problem:
                return problem_as_status_info(problem)
            except RequestValidationError as error:
                return _response(400, "invaliddata", _validation_description(error), None)
            except StarletteHTTPException as error:
                code_minor = _STATUS_CODE_MINOR.get(error.status_code, "invaliddata")
                return _response(error.status_code, code_minor, str(error.detail), dict(error.headers or {}))

        return handle
