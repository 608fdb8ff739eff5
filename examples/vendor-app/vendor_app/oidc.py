"""Signing users in with OpenID Connect: authorization code + PKCE against the platform's identity provider.

The user clicks the app in the platform; the platform opens the app's ``initiate_login_uri`` with ``iss``,
``login_hint`` and ``target_link_uri`` (OIDC Core §4, third-party initiated login). The app checks the issuer,
sends the browser to the provider's authorization endpoint (found by discovery) and, back at the callback,
exchanges the code with authlib's OAuth client and verifies the ID token's signature and claims.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from vendor_app import pages
from vendor_app.context import AppContext, context_of

router = APIRouter(prefix="/oidc", tags=["OIDC sign-in"])

STATE_COOKIE = "vendor_app_oidc_state"
SESSION_COOKIE = "vendor_app_session"


class SignInFailed(Exception):
    """The sign-in cannot go on; the message is shown to the user."""


async def provider_metadata(context: AppContext) -> dict[str, Any]:
    """The provider's discovery document, fetched once; its issuer must be the configured platform."""
    if context.provider_metadata is None:
        response = await context.http.get(context.settings.discovery_url)
        response.raise_for_status()
        metadata: dict[str, Any] = response.json()
        if metadata.get("issuer", "").rstrip("/") != context.settings.issuer:
            raise SignInFailed("平台的身份认证服务地址与配置不符；the provider's issuer is not the configured platform")
        context.provider_metadata = metadata
    return dict(context.provider_metadata)


async def provider_keys(context: AppContext, *, refresh: bool = False) -> KeySet:
    if context.provider_keys is None or refresh:
        metadata = await provider_metadata(context)
        response = await context.http.get(str(metadata["jwks_uri"]))
        response.raise_for_status()
        context.provider_keys = response.json()
    return KeySet.import_key_set(context.provider_keys)  # type: ignore[arg-type]


def _oauth_client(context: AppContext) -> AsyncOAuth2Client:
    settings = context.settings
    return AsyncOAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret or None,
        scope=settings.oidc_scopes,
        redirect_uri=settings.oidc_redirect_uri,
        code_challenge_method="S256",
        timeout=settings.timeout_seconds,
        **({"transport": context.transport} if context.transport is not None else {}),
    )


def _own_url(context: AppContext, url: str | None) -> str:
    """``target_link_uri`` if it points into this app (never an open redirect), else the app's home."""
    home = f"{context.settings.base_url}/oidc/home"
    if not url:
        return home
    base = urlsplit(context.settings.base_url)
    target = urlsplit(url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or target.path in ("", "/"):
        return home  # the platform links the app's root: after sign-in, that is the signed-in home page
    return url


@router.get("/login", summary="OIDC third-party initiated login (the manifest's initiate_login_uri)")
async def initiate_login(
    request: Request, iss: str = "", login_hint: str | None = None, target_link_uri: str | None = None
) -> Response:
    """Start the sign-in the platform asked for: check the issuer, redirect to the authorization endpoint."""
    context = context_of(request)
    if not context.settings.oidc_client_id:
        return HTMLResponse(
            pages.error_page("应用未配置", "尚未配置 OIDC 客户端编号（VENDOR_APP_OIDC_CLIENT_ID）。"), 503
        )
    if iss.rstrip("/") != context.settings.issuer:
        return HTMLResponse(pages.error_page("无法登录", "登录请求不是来自本应用所接入的平台。"), 400)
    try:
        metadata = await provider_metadata(context)
    except (SignInFailed, OSError, ValueError, httpx.HTTPError) as error:
        return HTMLResponse(pages.error_page("无法登录", f"暂时无法连接平台的身份认证服务：{error}"), 502)
    state = secrets.token_urlsafe(24)
    nonce = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    extra = {"login_hint": login_hint} if login_hint else {}
    async with _oauth_client(context) as oauth:
        url, _ = oauth.create_authorization_url(
            str(metadata["authorization_endpoint"]), state=state, nonce=nonce, code_verifier=verifier, **extra
        )
    context.pending_logins.set(
        state,
        {"verifier": verifier, "nonce": nonce, "target": _own_url(context, target_link_uri), "hint": login_hint},
    )
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE, state, max_age=600, httponly=True, secure=context.settings.secure_cookies,
        samesite="lax", path="/oidc",
    )  # fmt: skip
    return response


async def verified_id_token(context: AppContext, id_token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims after checking its signature (provider's JWKS), issuer, audience, expiry and nonce."""
    keys = await provider_keys(context)
    try:
        token = jwt.decode(id_token, keys, algorithms=["RS256", "PS256", "ES256"])
    except (JoseError, ValueError):
        # The provider may have rotated its keys since they were fetched.
        token = jwt.decode(id_token, await provider_keys(context, refresh=True), algorithms=["RS256", "PS256", "ES256"])
    registry = JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": str((await provider_metadata(context))["issuer"])},
        aud={"essential": True, "value": context.settings.oidc_client_id},
        sub={"essential": True},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    registry.validate(token.claims)
    return dict(token.claims)


@router.get("/callback", summary="Where the provider sends the browser back with the authorization code")
async def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
    """Exchange the code (PKCE), verify the ID token, read userinfo, open a session and go to the target."""
    context = context_of(request)
    if error:
        return HTMLResponse(pages.error_page("未登录", f"平台没有完成登录（{error}）。"), 400)
    if not state or request.cookies.get(STATE_COOKIE) != state:
        return HTMLResponse(pages.error_page("无法登录", "登录状态不匹配（可能已过期或在另一个窗口中打开）。"), 400)
    pending = context.pending_logins.pop(state)
    if pending is None or not code:
        return HTMLResponse(pages.error_page("无法登录", "登录请求已过期，请回到平台重新打开应用。"), 400)
    try:
        metadata = await provider_metadata(context)
        async with _oauth_client(context) as oauth:
            token = await oauth.fetch_token(
                str(metadata["token_endpoint"]), code=code, code_verifier=pending["verifier"],
                grant_type="authorization_code",
            )  # fmt: skip
            claims = await verified_id_token(context, str(token["id_token"]), pending["nonce"])
            userinfo: dict[str, Any] = {}
            if metadata.get("userinfo_endpoint"):
                answer = await oauth.get(str(metadata["userinfo_endpoint"]))
                if answer.status_code == 200 and answer.json().get("sub") == claims["sub"]:
                    userinfo = answer.json()
    except (SignInFailed, OAuthError, JoseError, KeyError, ValueError, OSError, httpx.HTTPError) as failure:
        return HTMLResponse(pages.error_page("无法登录", f"登录凭证校验未通过：{failure}"), 400)
    user = {**userinfo, **claims}
    session_id = secrets.token_urlsafe(32)
    launch_id = _launch_id(user, pending["target"]) or pending.get("hint")
    tally = context.usage.start(
        launch_id or f"oidc-{secrets.token_hex(8)}", str(user.get("school_id") or ""), platform_launch=bool(launch_id)
    )
    context.sessions.set(session_id, {"user": user, "launch_id": launch_id, "tally": tally.launch_id})
    response = RedirectResponse(pending["target"], status_code=303)
    response.delete_cookie(STATE_COOKIE, path="/oidc")
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=8 * 3600, httponly=True, secure=context.settings.secure_cookies,
        samesite="lax",
    )  # fmt: skip
    return response


def _launch_id(user: dict[str, Any], target: str) -> str | None:
    """The platform's launch id when it names it in a claim or in target_link_uri (else: the login_hint)."""
    claimed = user.get("launch_id")
    if isinstance(claimed, str) and claimed:
        return claimed
    values = parse_qs(urlsplit(target).query).get("launch_id")
    return values[0] if values else None


def roles_of(user: dict[str, Any]) -> list[str]:
    """The user's roles, whether the provider sends names or ``{role, org_id}`` objects."""
    found: list[str] = []
    for item in user.get("roles") or []:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict) and item.get("role"):
            found.append(str(item["role"]))
    return found


def signed_in_user(request: Request) -> tuple[str, dict[str, Any]] | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    session = context_of(request).sessions.get(session_id) if session_id else None
    return (session_id, session) if session_id and session else None


@router.get("/home", response_class=HTMLResponse, summary="Who signed in")
async def home(request: Request) -> HTMLResponse:
    """Shows the signed-in user as the app knows them: pairwise id, school, roles (name only if granted)."""
    context = context_of(request)
    found = signed_in_user(request)
    if found is None:
        return HTMLResponse(pages.error_page("未登录", "请从平台的应用列表打开本应用。"), 401)
    _, session = found
    user: dict[str, Any] = session["user"]
    tally = context.usage.get(session["tally"])
    roles = "、".join(pages.role_label(role) for role in roles_of(user)) or "（平台未提供）"
    body = [
        pages.section(
            "您已通过城市教育统一身份登录",
            pages.definition_list(
                [
                    ("匿名用户标识（sub，仅本应用可见）", user.get("sub")),
                    ("姓名", user.get("name") or "（未授权 profile，应用看不到姓名）"),
                    ("学校编号", user.get("school_id") or "（未授权，应用看不到学校）"),
                    ("角色", roles),
                    ("平台启动编号", session.get("launch_id") or "（平台未提供）"),
                ]
            ),
        ),
        pages.section(
            "本次使用的计量",
            pages.paragraph(f"已批改作业：{tally.units if tally else 0} 份"),
            pages.form_button("/usage/mark", "批改一份作业（计量 +1）", {"launch": session["tally"]}),
        ),
    ]
    return HTMLResponse(pages.page("示例应用 · 登录成功", *body))
