"""The browser-session cookie, and who is signed in: what the login pages and the OAuth provider ask.

The ``edu_session`` cookie holds a random 256-bit token; the database keeps only its SHA-256
(identity.accounts.sessions). A session is *complete* once the password is verified, no password
change is pending and the second factor is done where required; only a complete one signs anyone in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from identity.accounts import service as accounts
from identity.accounts import sessions as store
from identity.accounts.models import BrowserSession
from identity.accounts.sessions import aware, utcnow
from identity.deps import origin_of
from identity.people.models import Person
from identity.web.csrf import SESSION_COOKIE, cookie_secure
from identity.web.templating import redirect

DEFAULT_NEXT = "/account"
MAX_NEXT_LENGTH = 4096


@dataclass(frozen=True)
class SignedIn:
    """A complete login: password ok, no change pending, second factor done if required."""

    session_id: str  # the BrowserSession primary key
    person: Person
    authenticated_at: datetime  # when the password was verified (OIDC auth_time)
    amr: list[str]  # RFC 8176: ["pwd"] or ["pwd", "otp", "mfa"]


def safe_next(next_url: str | None) -> str:
    """``next_url`` if it is a path on this site ("/...", not "//host" or "/\\host", no scheme), else /account."""
    if not next_url or len(next_url) > MAX_NEXT_LENGTH or not next_url.startswith("/"):
        return DEFAULT_NEXT
    if next_url.startswith("//") or "\\" in next_url or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in next_url):
        return DEFAULT_NEXT
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return next_url


def with_next(path: str, next_url: str, **params: str) -> str:
    """``path?next=...`` (plus ``params``), leaving out the default destination."""
    query = [f"{key}={quote(value, safe='')}" for key, value in params.items()]
    if next_url != DEFAULT_NEXT:
        query.insert(0, f"next={quote(next_url, safe='')}")
    return path + ("?" + "&".join(query) if query else "")


# ------------------------------------------------------------------------------------------------ cookie


def session_token(request: Request) -> str | None:
    """The browser-session token of this request (a token set during the request wins)."""
    token = getattr(request.state, "session_token", None)
    if token is not None:
        return str(token) or None
    return request.cookies.get(SESSION_COOKIE)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """Hand the browser a (new) session token; HttpOnly, SameSite=Lax, Secure over HTTPS, gone when it closes."""
    request.state.session_token = token
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", path="/", secure=cookie_secure(request),
    )  # fmt: skip


def clear_session_cookie(request: Request, response: Response) -> None:
    request.state.session_token = ""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))


# ----------------------------------------------------------------------------------------------- lookups


def current(request: Request, session: Session, *, now: datetime | None = None) -> BrowserSession | None:
    """The live session of this browser, complete or not; a timed-out one is ended (and audited) instead.

    When it has just timed out, ``request.state.session_expired`` says why (``idle`` / ``absolute``).
    """
    now = now or utcnow()
    row = store.find(session, session_token(request))
    if row is None:
        return None
    settings = request.app.state.settings
    reason = store.expiry_reason(row, settings, now=now)
    if reason is not None:
        person = session.get(Person, row.person_id)
        origin = origin_of(request, person_id=row.person_id)
        store.end(session, row, reason=reason, origin=origin, org_id=person.org_id if person else None, now=now)
        request.state.session_expired = reason
        return None
    store.touch(session, row, now=now)
    return row


def person_of(request: Request, session: Session, row: BrowserSession) -> Person | None:
    """The session's person, or None (and the session ended) if they have been deactivated meanwhile."""
    person = session.get(Person, row.person_id)
    if person is None or not person.active:
        origin = origin_of(request, person_id=row.person_id)
        store.end(session, row, reason="inactive", origin=origin, org_id=person.org_id if person else None)
        return None
    return person


def refresh_requirements(session: Session, row: BrowserSession) -> None:
    """A role that needs a second factor, granted since the login, makes the session incomplete until it is done."""
    if not row.mfa_required and row.mfa_verified_at is None and accounts.mfa_required(session, row.person_id):
        row.mfa_required = True
        session.add(row)
        session.flush()


def signed_in(request: Request, session: Session) -> SignedIn | None:
    """Who is signed in in this browser; None if nobody, or the session expired or is not complete yet.

    It may write to ``session`` (the last-seen time, an expiry and its audit entry): commit it.
    """
    row = current(request, session)
    if row is None:
        return None
    person = person_of(request, session, row)
    if person is None:
        return None
    refresh_requirements(session, row)
    if not store.is_complete(row):
        return None
    amr = ["pwd", "otp", "mfa"] if row.mfa_verified_at is not None else ["pwd"]
    return SignedIn(session_id=row.id, person=person, authenticated_at=aware(row.password_verified_at), amr=amr)


def login_redirect(request: Request, next_url: str, *, force: bool = False) -> RedirectResponse:
    """A 303 to the login page, which comes back to ``next_url`` (a path on this site) once signed in.

    ``force=True`` (OIDC ``prompt=login``) makes the login page end the current session and ask for the
    password again even if someone is signed in; strip ``prompt=login`` from ``next_url`` (or compare
    ``SignedIn.authenticated_at`` with the request's time) so the user is not sent back here in a loop.
    """
    params = {"prompt": "login"} if force else {}
    return redirect(request, with_next("/login", safe_next(next_url), **params))


def end_browser_session(request: Request, session: Session, response: Response) -> str | None:
    """Log out: end this browser's session server-side (audited) and clear its cookie; returns who it was."""
    row = store.find(session, session_token(request))
    clear_session_cookie(request, response)
    if row is None:
        return None
    person = session.get(Person, row.person_id)
    store.end(
        session, row, reason="logout", origin=origin_of(request, person_id=row.person_id),
        org_id=person.org_id if person else None,
    )  # fmt: skip
    return row.person_id
