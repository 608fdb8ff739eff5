"""The portal's pages: sign-in through identity, 我的应用, the catalog and an app's data use, installing at a school,
teachers' requests and the school's decisions. Pages call the same service functions as the API, as the same
``Caller`` (built from the access token identity issued at sign-in), so the API's checks apply unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from sqlmodel import Session, col, select

from appstore.catalog import service as catalog
from appstore.catalog.router import require_browser
from appstore.catalog.schemas import CatalogDetail, CatalogItem
from appstore.config import AppStoreSettings
from appstore.deps import SCHOOL_ADMIN_ROLES, Caller, school
from appstore.installations import service as installations
from appstore.installations.router import REQUESTER_ROLES, SCOPE_INSTALL, SCOPE_READ
from appstore.launch import service as launches
from appstore.launch.schemas import LaunchCreate
from appstore.roster.models import RosterClass, RosterOrganisation
from appstore.web import oidc, sessions
from appstore.web.sessions import portal_path
from contracts.manifest import CATEGORY_LABELS, GRADE_BAND_LABELS, PRICING_UNIT_LABELS, SUBJECT_LABELS
from kit import audit
from kit.db import SessionDep
from kit.errors import FieldError, Forbidden, InvalidInput, Problem

# The pages are in the service's OpenAPI document so the gateway's route catalogue can be checked against them.
router = APIRouter(prefix="/portal", tags=["portal pages"], default_response_class=HTMLResponse)

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_FIELDS = 40
environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; form-action 'self' http: https:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _settings(request: Request) -> AppStoreSettings:
    settings: AppStoreSettings = request.app.state.settings
    return settings


def _base(request: Request) -> str:
    return portal_path(_settings(request)).rstrip("/")


def _chinese(message: str | None) -> str:
    """The Chinese half of a "中文；English" message (the whole message when it has no Chinese half)."""
    return (message or "").split("；", 1)[0] or "操作未能完成"


def _render(
    request: Request, template: str, caller: Caller | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    body = environment.get_template(template).render(
        base=_base(request), caller=caller, csrf_field=sessions.CSRF_FIELD, csrf_token=sessions.csrf_token(request),
        admin_schools=_admin_schools(caller) if caller else [], **context,
    )  # fmt: skip
    return HTMLResponse(body, status_code=status_code, headers=_PAGE_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=_PAGE_HEADERS)


def _problem_page(request: Request, session: Session, caller: Caller | None, error: Problem) -> HTMLResponse:
    """A refused operation as a page: nothing it flushed is kept, the reason is shown in Chinese."""
    session.rollback()
    messages = [_chinese(error.detail)] + [_chinese(item.message) for item in getattr(error, "errors", []) or []]
    return _render(request, "error.html", caller, status_code=error.status, title=error.title_zh, messages=messages)


def _admin_schools(caller: Caller) -> list[dict[str, str]]:
    """Schools (by role claim) where the caller administers apps, when the token allows installing."""
    if not caller.principal.has_scope(SCOPE_INSTALL):
        return []
    return [
        {"id": claim.org_id, "role": claim.role}
        for claim in caller.principal.roles_named("school_admin")
        if claim.org_id
    ]


def _teacher_schools(caller: Caller) -> list[str]:
    return [claim.org_id for claim in caller.principal.roles_named(*REQUESTER_ROLES) if claim.org_id]


async def _caller(request: Request, session: Session) -> Caller | RedirectResponse:
    caller = await sessions.signed_in(request, session)
    if caller is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return _redirect(f"{_base(request)}/login?next={quote(target, safe='')}")
    return caller


async def _form(request: Request) -> dict[str, list[str]] | None:
    """The posted form's fields once its CSRF token checks out; None when it does not."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    await form.close()
    if not sessions.csrf_ok(request, (fields.get(sessions.CSRF_FIELD) or [""])[0]):
        return None
    return fields


def _csrf_refused(request: Request, caller: Caller | None) -> HTMLResponse:
    return _render(
        request, "error.html", caller, status_code=403, title="页面已过期",
        messages=["表单已失效，请返回上一页刷新后重试。"],
    )  # fmt: skip


def _one(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0].strip()


def _safe_next(base: str, value: str | None) -> str:
    if value and (value == base or value.startswith(base + "/")) and not value.startswith("//") and "\\" not in value:
        return value
    return base or "/"


# ------------------------------------------------------------------------------------------ sign-in


@router.get("/login")
async def sign_in(request: Request, next: str | None = None) -> Response:
    """Send the browser to identity's sign-in (authorization code with PKCE)."""
    response = _redirect("")
    pending = sessions.start_sign_in(request, response, _safe_next(_base(request), next))
    try:
        response.headers["location"] = await oidc.authorization_url(request, pending)
    except Problem as error:
        return _render(request, "error.html", None, status_code=error.status, title=error.title_zh,
                       messages=[_chinese(error.detail)])  # fmt: skip
    return response


@router.get("/callback")
async def sign_in_callback(
    request: Request, session: SessionDep, code: str | None = None, state: str | None = None,
    error: str | None = None,
) -> Response:  # fmt: skip
    """Identity's answer: the code is exchanged, the ID token checked, and a portal session started."""
    pending = sessions.pending_sign_in(request, state or "")
    if pending is None or error or not code:
        page = _render(request, "error.html", None, status_code=400, title="登录未完成",
                       messages=["登录请求已失效或被取消，请重新登录。"], sign_in=True)  # fmt: skip
        sessions.end_sign_in(request, page)
        return page
    try:
        tokens = await oidc.exchange(request, code, pending)
    except (oidc.SignInFailed, Problem):
        page = _render(request, "error.html", None, status_code=400, title="登录未完成",
                       messages=["统一身份认证的应答无效，请重新登录。"], sign_in=True)  # fmt: skip
        sessions.end_sign_in(request, page)
        return page
    response = _redirect(pending.next_path)
    sessions.create_session(
        request, response, session, person_id=tokens.subject, access_token=tokens.access_token,
        expires_at=sessions.session_lifetime(_settings(request), tokens.expires_at),
    )  # fmt: skip
    sessions.end_sign_in(request, response)
    audit.append(
        session, action="portal.signed_in", actor_id=tokens.subject, actor_client=_settings(request).portal_client_id,
        source_ip=request.client.host if request.client else None, target_type="person", target_id=tokens.subject,
        request_id=getattr(request.state, "request_id", None),
    )  # fmt: skip
    return response


@router.post("/logout")
async def sign_out(request: Request, session: SessionDep) -> Response:
    fields = await _form(request)
    if fields is None:
        return _csrf_refused(request, None)
    response = _render(request, "signed_out.html", None)
    sessions.end_session(request, response, session)
    return response


# ------------------------------------------------------------------------------------------ my apps, launch


@router.get("")
async def my_apps(request: Request, session: SessionDep) -> Response:
    """我的应用: the apps installed for the caller at their schools, each with an 打开 button."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    try:
        caller.require_scope(SCOPE_READ)
        apps = installations.apps_for(session, caller)
        requests = [installations.describe_request(session, row) for row in installations.my_requests(session, caller)]
    except Problem as error:
        return _problem_page(request, session, caller, error)
    names = _school_names(session, [app.school_id for app in apps])
    return _render(
        request, "my_apps.html", caller, apps=apps, school_names=names, requests=requests,
        category_labels=CATEGORY_LABELS, classes=_classes_taught(session, caller, {app.school_id for app in apps}),
    )  # fmt: skip


def _classes_taught(session: Session, caller: Caller, school_ids: set[str]) -> dict[str, list[RosterClass]]:
    """The caller's classes at each school, to open an app from one of them (the LTI context)."""
    if not school_ids:
        return {}
    rows = session.exec(
        select(RosterClass)
        .where(col(RosterClass.school_id).in_(sorted(school_ids)), RosterClass.active == True)  # noqa: E712
        .order_by(col(RosterClass.grade), col(RosterClass.name))
    ).all()
    taught: dict[str, list[RosterClass]] = {}
    for row in rows:
        if caller.person_id in json.loads(row.teacher_ids or "[]") or row.head_teacher_id == caller.person_id:
            taught.setdefault(row.school_id, []).append(row)
    return taught


def _school_names(session: Session, school_ids: list[str]) -> dict[str, str]:
    names = {}
    for school_id in set(school_ids):
        row = session.get(RosterOrganisation, school_id)
        names[school_id] = row.name if row is not None else school_id
    return names


@router.post("/launch")
async def launch(request: Request, session: SessionDep) -> Response:
    """Open an installed app: the launch is recorded and the browser sent to the app's login initiation URL."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    fields = await _form(request)
    if fields is None:
        return _csrf_refused(request, caller)
    try:
        data = LaunchCreate(installation_id=_one(fields, "installation_id"), class_id=_one(fields, "class_id") or None)
    except ValidationError:
        return _render(request, "error.html", caller, status_code=422, title="无法打开应用",
                       messages=["请从“我的应用”中选择要打开的应用。"])  # fmt: skip
    try:
        caller.require_scope(SCOPE_READ)
        started = launches.start_launch(session, _settings(request), caller, data)
    except Problem as error:
        return _problem_page(request, session, caller, error)
    return RedirectResponse(started.url, status_code=303, headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------------------------------ catalog


def _filters(request: Request) -> dict[str, str]:
    params = request.query_params
    return {
        name: params.get(name, "").strip()[:200] for name in ("q", "category", "grade_band", "subject", "pricing_unit")
    }


@router.get("/catalog")
async def catalog_page(request: Request, session: SessionDep) -> Response:
    """Search the catalog by keywords and filters; each result says what data the app gets."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    chosen = _filters(request)
    option_sets: dict[str, dict[str, str]] = {
        "category": CATEGORY_LABELS, "grade_band": GRADE_BAND_LABELS, "subject": SUBJECT_LABELS,
        "pricing_unit": PRICING_UNIT_LABELS,
    }  # fmt: skip
    # An unknown filter value (an old link, a typed URL) is dropped rather than refused.
    for name, options in option_sets.items():
        if chosen[name] not in options:
            chosen[name] = ""
    try:
        require_browser(caller)
        query = catalog.CatalogQuery(
            q=chosen["q"] or None, category=chosen["category"] or None, grade_band=chosen["grade_band"] or None,
            subject=chosen["subject"] or None, pricing_unit=chosen["pricing_unit"] or None,
            min_rating=None, sort=None, limit=_settings(request).catalog_max_limit, offset=0,
        )  # fmt: skip
        rows, total = catalog.search(session, query)
    except Problem as error:
        return _problem_page(request, session, caller, error)
    items = [CatalogItem.model_validate(catalog.item(entry)) for entry, _ in rows]
    return _render(request, "catalog.html", caller, items=items, total=total, chosen=chosen, option_sets=option_sets)


def _detail(session: Session, caller: Caller, app_id: str) -> CatalogDetail:
    require_browser(caller)
    entry = catalog.listed_entry(session, app_id)
    return CatalogDetail.model_validate(
        {**catalog.item(entry), **json.loads(entry.detail), "recent_comments": [], "my_rating": None}
    )


@router.get("/catalog/{app_id}")
async def catalog_detail(request: Request, app_id: str, session: SessionDep) -> Response:
    """An app's page: what data it gets and why, guardian consent, retention, price; install or request it."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    try:
        detail = _detail(session, caller, app_id[:64])
    except Problem as error:
        return _problem_page(request, session, caller, error)
    teacher_schools = _teacher_schools(caller) if caller.principal.has_scope(SCOPE_READ) else []
    return _render(
        request, "detail.html", caller, app=detail, teacher_schools=teacher_schools,
        school_names=_school_names(session, teacher_schools + [s["id"] for s in _admin_schools(caller)]),
        message=request.query_params.get("done", "")[:40],
    )  # fmt: skip


def _admin_school(session: Session, caller: Caller, school_id: str) -> RosterOrganisation:
    if caller.is_app:
        raise Forbidden("应用不能管理应用的安装；Apps cannot manage app installations.")
    caller.require_scope(SCOPE_INSTALL)
    organisation = school(session, school_id)
    caller.require(roles=SCHOOL_ADMIN_ROLES, org_path=organisation.path, scope=SCOPE_INSTALL)
    return organisation


async def _post(request: Request, session: Session, action: Callable[[Caller, dict[str, list[str]]], str]) -> Response:
    """A form post: signed in, CSRF checked, the action run; a refusal is shown as a page, success redirects."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    fields = await _form(request)
    if fields is None:
        return _csrf_refused(request, caller)
    try:
        target = action(caller, fields)
    except Problem as error:
        return _problem_page(request, session, caller, error)
    except ValidationError as error:
        session.rollback()
        return _render(request, "error.html", caller, status_code=422, title="输入内容有误",
                       messages=[str(item["msg"]) for item in error.errors()])  # fmt: skip
    return _redirect(target)


@router.post("/catalog/{app_id}/install")
async def install(request: Request, app_id: str, session: SessionDep) -> Response:
    """A school administrator installs the app with the scopes and grades chosen on the page."""

    def action(caller: Caller, fields: dict[str, list[str]]) -> str:
        organisation = _admin_school(session, caller, _one(fields, "school_id"))
        app = installations.get_app(session, app_id[:64], field="app_id")
        installations.install(
            session, request.app.state.identity_client, caller, school=organisation, app=app,
            scopes=fields.get("scopes") or [], grades=fields.get("grades") or [], class_ids=[],
        )  # fmt: skip
        return f"{_base(request)}/school/{organisation.id}/apps"

    return await _post(request, session, action)


@router.post("/catalog/{app_id}/request")
async def request_app(request: Request, app_id: str, session: SessionDep) -> Response:
    """A teacher asks the school's administrators to install the app, saying why."""

    def action(caller: Caller, fields: dict[str, list[str]]) -> str:
        caller.require_scope(SCOPE_READ)
        organisation = school(session, _one(fields, "school_id"))
        if organisation.id not in _teacher_schools(caller):
            raise Forbidden("只有本校教师可以申请应用；Only teachers of this school can request apps for it.")
        reason = _one(fields, "reason")
        if len(reason) < 2 or len(reason) > 500:
            raise InvalidInput(
                "请填写申请理由（2–500 字）；Say why you need the app (2–500 characters).",
                errors=[FieldError(field="reason", message="申请理由须为 2–500 字；Give 2–500 characters.")],
            )
        app = installations.get_app(session, app_id[:64], field="app_id")
        installations.request_app(session, caller, school_id=organisation.id, app=app, reason=reason)
        return f"{_base(request)}/catalog/{app.id}?done=requested"

    return await _post(request, session, action)


# ------------------------------------------------------------------------------------------ school admin


@router.get("/school/{school_id}/apps")
async def school_apps(request: Request, school_id: str, session: SessionDep) -> Response:
    """The school's installed apps and its teachers' pending requests, for its administrators."""
    caller = await _caller(request, session)
    if isinstance(caller, RedirectResponse):
        return caller
    try:
        organisation = _admin_school(session, caller, school_id[:64])
        installed = installations.list_for_school(session, organisation.id)
        pending = [
            installations.describe_request(session, row)
            for row in installations.list_requests(session, school_id=organisation.id, status="pending")
        ]
    except Problem as error:
        return _problem_page(request, session, caller, error)
    return _render(request, "school_apps.html", caller, school=organisation, installed=installed, pending=pending)


@router.post("/school/{school_id}/apps/{installation_id}/uninstall")
async def uninstall(request: Request, school_id: str, installation_id: str, session: SessionDep) -> Response:
    def action(caller: Caller, fields: dict[str, list[str]]) -> str:
        organisation = _admin_school(session, caller, school_id[:64])
        installations.uninstall(
            session, caller, installations.get_installation(session, organisation.id, installation_id[:64])
        )
        return f"{_base(request)}/school/{organisation.id}/apps"

    return await _post(request, session, action)


@router.post("/school/{school_id}/requests/{request_id}/approve")
async def approve(request: Request, school_id: str, request_id: str, session: SessionDep) -> Response:
    def action(caller: Caller, fields: dict[str, list[str]]) -> str:
        organisation = _admin_school(session, caller, school_id[:64])
        row = installations.get_request(session, organisation.id, request_id[:64])
        installations.approve_request(
            session, request.app.state.identity_client, caller, row, school=organisation, scopes=None, grades=[],
            class_ids=[], note=_one(fields, "note")[:500] or None,
        )  # fmt: skip
        return f"{_base(request)}/school/{organisation.id}/apps"

    return await _post(request, session, action)


@router.post("/school/{school_id}/requests/{request_id}/decline")
async def decline(request: Request, school_id: str, request_id: str, session: SessionDep) -> Response:
    def action(caller: Caller, fields: dict[str, list[str]]) -> str:
        organisation = _admin_school(session, caller, school_id[:64])
        row = installations.get_request(session, organisation.id, request_id[:64])
        note = _one(fields, "note")
        if len(note) < 2 or len(note) > 500:
            raise InvalidInput(
                "请填写拒绝理由（2–500 字），教师会看到；Say why (2–500 characters); the teacher sees it.",
                errors=[FieldError(field="note", message="拒绝理由须为 2–500 字；Give 2–500 characters.")],
            )
        installations.decline_request(session, caller, row, note=note)
        return f"{_base(request)}/school/{organisation.id}/apps"

    return await _post(request, session, action)


@router.get("/static/portal.css")
def stylesheet() -> Response:
    return Response((TEMPLATES / "portal.css").read_text(), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})  # fmt: skip
