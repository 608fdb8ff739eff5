"""The portal as a first-party OpenID Connect client of identity: authorization code with PKCE (S256), state, nonce.

Identity is reached at its issuer URL (through the gateway in production); its discovery document names the
authorization and token endpoints. The portal is a public client: no secret, PKCE proves the code's requester.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import Request
from joserfc import jws, jwt
from joserfc.errors import JoseError

from appstore.config import AppStoreSettings
from appstore.web.sessions import PendingSignIn, portal_base
from kit.errors import ServiceUnavailable


class SignInFailed(Exception):
    """Identity's answer could not be used; the page says to sign in again."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_at: datetime
    subject: str


def redirect_uri(settings: AppStoreSettings) -> str:
    return f"{portal_base(settings)}/callback"


def _code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def discovery(request: Request) -> dict[str, Any]:
    """Identity's OpenID configuration, fetched once per process."""
    cached: dict[str, Any] | None = getattr(request.app.state, "portal_oidc_discovery", None)
    if cached is not None:
        return cached
    settings: AppStoreSettings = request.app.state.settings
    url = f"{settings.token_issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=settings.identity_timeout_seconds, trust_env=False) as http:
            response = await http.get(url)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError):
        raise ServiceUnavailable("统一身份认证暂时无法访问，请稍后再试；The sign-in service is unreachable.") from None
    request.app.state.portal_oidc_discovery = document
    return document


async def authorization_url(request: Request, pending: PendingSignIn) -> str:
    settings: AppStoreSettings = request.app.state.settings
    document = await discovery(request)
    query = {
        "response_type": "code",
        "client_id": settings.portal_client_id,
        "redirect_uri": redirect_uri(settings),
        "scope": settings.portal_scopes,
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": _code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    return f"{document['authorization_endpoint']}?{urlencode(query)}"


async def _verify_id_token(request: Request, id_token: str, nonce: str) -> dict[str, Any]:
    settings: AppStoreSettings = request.app.state.settings
    try:
        header = dict(jws.extract_compact(id_token.encode("ascii")).headers())
        key = await request.app.state.jwks.get_key(str(header["kid"]))
        claims: dict[str, Any] = jwt.decode(id_token, key, algorithms=[str(header["alg"])]).claims
        jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": settings.token_issuer},
            aud={"essential": True, "value": settings.portal_client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, KeyError, ValueError, UnicodeError) as error:
        raise SignInFailed(f"id_token: {error}") from None
    return claims


async def exchange(request: Request, code: str, pending: PendingSignIn) -> Tokens:
    """Trade the code for tokens; the ID token must carry this sign-in's nonce and name the access token's person."""
    settings: AppStoreSettings = request.app.state.settings
    document = await discovery(request)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "client_id": settings.portal_client_id,
        "code_verifier": pending.code_verifier,
    }
    try:
        async with httpx.AsyncClient(timeout=settings.identity_timeout_seconds, trust_env=False) as http:
            response = await http.post(document["token_endpoint"], data=form)
    except httpx.HTTPError:
        raise ServiceUnavailable("统一身份认证暂时无法访问，请稍后再试；The sign-in service is unreachable.") from None
    if response.status_code != 200:
        raise SignInFailed(f"token endpoint answered {response.status_code}")
    body = response.json()
    access_token, id_token = body.get("access_token"), body.get("id_token")
    if not isinstance(access_token, str) or not isinstance(id_token, str):
        raise SignInFailed("no access_token or id_token")
    claims = await _verify_id_token(request, id_token, pending.nonce)
    expires_in = int(body.get("expires_in") or 300)
    return Tokens(
        access_token=access_token,
        expires_at=datetime.fromtimestamp(time.time() + expires_in, UTC),
        subject=str(claims["sub"]),
    )
