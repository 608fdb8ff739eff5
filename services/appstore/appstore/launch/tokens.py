"""The LTI platform's token endpoint (LTI Advantage security, client credentials with a signed client assertion)
and the access tokens it issues for the Names and Role Provisioning service.

A tool proves who it is with a JWT signed by a key in the JWKS its manifest names. The JWKS is fetched over
HTTP (through the SSRF guard), cached, and fetched again when an assertion names a key id we have not seen.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import Request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from appstore.apps.models import App
from appstore.config import AppStoreSettings
from appstore.launch.errors import InvalidServiceToken, LtiInvalidClient, LtiTokenError, ServiceScopeMissing
from appstore.launch.models import ServiceToken, UsedToolAssertion
from appstore.launch.service import NRPS_SCOPE, as_utc, digest, platform_url, published_manifest
from contracts.manifest import Lti13Launch
from kit.netguard import UnsafeUrl, check_outbound_url

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SERVICE_SCOPES = frozenset({NRPS_SCOPE})
SERVICE_TOKEN_TTL = timedelta(minutes=15)
CLOCK_LEEWAY_SECONDS = 30
#: Longest lifetime of a client assertion we accept: the jti store need not remember anything longer.
MAX_ASSERTION_LIFETIME_SECONDS = 600


class ToolKeySets:
    """Tools' JWK sets by URL: cached for ``ttl``; an unknown kid fetches again, at most every ``min_refetch``."""

    def __init__(self, *, ttl: float = 300.0, min_refetch: float = 5.0, timeout: float = 5.0) -> None:
        self._ttl, self._min_refetch, self._timeout = ttl, min_refetch, timeout
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeySet]] = {}

    def key_set(self, url: str, *, kid: str | None, production: bool) -> KeySet:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            fetched_at, keys = cached
            age = time.monotonic() - fetched_at
            known = kid is None or any(key.kid == kid for key in keys.keys)
            if age < self._ttl and (known or age < self._min_refetch):
                return keys
        keys = self._fetch(url, production=production)
        with self._lock:
            self._cache[url] = (time.monotonic(), keys)
        return keys

    def _fetch(self, url: str, *, production: bool) -> KeySet:
        try:
            check_outbound_url(url, production=production)
        except UnsafeUrl as exc:
            raise LtiInvalidClient(
                f"应用清单中的 jwks_url 不可访问；The manifest's jwks_url may not be called: {exc}."
            ) from None
        try:
            response = httpx.get(url, timeout=self._timeout, follow_redirects=False)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise LtiInvalidClient(
                f"无法获取工具的公钥集；The tool's JWKS at its jwks_url could not be read ({type(exc).__name__})."
            ) from None


def tool_key_sets(request: Request) -> ToolKeySets:
    state = request.app.state
    cache: ToolKeySets | None = getattr(state, "lti_tool_key_sets", None)
    if cache is None:
        cache = ToolKeySets()
        state.lti_tool_key_sets = cache
    return cache


@dataclass(frozen=True)
class IssuedServiceToken:
    access_token: str
    expires_in: int
    scope: str


def issue_service_token(
    session: Session,
    settings: AppStoreSettings,
    key_sets: ToolKeySets,
    form: dict[str, str],
    *,
    now: datetime | None = None,
) -> IssuedServiceToken:
    """Exchange a tool's client assertion for a short-lived access token to the LTI Advantage services."""
    now = now or datetime.now(UTC)
    if form.get("grant_type") != "client_credentials":
        raise LtiTokenError(
            "unsupported_grant_type", "grant_type 必须为 client_credentials；grant_type must be client_credentials."
        )
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise LtiTokenError(
            "invalid_request",
            f"client_assertion_type 必须为 {CLIENT_ASSERTION_TYPE}；"
            f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}.",
        )
    assertion = form.get("client_assertion", "")
    claims = _verified_assertion(session, settings, key_sets, assertion, now)
    requested = set(form.get("scope", "").split())
    granted = sorted(requested & SERVICE_SCOPES)
    if not granted:
        raise LtiTokenError(
            "invalid_scope",
            f"只能申请 {NRPS_SCOPE}；Only the scope {NRPS_SCOPE} may be requested.",
        )
    _remember_jti(session, claims["iss"], str(claims["jti"]), int(claims["exp"]))
    session.execute(delete(ServiceToken).where(col(ServiceToken.expires_at) < now))  # spent tokens go as new come
    token = secrets.token_urlsafe(32)
    session.add(
        ServiceToken(
            token_hash=digest(token), app_id=claims["_app_id"], client_id=claims["iss"], scope=" ".join(granted),
            issued_at=now, expires_at=now + SERVICE_TOKEN_TTL,
        )
    )  # fmt: skip
    return IssuedServiceToken(
        access_token=token, expires_in=int(SERVICE_TOKEN_TTL.total_seconds()), scope=" ".join(granted)
    )


def _verified_assertion(
    session: Session, settings: AppStoreSettings, key_sets: ToolKeySets, assertion: str, now: datetime
) -> dict[str, Any]:
    if not assertion:
        raise LtiTokenError("invalid_request", "缺少 client_assertion；client_assertion is required.")
    try:
        unverified = jws.extract_compact(assertion.encode())
        header = unverified.headers()
        unverified_claims = json.loads(unverified.payload)
    except (JoseError, ValueError):
        raise LtiInvalidClient("client_assertion 不是有效的 JWT；client_assertion is not a well-formed JWT.") from None
    client_id = unverified_claims.get("iss") if isinstance(unverified_claims, dict) else None
    app = session.exec(select(App).where(App.client_id == str(client_id))).first() if client_id else None
    if app is None:
        raise LtiInvalidClient(
            "client_assertion 的 iss 不是已登记的 LTI 工具；The assertion's iss is not a registered tool."
        )
    if app.status != "listed":
        raise LtiInvalidClient("该应用已被暂停或下架；The app is suspended or retired.")
    manifest = published_manifest(session, app)
    if not isinstance(manifest.launch, Lti13Launch):
        raise LtiInvalidClient("该应用不是 LTI 1.3 工具；The app is not an LTI 1.3 tool.")
    if header.get("alg") != "RS256":
        raise LtiInvalidClient("client_assertion 必须以 RS256 签名；The assertion must be signed with RS256.")
    kid = header.get("kid")
    keys = key_sets.key_set(
        manifest.launch.jwks_url, kid=str(kid) if kid else None, production=settings.environment == "production"
    )
    try:
        token = jwt.decode(assertion, keys, algorithms=["RS256"])
    except (JoseError, ValueError):
        raise LtiInvalidClient(
            "client_assertion 的签名无法用工具公钥集验证；"
            "The assertion's signature does not verify with the tool's JWKS."
        ) from None
    claims = dict(token.claims)
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise LtiInvalidClient(
            "client_assertion 的 iss 和 sub 必须都是 client_id；iss and sub must both be the client_id."
        )
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    token_endpoint = platform_url(settings, "/lti/token")
    if token_endpoint not in audiences:
        raise LtiInvalidClient(
            f"client_assertion 的 aud 必须是令牌端点地址；aud must be the token endpoint {token_endpoint}."
        )
    moment = int(now.timestamp())
    exp, iat = claims.get("exp"), claims.get("iat", moment)
    if not isinstance(exp, int) or exp + CLOCK_LEEWAY_SECONDS <= moment:
        raise LtiInvalidClient("client_assertion 已过期或缺少 exp；The assertion has expired or has no exp.")
    if not isinstance(iat, int) or iat - CLOCK_LEEWAY_SECONDS > moment or exp - moment > MAX_ASSERTION_LIFETIME_SECONDS:
        raise LtiInvalidClient("client_assertion 的 iat/exp 不合理；The assertion's iat or exp is out of range.")
    if not claims.get("jti"):
        raise LtiInvalidClient("client_assertion 缺少 jti；The assertion needs a jti.")
    claims["_app_id"] = app.id
    return claims


def _remember_jti(session: Session, client_id: str, jti: str, exp: int) -> None:
    key = hashlib.sha256(f"{client_id}|{jti}".encode()).hexdigest()
    refused = LtiInvalidClient(
        "client_assertion 的 jti 已使用过，不能重放；The assertion's jti was already used (replay)."
    )
    if session.get(UsedToolAssertion, key) is not None:
        raise refused
    expires = datetime.fromtimestamp(exp + CLOCK_LEEWAY_SECONDS, UTC)
    try:
        with session.begin_nested():  # two requests with one assertion at once: the second one fails here
            session.add(UsedToolAssertion(key=key, expires_at=expires))
    except IntegrityError:
        raise refused from None
    # Forget assertions that can no longer be presented (their exp has passed).
    session.execute(delete(UsedToolAssertion).where(col(UsedToolAssertion.expires_at) < datetime.now(UTC)))


@dataclass(frozen=True)
class ServiceCaller:
    app_id: str
    client_id: str
    scopes: frozenset[str]


def service_caller(session: Session, authorization: str | None, *, scope: str) -> ServiceCaller:
    """The tool behind an LTI service request's bearer token, holding ``scope``."""
    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidServiceToken(
            "需要 LTI 服务令牌（Authorization: Bearer …）；An LTI service access token is required.", headers=challenge
        )
    row = session.get(ServiceToken, digest(token.strip()))
    if row is None or as_utc(row.expires_at) <= datetime.now(UTC):
        raise InvalidServiceToken(
            "LTI 服务令牌无效或已过期，请重新申请；The LTI service token is unknown or expired: request a new one.",
            headers=challenge,
        )
    scopes = frozenset(row.scope.split())
    if scope not in scopes:
        raise ServiceScopeMissing(f"该令牌缺少范围 {scope}；The token lacks the scope {scope}.", required_scope=scope)
    return ServiceCaller(app_id=row.app_id, client_id=row.client_id, scopes=scopes)
