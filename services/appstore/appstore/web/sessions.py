"""The portal's cookies: the signed-in session, the pending sign-in (state, PKCE verifier, nonce) and CSRF tokens.

The session cookie holds a random 256-bit token; the database keeps only its keyed hash, so a copy of the table
signs nobody in. A form's CSRF token is a keyed hash of the session token: another site can neither read the
cookie nor compute the token, and a token stops working when its session ends.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from fastapi import Request, Response
from sqlmodel import Session, col, delete

from appstore.config import AppStoreSettings
from appstore.deps import Caller
from appstore.web.models import PortalSession
from kit.crypto import FieldCipher
from kit.errors import Unauthenticated

SESSION_COOKIE = "appstore_portal"
SIGN_IN_COOKIE = "appstore_portal_signin"
CSRF_FIELD = "csrf_token"
SIGN_IN_SECONDS = 600


def portal_base(settings: AppStoreSettings) -> str:
    """The pages' URL as browsers reach it (through the gateway unless configured otherwise), no trailing slash."""
    return (settings.portal_base_url or f"{settings.platform_base_url.rstrip('/')}/api/appstore/portal").rstrip("/")


def portal_path(settings: AppStoreSettings) -> str:
    """The path part of :func:`portal_base`: links in pages and the cookies' path."""
    return urlsplit(portal_base(settings)).path or "/"


def _cipher(request: Request) -> FieldCipher:
    cipher: FieldCipher = request.app.state.cipher
    return cipher


def _settings(request: Request) -> AppStoreSettings:
    settings: AppStoreSettings = request.app.state.settings
    return settings


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    settings = _settings(request)
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", path=portal_path(settings),
        secure=portal_base(settings).startswith("https://"),
    )  # fmt: skip


def _clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=portal_path(_settings(request)), httponly=True, samesite="lax")


# ------------------------------------------------------------------------------------------ pending sign-in


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    code_verifier: str
    nonce: str
    next_path: str


def start_sign_in(request: Request, response: Response, next_path: str) -> PendingSignIn:
    pending = PendingSignIn(
        state=secrets.token_urlsafe(24), code_verifier=secrets.token_urlsafe(48), nonce=secrets.token_urlsafe(24),
        next_path=next_path,
    )  # fmt: skip
    value = json.dumps({**pending.__dict__, "at": int(time.time())})
    _set_cookie(request, response, SIGN_IN_COOKIE, _cipher(request).encrypt("portal-sign-in", value), SIGN_IN_SECONDS)
    return pending


def pending_sign_in(request: Request, state: str) -> PendingSignIn | None:
    """The sign-in this browser started, if ``state`` is its own and it is recent."""
    token = request.cookies.get(SIGN_IN_COOKIE)
    if not token or not state:
        return None
    try:
        data: dict[str, Any] = json.loads(_cipher(request).decrypt("portal-sign-in", token))
    except (ValueError, InvalidTag, UnicodeError):  # a tampered or foreign cookie is simply no pending sign-in
        return None
    if int(data.get("at", 0)) + SIGN_IN_SECONDS < time.time():
        return None
    if not hmac.compare_digest(str(data.get("state", "")), state):
        return None
    return PendingSignIn(
        state=data["state"], code_verifier=data["code_verifier"], nonce=data["nonce"], next_path=data["next_path"]
    )


def end_sign_in(request: Request, response: Response) -> None:
    _clear_cookie(request, response, SIGN_IN_COOKIE)


# ------------------------------------------------------------------------------------------ sessions


def _session_id(request: Request, token: str) -> str:
    return _cipher(request).lookup_hash("portal-session", token)


def create_session(
    request: Request, response: Response, session: Session, *, person_id: str, access_token: str, expires_at: datetime
) -> str:
    """Store a new session and set its cookie; returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.exec(delete(PortalSession).where(col(PortalSession.expires_at) < now))
    session.add(
        PortalSession(
            id=_session_id(request, token), person_id=person_id, expires_at=expires_at,
            access_token_encrypted=_cipher(request).encrypt("portal-access-token", access_token),
        )
    )  # fmt: skip
    session.flush()
    _set_cookie(request, response, SESSION_COOKIE, token, max(1, int((expires_at - now).total_seconds())))
    request.state.portal_token = token
    return token


def _cookie_token(request: Request) -> str | None:
    token = getattr(request.state, "portal_token", None) or request.cookies.get(SESSION_COOKIE)
    return str(token) if token and len(token) <= 128 else None


async def signed_in(request: Request, session: Session) -> Caller | None:
    """The caller of the portal's session, with the access token identity issued; None when not signed in."""
    token = _cookie_token(request)
    if token is None:
        return None
    row = session.get(PortalSession, _session_id(request, token))
    if row is None:
        return None
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires_at <= datetime.now(UTC):
        return None
    access_token = _cipher(request).decrypt("portal-access-token", row.access_token_encrypted)
    try:
        principal = await request.app.state.token_verifier.verify(access_token)
    except Unauthenticated:
        return None
    if principal.subject != row.person_id:
        return None
    return Caller(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


def end_session(request: Request, response: Response, session: Session) -> None:
    token = _cookie_token(request)
    if token is not None:
        row = session.get(PortalSession, _session_id(request, token))
        if row is not None:
            session.delete(row)
            session.flush()
    _clear_cookie(request, response, SESSION_COOKIE)


def session_lifetime(settings: AppStoreSettings, token_expires_at: datetime) -> datetime:
    return min(token_expires_at, datetime.now(UTC) + timedelta(hours=settings.portal_session_hours))


# ------------------------------------------------------------------------------------------ CSRF


def csrf_token(request: Request) -> str:
    """The token of this session's forms (empty when not signed in: there are no forms then)."""
    token = _cookie_token(request)
    return _cipher(request).lookup_hash("portal-csrf", token) if token else ""


def csrf_ok(request: Request, submitted: str) -> bool:
    expected = csrf_token(request)
    return bool(expected) and hmac.compare_digest(expected, submitted or "")
