"""The sign-in pages: login, second factor, forced and voluntary password change, TOTP set-up, account, logout.

A login moves one browser session through its steps: password → (second factor, when enrolled) →
(password change, when required) → (second-factor set-up, when required and not enrolled) →
complete, then on to ``next``. Each step's page sends a browser that is elsewhere in the flow to the
step it is at. Refusals are pages, not errors, so the failures they record are committed.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from identity.accounts import service as accounts
from identity.accounts import sessions as store
from identity.accounts import totp
from identity.accounts.models import BrowserSession
from identity.accounts.sessions import utcnow
from identity.accounts.throttle import IpThrottle
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import CipherDep, SettingsDep, origin_of
from identity.organisations import service as organisations
from identity.people import service as people
from identity.people.models import Person
from identity.web import sessions
from identity.web.csrf import verify_csrf
from identity.web.i18n import PageError, language_of, local_time, translate
from identity.web.sessions import safe_next, with_next
from identity.web.templating import STATIC, redirect, render
from kit.crypto import FieldCipher
from kit.db import SessionDep

router = APIRouter(include_in_schema=False)

FormDep = Annotated[dict[str, str], Depends(verify_csrf)]
MAX_USERNAME_INPUT = 64
# Destinations that are pages of this router: reached with a plain redirect. Anything else (the
# OAuth authorize endpoint, which may redirect on to a client's site) is reached through
# /login/continue, so the redirect chain of the posted form stays within form-action 'self'.
OWN_PAGES = ("/account",)
NOTICES = {"password_changed": "password.changed", "logged_out": "login.logged_out", "expired": "login.expired"}


def _t(request: Request, key: str, **params: Any) -> str:
    return translate(language_of(request), key, **params)


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _throttle(request: Request) -> IpThrottle:
    throttle: IpThrottle = request.app.state.login_throttle
    return throttle


def _check_address(request: Request) -> None:
    """429 page (with Retry-After) for an address with too many recent failures."""
    wait = _throttle(request).retry_after(_address(request))
    if wait is not None:
        raise PageError(
            429, "error.throttle.title", "error.throttle.body", headers={"Retry-After": str(wait)},
            minutes=max(1, math.ceil(wait / 60)),
        )  # fmt: skip


# ------------------------------------------------------------------------------------------- flow steps


def _next_step(session: Session, row: BrowserSession) -> str | None:
    """The page of the step this session is at, or None when it is complete."""
    mfa_pending = row.mfa_required and row.mfa_verified_at is None
    if mfa_pending and totp.is_enrolled(session, row.person_id):
        return "/login/mfa"  # an enrolled factor comes before changing the password
    if row.password_change_pending:
        return "/account/password"
    if mfa_pending:
        return "/account/mfa/setup"
    return None


def _finish(request: Request, next_url: str) -> Response:
    if next_url.startswith(OWN_PAGES):
        return redirect(request, next_url)
    return redirect(request, with_next("/login/continue", next_url))


def _route(request: Request, session: Session, row: BrowserSession, next_url: str) -> Response:
    """Send a browser to the step its session is at (or on to ``next`` when complete)."""
    step = _next_step(session, row)
    return redirect(request, with_next(step, next_url)) if step else _finish(request, next_url)


def _advance(
    request: Request, session: Session, row: BrowserSession, person: Person, next_url: str, token: str | None
) -> Response:
    """After a step succeeded: on to the next step, or, now that the login is complete, to ``next``."""
    step = _next_step(session, row)
    if step is not None:
        response = redirect(request, with_next(step, next_url))
    else:
        amr = ["pwd", "otp", "mfa"] if row.mfa_verified_at is not None else ["pwd"]
        audit.record(
            session, action="login.success", actor=origin_of(request, person_id=person.id), target_type="person",
            target_id=person.id, org_id=person.org_id, detail={"session_id": row.id, "amr": amr},
        )  # fmt: skip
        response = _finish(request, next_url)
    if token is not None:
        sessions.set_session_cookie(request, response, token)
    return response


def _signed_in_session(request: Request, session: Session, next_url: str) -> tuple[BrowserSession, Person] | Response:
    """This browser's live session and its person, or a redirect to the login page."""
    row = sessions.current(request, session)
    person = sessions.person_of(request, session, row) if row is not None else None
    if row is None or person is None:
        expired = getattr(request.state, "session_expired", None)
        return redirect(request, with_next("/login", next_url, **({"notice": "expired"} if expired else {})))
    sessions.refresh_requirements(session, row)
    return row, person


def _locked_out(request: Request, session: Session, row: BrowserSession, until: datetime, next_url: str) -> Response:
    """The account got locked during a later step: the session ends and the login page says until when."""
    person = session.get(Person, row.person_id)
    store.end(session, row, reason="locked", origin=origin_of(request, person_id=row.person_id),
              org_id=person.org_id if person else None)  # fmt: skip
    message = _t(request, "login.locked", until=local_time(until, language_of(request)))
    response = _login_page(request, next_url, message)
    sessions.clear_session_cookie(request, response)
    return response


# ------------------------------------------------------------------------------------------------ login


def _login_page(
    request: Request, next_url: str, message: str | None = None, *, kind: str = "error", username: str = ""
) -> HTMLResponse:
    return render(request, "login.html", {"next_url": next_url, "message": message, "message_kind": kind,
                                          "username": username})  # fmt: skip


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, session: SessionDep, next: str | None = None, prompt: str | None = None,
    notice: str | None = None,
) -> Response:  # fmt: skip
    """The login form; a browser already signed in goes straight on to ``next``."""
    next_url = safe_next(next)
    row = sessions.current(request, session)
    ended = False
    if row is not None and prompt == "login":
        person = session.get(Person, row.person_id)
        store.end(session, row, reason="reauth", origin=origin_of(request, person_id=row.person_id),
                  org_id=person.org_id if person else None)  # fmt: skip
        ended = True
        request.state.session_token = ""  # the form's CSRF token must not be bound to the ended session
    elif row is not None and sessions.person_of(request, session, row) is not None:
        sessions.refresh_requirements(session, row)
        if store.is_complete(row):
            return _finish(request, next_url)
    key = "expired" if getattr(request.state, "session_expired", None) else notice
    message = _t(request, NOTICES[key]) if key in NOTICES else None
    response = _login_page(request, next_url, message, kind="error" if key == "expired" else "info")
    if ended:
        sessions.clear_session_cookie(request, response)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, settings: SettingsDep, cipher: CipherDep, form: FormDep) -> Response:
    """Check the password; start a session and go on to the next step."""
    next_url = safe_next(form.get("next"))
    _check_address(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    if not username or not password:
        return _login_page(request, next_url, _t(request, "login.blank"), username=username[:MAX_USERNAME_INPUT])
    checked = accounts.check_password_outside_transaction(request.app.state.database, settings, username, password)
    outcome = accounts.authenticate(
        session, settings, cipher, username=username, password=password, origin=origin_of(request), checked=checked
    )
    shown_name = username[:MAX_USERNAME_INPUT]
    if outcome.status in ("invalid", "locked"):
        _throttle(request).record_failure(_address(request))
    if outcome.status == "locked" and outcome.locked_until is not None:
        until = local_time(outcome.locked_until, language_of(request))
        return _login_page(request, next_url, _t(request, "login.locked", until=until), username=shown_name)
    if outcome.status == "disabled":
        return _login_page(request, next_url, _t(request, "login.disabled"), username=shown_name)
    if outcome.person is None or not outcome.ok:
        return _login_page(request, next_url, _t(request, "login.invalid"), username=shown_name)
    person = outcome.person
    previous = sessions.current(request, session)
    if previous is not None:  # a new login in this browser replaces the old one
        store.end(session, previous, reason="replaced", origin=origin_of(request, person_id=previous.person_id))
    row, token = store.start(
        session, person_id=person.id,
        mfa_required=accounts.mfa_required(session, person.id) or totp.is_enrolled(session, person.id),
        password_change_pending=person.must_change_password, source_ip=_address(request),
        user_agent=request.headers.get("user-agent"),
    )  # fmt: skip
    return _advance(request, session, row, person, next_url, token)


@router.get("/login/continue", response_class=HTMLResponse)
def continue_page(request: Request, next: str | None = None) -> Response:
    """Carries on to ``next`` by a meta refresh: a fresh navigation, outside the posted form's CSP."""
    return render(request, "continue.html", {"next_url": safe_next(next)})


# ------------------------------------------------------------------------------------ second factor


def _mfa_page(request: Request, next_url: str, message: str | None = None) -> HTMLResponse:
    return render(request, "login_mfa.html", {"next_url": next_url, "message": message, "message_kind": "error"})


def _awaiting_code(session: Session, row: BrowserSession) -> bool:
    return _next_step(session, row) == "/login/mfa"


@router.get("/login/mfa", response_class=HTMLResponse)
def mfa_page(request: Request, session: SessionDep, next: str | None = None) -> Response:
    """Asks for the authenticator's code."""
    next_url = safe_next(next)
    found = _signed_in_session(request, session, next_url)
    if isinstance(found, Response):
        return found
    row, _person = found
    if not _awaiting_code(session, row):
        return _route(request, session, row, next_url)
    return _mfa_page(request, next_url)


@router.post("/login/mfa", response_class=HTMLResponse)
def mfa_verify(
    request: Request, session: SessionDep, settings: SettingsDep, cipher: CipherDep, form: FormDep
) -> Response:
    """Checks the code; a wrong or reused one counts toward the lockout."""
    next_url = safe_next(form.get("next"))
    _check_address(request)
    found = _signed_in_session(request, session, next_url)
    if isinstance(found, Response):
        return found
    row, person = found
    if not _awaiting_code(session, row):
        return _route(request, session, row, next_url)
    outcome = totp.verify(session, settings, cipher, person, form.get("code", ""), origin=origin_of(request))
    if outcome.ok:
        row.mfa_verified_at = utcnow()
        token = store.rotate(session, row)
        return _advance(request, session, row, person, next_url, token)
    _throttle(request).record_failure(_address(request))
    if outcome.status == "locked" and outcome.locked_until is not None:
        return _locked_out(request, session, row, outcome.locked_until, next_url)
    key = "mfa.replayed" if outcome.status == "replayed" else "mfa.invalid"
    return _mfa_page(request, next_url, _t(request, key))


# ---------------------------------------------------------------------------------------- password change


def _password_page(
    request: Request, next_url: str, row: BrowserSession, person: Person, message: str | None = None,
    problems: list[str] | None = None,
) -> HTMLResponse:  # fmt: skip
    return render(request, "password.html", {
        "next_url": next_url, "forced": row.password_change_pending, "username": person.username or "",
        "message": message, "message_kind": "error", "problems": problems or [],
    })  # fmt: skip


@router.get("/account/password", response_class=HTMLResponse)
def password_page(request: Request, session: SessionDep, next: str | None = None) -> Response:
    """The password-change form (the forced one of a first login, or a voluntary change)."""
    next_url = safe_next(next)
    found = _signed_in_session(request, session, next_url if next else "/account/password")
    if isinstance(found, Response):
        return found
    row, person = found
    if _awaiting_code(session, row):
        return _route(request, session, row, next_url)
    return _password_page(request, next_url, row, person)


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request, session: SessionDep, settings: SettingsDep, cipher: CipherDep, form: FormDep
) -> Response:
    """Changes the password; other sessions of the person end."""
    next_url = safe_next(form.get("next"))
    found = _signed_in_session(request, session, next_url)
    if isinstance(found, Response):
        return found
    row, person = found
    if _awaiting_code(session, row):
        return _route(request, session, row, next_url)
    current, new, again = (form.get(name, "") for name in ("current_password", "new_password", "confirm_password"))
    if not (current and new and again):
        return _password_page(request, next_url, row, person, _t(request, "password.blank"))
    if new != again:
        return _password_page(request, next_url, row, person, _t(request, "password.mismatch"))
    result = accounts.change_password(
        session, settings, cipher, person, current_password=current, new_password=new, origin=origin_of(request)
    )
    if result.status == "locked" and result.locked_until is not None:
        _throttle(request).record_failure(_address(request))
        return _locked_out(request, session, row, result.locked_until, next_url)
    if result.status == "wrong_current":
        _throttle(request).record_failure(_address(request))
        return _password_page(request, next_url, row, person, _t(request, "password.wrong_current"))
    if result.status == "weak":
        language = language_of(request)
        problems = [violation.message(language) for violation in result.violations]
        return _password_page(request, next_url, row, person, _t(request, "password.problems"), problems)
    was_complete = store.is_complete(row)
    row.password_change_pending = False
    token = store.rotate(session, row)
    store.end_all_for(session, person.id, reason="password_changed", origin=origin_of(request, person_id=person.id),
                      except_id=row.id, org_id=person.org_id)  # fmt: skip
    if was_complete:
        response = redirect(request, "/account?notice=password_changed")
        sessions.set_session_cookie(request, response, token)
        return response
    return _advance(request, session, row, person, next_url, token)


# ------------------------------------------------------------------------------------ second-factor set-up


def _setup_page(
    request: Request, session: Session, settings: IdentitySettings, cipher: FieldCipher, row: BrowserSession,
    person: Person, next_url: str, message: str | None = None,
) -> HTMLResponse:  # fmt: skip
    secret = totp.pending_secret(session, cipher, person)
    uri = totp.provisioning_uri(secret, account_name=person.username or person.id, issuer=settings.platform_name)
    return render(request, "mfa_setup.html", {
        "next_url": next_url, "required": row.mfa_required, "qr": totp.qr_data_uri(uri),
        "secret": totp.grouped(secret), "account_name": person.username or "", "message": message,
        "message_kind": "error",
    })  # fmt: skip


@router.get("/account/mfa/setup", response_class=HTMLResponse)
def mfa_setup_page(
    request: Request, session: SessionDep, settings: SettingsDep, cipher: CipherDep, next: str | None = None
) -> Response:
    """QR code and key of a new TOTP secret, and a field for the first code."""
    next_url = safe_next(next)
    found = _signed_in_session(request, session, next_url if next else "/account/mfa/setup")
    if isinstance(found, Response):
        return found
    row, person = found
    if totp.is_enrolled(session, person.id) or row.password_change_pending:
        return _route(request, session, row, next_url)
    return _setup_page(request, session, settings, cipher, row, person, next_url)


@router.post("/account/mfa/setup", response_class=HTMLResponse)
def mfa_setup(
    request: Request, session: SessionDep, settings: SettingsDep, cipher: CipherDep, form: FormDep
) -> Response:
    """Confirms the new secret with a first code; the session counts as verified with it."""
    next_url = safe_next(form.get("next"))
    found = _signed_in_session(request, session, next_url)
    if isinstance(found, Response):
        return found
    row, person = found
    if totp.is_enrolled(session, person.id) or row.password_change_pending:
        return _route(request, session, row, next_url)
    outcome = totp.confirm_enrolment(session, cipher, person, form.get("code", ""), origin=origin_of(request))
    if not outcome.ok:
        return _setup_page(request, session, settings, cipher, row, person, next_url, _t(request, "setup.invalid"))
    was_complete = store.is_complete(row)
    row.mfa_required = True  # enrolled: every login asks for a code from now on
    row.mfa_verified_at = utcnow()
    token = store.rotate(session, row)
    if was_complete:
        response = redirect(request, "/account")
        sessions.set_session_cookie(request, response, token)
        return response
    return _advance(request, session, row, person, next_url, token)


# ---------------------------------------------------------------------------------------- account, logout


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep, notice: str | None = None) -> Response:
    """Who is signed in, with links to change the password and manage app authorisations."""
    found = _signed_in_session(request, session, "/account")
    if isinstance(found, Response):
        return found
    row, person = found
    if not store.is_complete(row):
        return _route(request, session, row, "/account")
    roles = [
        {"role": grant.role, "org": organisations.get(session, grant.org_id).name}
        for grant in people.roles_of(session, person.id)
        if grant.active
    ]
    return render(request, "account.html", {
        "person": person, "organisation": organisations.get(session, person.org_id).name, "roles": roles,
        "mfa_enrolled": totp.is_enrolled(session, person.id),
        "signed_in_at": local_time(store.aware(row.password_verified_at), language_of(request)),
        "message": _t(request, NOTICES[notice]) if notice == "password_changed" else None, "message_kind": "info",
    })  # fmt: skip


@router.post("/logout")
def logout(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Ends this browser's session on the server and clears its cookie."""
    response = redirect(request, "/login?notice=logged_out")
    sessions.end_browser_session(request, session, response)
    return response


# ------------------------------------------------------------------------------------------------ wiring


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    language = language_of(request)
    return render(
        request, "error.html",
        {"title": translate(language, exc.title, **exc.params), "body": translate(language, exc.body, **exc.params),
         "request_id": getattr(request.state, "request_id", None)},
        status_code=exc.status_code, headers=exc.headers,
    )  # fmt: skip


def install(app: FastAPI) -> None:
    """Add the pages, their stylesheet, the per-address throttle and the error pages to the identity app."""
    settings = app.state.settings
    app.state.login_throttle = IpThrottle(settings.ip_failure_limit, settings.ip_failure_window_seconds)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(PageError, _page_error)
