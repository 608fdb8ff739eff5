"""The app as an LTI 1.3 tool, built on PyLTI1p3 (the library does the protocol; this module adapts it to FastAPI).

* ``/lti/login``: OIDC login initiation (third-party initiated login): the platform sends ``iss``,
  ``login_hint``, ``target_link_uri`` (and ``lti_message_hint``, ``client_id``, ``lti_deployment_id``);
  the tool answers with a redirect to the platform's authorization endpoint carrying state and nonce.
* ``/lti/launch``: the platform posts the ``id_token``; PyLTI1p3 checks state, signature (platform JWKS),
  issuer, audience, nonce, deployment and message type. A nonce is accepted once: a replayed token fails.
* ``/lti/launches/{id}``: the launch's class (context) and its roster through Names and Role Provisioning.
* ``/lti/jwks``: the tool's public key, for the client assertions of LTI Advantage service calls.

Launch data live server-side, keyed by state, nonce and launch id, so no third-party cookie is needed beyond
the short state cookie the library sets (``SameSite=None; Secure`` behind https).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pylti1p3.cookie import CookieService
from pylti1p3.deployment import Deployment
from pylti1p3.exception import LtiException, LtiServiceException, OIDCException
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.registration import Registration
from pylti1p3.request import Request as LtiRequestBase
from pylti1p3.session import SessionService
from pylti1p3.tool_config import ToolConfAbstract

from vendor_app import pages
from vendor_app.context import AppContext, context_of
from vendor_app.stores import ExpiringStore

router = APIRouter(prefix="/lti", tags=["LTI 1.3 tool"])

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"


class LtiRequest(LtiRequestBase):
    """One HTTP request as PyLTI1p3 sees it: its parameters (query or form) and cookies."""

    def __init__(self, params: Mapping[str, str], cookies: Mapping[str, str], *, secure: bool) -> None:
        self._params = dict(params)
        self._cookies = dict(cookies)
        self._secure = secure
        self._session: dict[str, Any] = {}

    @property
    def session(self) -> dict[str, Any]:
        return self._session  # unused: launch data live in ServerSideLaunchStorage

    def is_secure(self) -> bool:
        return self._secure

    def get_param(self, key: str) -> str:
        return self._params.get(key) or ""

    def get_cookie(self, key: str) -> str | None:
        return self._cookies.get(key)


class LtiCookies(CookieService):
    """Cookies the library sets (the state cookie), applied to the response afterwards."""

    def __init__(self, request: LtiRequest) -> None:
        self._request = request
        self.pending: dict[str, tuple[str, int | None]] = {}

    def _key(self, name: str) -> str:
        return f"{self._cookie_prefix}-{name}"

    def get_cookie(self, name: str) -> str | None:
        return self._request.get_cookie(self._key(name))

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self.pending[self._key(name)] = (str(value), exp)

    def apply(self, response: Response) -> None:
        secure = self._request.is_secure()
        for key, (value, max_age) in self.pending.items():
            # A launch is a cross-site form post from the platform: behind https the cookie must be SameSite=None.
            response.set_cookie(
                key,
                value,
                max_age=max_age,
                httponly=True,
                secure=secure,
                samesite="none" if secure else "lax",
                path="/",
            )


class ServerSideLaunchStorage(LaunchDataStorage[Any]):
    """PyLTI1p3's launch data in the app's memory; keys are random (state, nonce, launch id), so no session."""

    def __init__(self, store: ExpiringStore) -> None:
        super().__init__()
        self._store = store

    def get_session_cookie_name(self) -> None:
        return None

    def can_set_keys_expiration(self) -> bool:
        return True

    def get_value(self, key: str) -> Any:
        return self._store.get(self._prepare_key(key))

    def set_value(self, key: str, value: Any, exp: int | None = None) -> None:
        self._store.set(self._prepare_key(key), value, exp)

    def check_value(self, key: str) -> bool:
        return self._prepare_key(key) in self._store

    def remove_value(self, key: str) -> None:
        self._store.pop(self._prepare_key(key))


class LtiRedirect(Redirect[Response]):
    def __init__(self, location: str, cookies: LtiCookies) -> None:
        self._location = location
        self._cookies = cookies

    def do_redirect(self) -> Response:
        response = RedirectResponse(self._location, status_code=302)
        self._cookies.apply(response)
        return response

    def do_js_redirect(self) -> Response:
        response = HTMLResponse(f"<script>window.location={json.dumps(self._location)};</script>")
        self._cookies.apply(response)
        return response

    def set_redirect_url(self, location: str) -> None:
        self._location = location

    def get_redirect_url(self) -> str:
        return self._location


class ToolConfig(ToolConfAbstract[LtiRequest]):
    """One platform (the city's), one client id; deployments are the platform's installations."""

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self._context = context

    def check_iss_has_one_client(self, iss: str) -> bool:
        return True

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration:
        settings = self._context.settings
        if iss.rstrip("/") != settings.lti_platform_issuer or not settings.lti_client_id:
            return None  # type: ignore[return-value]  # the library treats None as "no registration"
        key = self._context.tool_key
        return (
            Registration()
            .set_issuer(iss)
            .set_client_id(settings.lti_client_id)
            .set_auth_login_url(settings.lti_platform_auth_login_url)
            .set_auth_token_url(settings.lti_platform_token_url)
            .set_key_set_url(settings.lti_platform_jwks_url)
            .set_tool_private_key(key.private_pem)
            .set_tool_public_key(key.public_pem)
        )

    def find_registration_by_params(self, iss: str, client_id: str, *args: Any, **kwargs: Any) -> Registration:
        registration = self.find_registration_by_issuer(iss)
        if registration is None or (client_id and client_id != registration.get_client_id()):
            return None  # type: ignore[return-value]
        return registration

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        if not self._accepts(deployment_id):
            return None
        return Deployment().set_deployment_id(deployment_id)

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Deployment | None:
        return self.find_deployment(iss, deployment_id)

    def _accepts(self, deployment_id: str) -> bool:
        configured = self._context.settings.lti_deployment_ids
        if not configured:
            return True  # the platform signs launches only for schools that installed the app
        with self._context.deployments_lock:
            learned = deployment_id in self._context.deployments
        return deployment_id in configured or learned


class ToolLogin(OIDCLogin[LtiRequest, ToolConfig, SessionService, LtiCookies, Response]):
    def get_redirect(self, url: str) -> Redirect[Response]:
        return LtiRedirect(url, self._cookie_service)


class ToolLaunch(MessageLaunch[LtiRequest, ToolConfig, SessionService, LtiCookies]):
    def _get_request_param(self, key: str) -> str:
        return self._request.get_param(key)


def _parts(context: AppContext, request: LtiRequest) -> dict[str, Any]:
    return {
        "tool_config": ToolConfig(context),
        "session_service": SessionService(request),
        "cookie_service": LtiCookies(request),
        "launch_data_storage": ServerSideLaunchStorage(context.lti_storage),
    }


def _requests_session(context: AppContext) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "edu-sample-vendor-app"
    return session


async def _params(request: Request) -> dict[str, str]:
    params = {key: value for key, value in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _is_secure(context: AppContext) -> bool:
    return context.settings.secure_cookies or context.settings.base_url.startswith("https://")


@router.api_route("/login", methods=["GET", "POST"], summary="LTI 1.3 OIDC login initiation")
async def login(request: Request) -> Response:
    """Answer the platform's login initiation with the authorization redirect (state + nonce)."""
    context = context_of(request)
    lti_request = LtiRequest(await _params(request), request.cookies, secure=_is_secure(context))
    parts = _parts(context, lti_request)
    login = ToolLogin(
        lti_request, parts["tool_config"], parts["session_service"], parts["cookie_service"],
        parts["launch_data_storage"],
    )  # fmt: skip
    target = lti_request.get_param("target_link_uri") or context.settings.lti_launch_url
    if not target.startswith(context.settings.base_url):
        return HTMLResponse(pages.error_page("无法打开应用", "target_link_uri 不属于本应用。"), 400)
    try:
        response: Response = login.redirect(context.settings.lti_launch_url)
    except (OIDCException, LtiException) as error:
        return HTMLResponse(pages.error_page("无法打开应用", f"LTI 登录请求无效：{error}"), 400)
    return response


@router.post("/launch", summary="LTI 1.3 resource-link launch (the platform posts the id_token here)")
async def launch(request: Request) -> Response:
    """Validate the launch with PyLTI1p3, remember it server-side, and show it."""
    context = context_of(request)
    lti_request = LtiRequest(await _params(request), request.cookies, secure=_is_secure(context))

    def validate() -> tuple[str, dict[str, Any]]:
        parts = _parts(context, lti_request)
        message = ToolLaunch(lti_request, requests_session=_requests_session(context), **parts)
        data = dict(message.get_launch_data())
        # PyLTI1p3 checks that the nonce was issued, not that it is unused: consume it, so a replay fails.
        parts["launch_data_storage"].remove_value(f"lti1p3-nonce-{data['nonce']}")
        return message.get_launch_id(), data

    try:
        launch_id, data = await run_in_threadpool(validate)
    except (LtiException, OIDCException, KeyError, requests.RequestException) as error:
        return HTMLResponse(pages.error_page("无法打开应用", f"LTI 启动校验未通过：{error}"), 400)
    custom = data.get(CLAIM + "custom") or {}
    platform_launch_id = custom.get("launch_id") if isinstance(custom, dict) else None
    deployment_id = str(data.get(CLAIM + "deployment_id") or "")
    school_id = (custom.get("school_id") if isinstance(custom, dict) else None) or _school_of(context, deployment_id)
    context.usage.start(platform_launch_id or launch_id, school_id, platform_launch=bool(platform_launch_id))
    context.lti_storage.set(f"tally-of-{launch_id}", platform_launch_id or launch_id)
    return RedirectResponse(f"/lti/launches/{launch_id}", status_code=303)


def _school_of(context: AppContext, deployment_id: str) -> str:
    """The school of a deployment, as announced by the installation webhook (else the deployment id)."""
    school = context.lti_storage.get(f"deployment-school-{deployment_id}")
    return str(school) if school else deployment_id


@router.get("/launches/{launch_id}", response_class=HTMLResponse, summary="A launch: class context and roster")
async def launch_page(request: Request, launch_id: str) -> HTMLResponse:
    """The class the app was opened from, and its members read through Names and Role Provisioning."""
    context = context_of(request)
    lti_request = LtiRequest({}, request.cookies, secure=_is_secure(context))

    def load() -> tuple[dict[str, Any], list[dict[str, Any]] | None, str | None]:
        parts = _parts(context, lti_request)
        message = ToolLaunch.from_cache(
            launch_id, lti_request, parts["tool_config"], parts["session_service"], parts["cookie_service"],
            parts["launch_data_storage"], _requests_session(context),
        )  # fmt: skip
        data = dict(message.get_launch_data())
        if not message.has_nrps():
            return data, None, "平台未在本次启动中提供班级名单服务（未授权 roster.read 或不是从班级打开）。"
        try:
            return data, [dict(member) for member in message.get_nrps().get_members()], None
        except (LtiServiceException, LtiException, requests.RequestException) as error:
            return data, None, f"暂时无法读取班级名单：{error}"

    try:
        data, members, roster_problem = await run_in_threadpool(load)
    except LtiException:
        return HTMLResponse(pages.error_page("启动已失效", "这次启动已过期，请回到平台重新打开应用。"), 404)
    return HTMLResponse(_render_launch(context, launch_id, data, members, roster_problem))


def _render_launch(
    context: AppContext,
    launch_id: str,
    data: dict[str, Any],
    members: list[dict[str, Any]] | None,
    roster_problem: str | None,
) -> str:
    course = data.get(CLAIM + "context") or {}
    link = data.get(CLAIM + "resource_link") or {}
    roles = "、".join(sorted({pages.role_label(role) for role in data.get(CLAIM + "roles") or []})) or "—"
    tally_key = str(context.lti_storage.get(f"tally-of-{launch_id}") or launch_id)
    tally = context.usage.get(tally_key)
    sections = [
        pages.section(
            "本次启动",
            pages.definition_list(
                [
                    ("班级（LTI context）", course.get("title") or course.get("label")),
                    ("班级编号", course.get("id")),
                    ("资源链接", link.get("title") or link.get("id")),
                    ("部署编号（= 学校的安装）", data.get(CLAIM + "deployment_id")),
                    ("您的匿名用户标识（sub）", data.get("sub")),
                    ("您的角色", roles),
                    ("姓名", data.get("name") or "（平台未提供姓名）"),
                ]
            ),
        )
    ]
    if members is None:
        sections.append(pages.section("班级名单", pages.paragraph(roster_problem or "", muted=True)))
    else:
        rows = [
            (
                member.get("user_id"),
                "、".join(pages.role_label(role) for role in member.get("roles") or []),
                member.get("name") or "（未提供）",
                {"Active": "在籍", "Inactive": "停用", "Deleted": "已删除"}.get(str(member.get("status")), "在籍"),
            )
            for member in members
        ]
        sections.append(
            pages.section(
                f"班级名单（共 {len(rows)} 人，来自 LTI 名单服务 NRPS）",
                pages.table(["匿名标识", "角色", "姓名", "状态"], rows),
                pages.paragraph("成员以本应用专属的匿名标识区分；只有学校授权了姓名时才显示姓名。", muted=True),
            )
        )
    sections.append(
        pages.section(
            "本次使用的计量",
            pages.paragraph(f"已批改作业：{tally.units if tally else 0} 份"),
            pages.form_button("/usage/mark", "批改一份作业（计量 +1）", {"launch": tally_key, "back": launch_id}),
        )
    )
    return pages.page("示例应用 · 课后作业", *sections)


@router.get("/jwks", summary="The tool's public keys (JWKS)")
async def jwks(request: Request) -> JSONResponse:
    """The key the platform checks the tool's LTI Advantage client assertions with."""
    return JSONResponse(context_of(request).tool_key.jwks, headers={"Cache-Control": "public, max-age=3600"})
