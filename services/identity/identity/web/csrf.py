"""CSRF protection for every page form.

A browser gets a random ``edu_csrf`` cookie on its first page. A form's token is an HMAC (keyed with
``session_secret``) of that cookie plus the browser-session cookie, if there is one: before login the
token is a signed double submit of the pre-session cookie, after login it is bound to the session as
well, so a token from before the login (or from another browser) is refused. Another site can neither
read the cookie nor compute the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from identity.web.i18n import PageError

CSRF_COOKIE = "edu_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "edu_session"  # the browser-session cookie (identity.web.sessions writes it)
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 20


def cookie_secure(request: Request) -> bool:
    """Cookies are Secure when the service is published over HTTPS."""
    return str(request.app.state.settings.public_base_url).startswith("https://")


def _secret(request: Request) -> bytes:
    return bytes(request.app.state.settings.session_secret.get_secret_value(), "utf-8")


def _browser_value(request: Request) -> str:
    """This browser's pre-session value: its cookie, or a new one that the response will set."""
    value = getattr(request.state, "csrf_cookie", None) or request.cookies.get(CSRF_COOKIE)
    if not value or len(value) != 43:
        value = secrets.token_urlsafe(32)
        request.state.csrf_cookie = value
        request.state.csrf_cookie_new = True
    return str(value)


def _session_binding(request: Request) -> str:
    # A session cookie set during this request (login, rotation) counts from now on.
    token = getattr(request.state, "session_token", None)
    if token is None:
        token = request.cookies.get(SESSION_COOKIE) or ""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def _expected(request: Request, browser_value: str) -> str:
    message = f"csrf|{browser_value}|{_session_binding(request)}".encode()
    return hmac.new(_secret(request), message, hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token to put in this page's forms (``<input type=hidden name=csrf_token>``)."""
    return _expected(request, _browser_value(request))


def set_cookie_if_new(request: Request, response: Response) -> None:
    if getattr(request.state, "csrf_cookie_new", False):
        response.set_cookie(
            CSRF_COOKIE, request.state.csrf_cookie, httponly=True, samesite="lax", path="/",
            secure=cookie_secure(request),
        )  # fmt: skip


def csrf_rejected() -> PageError:
    return PageError(403, "error.csrf.title", "error.csrf.body")


async def verify_csrf(request: Request) -> dict[str, str]:
    """FastAPI dependency for POST pages: the form's fields, once its token checks out (else a 403 page)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise PageError(413, "error.too_large.title", "error.too_large.body")
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    await form.close()
    browser_value = request.cookies.get(CSRF_COOKIE)
    submitted = fields.pop(CSRF_FIELD, "")
    if not browser_value or not submitted or not hmac.compare_digest(submitted, _expected(request, browser_value)):
        raise csrf_rejected()
    return fields
