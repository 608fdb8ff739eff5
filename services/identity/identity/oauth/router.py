"""OAuth 2.0 / OpenID Connect endpoints: discovery, authorize (with consent), token, introspection,
revocation, userinfo and RP-initiated logout.

Routes read the HTTP request, then hand it to the synchronous authlib server in a worker thread with
its own unit of work (``run_exchange``); OAuth errors come back as RFC 6749 JSON or as a redirect to the
client, never as a 500 and never with a token.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2 import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlmodel import Session

from contracts.scopes import SCOPES, SCOPES_BY_ID, personal_field_label
from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import origin_of
from identity.keys import service as keys
from identity.oauth import clients as client_store
from identity.oauth import consent as consents
from identity.oauth import tokens
from identity.oauth.claims import person_claims
from identity.oauth.messages import OAUTH_MESSAGES
from identity.oauth.server import AuthorizationServer, Client, Exchange, PlatformRequest, ResourceOwner, exchange
from identity.people.models import Person
from identity.web.csrf import verify_csrf
from identity.web.i18n import register_messages
from identity.web.sessions import SignedIn, end_browser_session, login_redirect, signed_in
from identity.web.templating import render
from kit.db import Database

router = APIRouter(tags=["OAuth 2.0 / OpenID Connect"])
register_messages(OAUTH_MESSAGES)

MAX_BODY_BYTES = 16 * 1024
T = TypeVar("T")


def _server(request: Request) -> AuthorizationServer:
    server: AuthorizationServer = request.app.state.oauth_server
    return server


def _settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


async def run_exchange(
    request: Request, work: Callable[[Exchange], T], *, person_id: str | None = None, read_only: bool = False
) -> T:
    """Run ``work`` in a worker thread inside one unit of work (committed unless it raises).

    ``read_only`` work runs in a read session, which on SQLite neither takes nor waits for the write
    lock; the writes it queues (``Exchange.write``) are applied after it in one short transaction.
    """
    database: Database = request.app.state.database
    settings = _settings(request)
    origin = origin_of(request, person_id=person_id)

    def call() -> T:
        deferred: list[Callable[[Session], object]] | None = [] if read_only else None
        with (
            database.read_session() if read_only else database.session() as session,
            exchange(Exchange(session, settings, request.app.state.cipher, origin, deferred_writes=deferred)) as ex,
        ):
            result = work(ex)
        if deferred:
            with database.session() as session:
                for change in deferred:
                    change(session)
        return result

    # A few dedicated threads, not the 40 of the shared pool: the exchanges are CPU-bound Python, and
    # dozens of threads taking turns at the GIL spent more time handing it over than working.
    executor: ThreadPoolExecutor = request.app.state.oauth_executor
    context = contextvars.copy_context()  # the request's trace and request id, inside the thread
    return await asyncio.get_running_loop().run_in_executor(executor, context.run, call)


def _oauth_uri(request: Request) -> str:
    # authlib refuses plain-http URIs; TLS ends at the ingress, so the public URL is what counts.
    base = _settings(request).public_base_url.rstrip("/")
    if not base.startswith("https://") and _settings(request).environment != "production":
        base = "https://" + base.split("://", 1)[-1]
    return base + request.url.path


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _too_long(pairs: list[tuple[str, str]], limit: int) -> str | None:
    for key, value in pairs:
        if len(key) > 64 or len(value) > limit:
            return key[:64]
    return None


async def _form_pairs(request: Request) -> list[tuple[str, str]] | JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "Send the parameters as application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _oauth_error("invalid_request", f"The request body is larger than {MAX_BODY_BYTES} bytes.", 413)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return _oauth_error("invalid_request", "The request body is not valid UTF-8.")
    if name := _too_long(pairs, _settings(request).oauth_max_parameter_length):
        return _oauth_error("invalid_request", f"The parameter {name!r} is too long.")
    return pairs


def _platform_request(request: Request, query: list[tuple[str, str]], form: list[tuple[str, str]]) -> PlatformRequest:
    return PlatformRequest(request.method, _oauth_uri(request), request.headers, query, form)


def _as_response(result: tuple[int, Any, dict[str, str]]) -> Response:
    status, body, headers = result
    if isinstance(body, dict):
        return JSONResponse(body, status_code=status, headers=headers)
    return Response(content=body or b"", status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ discovery


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata")
async def discovery(request: Request) -> JSONResponse:
    """OpenID Connect Discovery 1.0 / RFC 8414 metadata."""
    return JSONResponse(provider_metadata(_settings(request)), headers={"Cache-Control": "public, max-age=3600"})


def provider_metadata(settings: IdentitySettings) -> dict[str, Any]:
    issuer = settings.token_issuer.rstrip("/")
    return {
        "issuer": settings.token_issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "jwks_uri": settings.jwks_url,
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "scopes_supported": [item.id for item in SCOPES],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": [keys.ALGORITHM],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "azp",
            "name",
            "person_kind",
            "locale",
            "phone_number",
            "phone_number_verified",
            "school_id",
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["zh-CN", "en"],
        "authorization_response_iss_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


# ------------------------------------------------------------------------------------------ authorize


@dataclass
class _Outcome:
    """What the authorize step decided: a response authlib made, or a page/redirect for us to make."""

    response: tuple[int, Any, dict[str, str]] | None = None
    login: bool = False
    reauthenticate: bool = False  # end the current login first (prompt=login, or max_age exceeded)
    consent: dict[str, Any] | None = None
    error_page: str | None = None


def _owner(login: SignedIn) -> ResourceOwner:
    return ResourceOwner(
        person=login.person,
        auth_time=int(login.authenticated_at.timestamp()),
        amr=list(login.amr),
        browser_session_id=login.session_id,
    )


def _authorize(
    request: Request, query: list[tuple[str, str]], *, decision: str | None
) -> Callable[[Exchange], _Outcome]:
    server = _server(request)

    def work(ex: Exchange) -> _Outcome:
        oauth_request = _platform_request(request, query, [])
        oauth_request.method = "GET"
        login = signed_in(request, ex.session)
        params = dict(query)
        prompts = params.get("prompt", "").split()
        max_age = params.get("max_age", "")
        too_old = (
            login is not None and max_age.isdigit() and time.time() - login.authenticated_at.timestamp() > int(max_age)
        )
        if too_old:
            login = None  # authenticated too long ago for this client: sign in again
        oauth_request.user = _owner(login) if login else None
        try:
            grant = server.get_consent_grant(oauth_request, end_user=oauth_request.user)
        except OAuth2Error as error:
            if getattr(error, "redirect_uri", None):
                error.state = params.get("state")
                return _Outcome(response=server.handle_error_response(oauth_request, error))
            return _Outcome(error_page=error.get_error_description() or error.error)
        client: Client = grant.client
        if login is None or ("login" in prompts and decision is None):
            if "none" in prompts:
                return _Outcome(response=_redirect_error(server, oauth_request, grant, "login_required"))
            return _Outcome(login=True, reauthenticate=too_old or "login" in prompts)
        person = login.person
        requested = (params.get("scope") or "").split()
        verdict = consents.decide(ex.session, client.row, person, requested)
        if decision is None and (verdict.needs_prompt or ("consent" in prompts and not client.row.first_party)):
            if "none" in prompts:
                return _Outcome(response=_redirect_error(server, oauth_request, grant, "consent_required"))
            return _Outcome(consent=_consent_context(client, person, verdict, query))
        if decision == "deny":
            return _Outcome(response=server.create_authorization_response(oauth_request, grant_user=None, grant=grant))
        if decision == "approve" and not client.row.first_party:
            consents.record(
                ex.session,
                person=person,
                client=client.row,
                scopes=verdict.to_release,
                granted_by=person.id,
                origin=ex.origin,
            )
            if verdict.withheld_for_guardian:
                consents.request_guardian_consent(
                    ex.session, student=person, client=client.row, scopes=verdict.withheld_for_guardian
                )
        ex.released_scope = " ".join(verdict.to_release)
        return _Outcome(
            response=server.create_authorization_response(oauth_request, grant_user=oauth_request.user, grant=grant)
        )

    return work


def _redirect_error(server: AuthorizationServer, oauth_request: PlatformRequest, grant: Any, error: str) -> Any:
    from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError

    error_class = LoginRequiredError if error == "login_required" else ConsentRequiredError
    failure = error_class(redirect_uri=oauth_request.payload.redirect_uri or grant.client.get_default_redirect_uri())
    failure.state = oauth_request.payload.state
    return server.handle_error_response(oauth_request, failure)


def _consent_context(
    client: Client, person: Person, verdict: consents.ConsentDecision, query: list[tuple[str, str]]
) -> dict[str, Any]:
    def describe(scope_ids: list[str]) -> list[dict[str, Any]]:
        described = []
        for scope_id in scope_ids:
            item = SCOPES_BY_ID.get(scope_id)
            if item is None:
                continue
            described.append(
                {
                    "id": item.id,
                    "zh": item.description_zh,
                    "en": item.description_en,
                    "fields": [
                        {"zh": personal_field_label(f).label_zh, "en": personal_field_label(f).label_en}
                        for f in item.personal_fields
                    ],
                }
            )
        return described

    return {
        "client_name": client.row.client_name,
        "client_id": client.row.client_id,
        "person_name": person.name,
        "scopes": describe(verdict.to_release),
        "withheld": describe(verdict.withheld_for_guardian),
        "request_query": urlencode(query),
        "redirect_origin": _origin(dict(query).get("redirect_uri") or (client.get_default_redirect_uri() or "")),
    }


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _query_pairs(request: Request) -> list[tuple[str, str]] | None:
    pairs = list(request.query_params.multi_items())
    if _too_long(pairs, _settings(request).oauth_max_parameter_length):
        return None
    return pairs


async def _finish_authorize(request: Request, outcome: _Outcome, query: list[tuple[str, str]]) -> Response:
    if outcome.response is not None:
        return _as_response(outcome.response)
    if outcome.login:
        # Come back without prompt=login, or the fresh login would be asked for again, forever.
        kept = [(k, v) for k, v in query if k != "prompt"] + [
            ("prompt", p) for k, v in query if k == "prompt" for p in v.split() if p != "login"
        ]
        return login_redirect(request, "/oauth/authorize?" + urlencode(kept), force=outcome.reauthenticate)
    if outcome.consent is not None:
        # The form's answer ends in a redirect to the client, which CSP form-action must allow.
        origin = outcome.consent["redirect_origin"]
        return render(request, "oauth_consent.html", outcome.consent, form_action=[origin] if origin else [])
    return render(request, "oauth_error.html", {"message": outcome.error_page or "invalid_request"}, status_code=400)


@router.get("/oauth/authorize", include_in_schema=False)
async def authorize(request: Request) -> Response:
    """Authorization endpoint (RFC 6749 §3.1): sign in, consent, then redirect back with a code."""
    query = _query_pairs(request)
    if query is None:
        return render(request, "oauth_error.html", {"message": "A parameter is too long."}, status_code=400)
    outcome = await run_exchange(request, _authorize(request, query, decision=None))
    return await _finish_authorize(request, outcome, query)


@router.post("/oauth/authorize", include_in_schema=False)
async def authorize_decision(request: Request) -> Response:
    """The consent screen's answer: approve or deny the pending authorization request."""
    form = await verify_csrf(request)
    query = [(k, v) for k, v in parse_qsl(form.get("request", ""), keep_blank_values=True)]
    decision = form.get("decision")
    if decision not in ("approve", "deny") or _too_long(query, _settings(request).oauth_max_parameter_length):
        return render(request, "oauth_error.html", {"message": "invalid_request"}, status_code=400)
    outcome = await run_exchange(request, _authorize(request, query, decision=decision))
    return await _finish_authorize(request, outcome, query)


# ----------------------------------------------------------------------------- token, introspect, revoke


async def _token_endpoint(
    request: Request, handler: Callable[[AuthorizationServer, PlatformRequest], Any], *, reads_only: bool = False
) -> Response:
    pairs = await _form_pairs(request)
    if isinstance(pairs, JSONResponse):
        return pairs
    server = _server(request)
    oauth_request = _platform_request(request, [], pairs)
    # A private_key_jwt client assertion's jti is recorded (replay protection) before anything is
    # issued: that write cannot wait. Client credentials write only the token record and the audit
    # entry, which can.
    assertion = any(key == "client_assertion" for key, _ in pairs)
    client_credentials = ("grant_type", "client_credentials") in pairs
    read_only = (reads_only or client_credentials) and not assertion
    result = await run_exchange(request, lambda ex: handler(server, oauth_request), read_only=read_only)
    return _as_response(result)


@router.post("/oauth/token", summary="Token endpoint")
async def token(request: Request) -> Response:
    """Exchange a code (with PKCE), a refresh token, or client credentials for tokens (RFC 6749 §3.2)."""
    return await _token_endpoint(request, lambda server, req: server.create_token_response(req))


@router.post("/oauth/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> Response:
    """Whether a token is active, and what it carries; revoked and expired tokens are inactive."""
    return await _token_endpoint(
        request, lambda server, req: server.create_endpoint_response("introspection", req), reads_only=True
    )


@router.post("/oauth/revoke", summary="Token revocation (RFC 7009)")
async def revoke(request: Request) -> Response:
    """Revoke an access token, or a refresh token together with its whole family."""
    return await _token_endpoint(request, lambda server, req: server.create_endpoint_response("revocation", req))


# ------------------------------------------------------------------------------------------ userinfo


def _bearer(request: Request, form: dict[str, str]) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return form.get("access_token")


def _userinfo_error(error: str, description: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"'},
    )


@router.post("/oauth/userinfo", summary="OpenID Connect userinfo (POST)", operation_id="userinfo_post")
@router.get("/oauth/userinfo", summary="OpenID Connect userinfo", operation_id="userinfo_get")
async def userinfo(request: Request) -> Response:
    """Claims about the signed-in person, limited to the token's (consented) scopes."""
    form: dict[str, str] = {}
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        pairs = await _form_pairs(request)
        if isinstance(pairs, JSONResponse):
            return pairs
        form = dict(pairs)
    access_token = _bearer(request, form)
    if not access_token:
        return _userinfo_error("invalid_request", "Send the access token as a Bearer token.", 401)

    def work(ex: Exchange) -> tuple[int, dict[str, Any]]:
        presented = tokens.read_access_token(ex.session, ex.settings, access_token)
        if presented is None or presented.is_expired() or presented.is_revoked():
            return 401, {"error": "invalid_token", "error_description": "The access token is invalid or expired."}
        scopes = set(presented.scope.split())
        if "openid" not in scopes:
            return 403, {"error": "insufficient_scope", "error_description": "The token lacks the 'openid' scope."}
        client_row = client_store.find_active(ex.session, presented.client_id)
        row = presented.access_row
        person = ex.session.get(Person, row.person_id) if row and row.person_id else None
        if client_row is None or person is None or not person.active:
            return 401, {"error": "invalid_token", "error_description": "The token's client or person is gone."}
        claims = {
            "sub": presented.claims["sub"],
            **person_claims(ex.session, ex.cipher, person, scopes, for_app=client_row.app_id is not None),
        }
        audit.record(
            ex.session,
            action="oauth.userinfo",
            actor=ex.origin,
            target_type="person",
            target_id=person.id,
            org_id=person.org_id,
            detail={"client_id": client_row.client_id, "claims": sorted(claims)},
        )
        return 200, claims

    status, body = await run_exchange(request, work)
    if status != 200:
        return _userinfo_error(body["error"], body["error_description"], status)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# -------------------------------------------------------------------------------------------- logout


def _id_token_client(ex: Exchange, id_token_hint: str) -> tuple[str, str] | None:
    """(client_id, sub) of an ID token this provider issued; expiry does not matter for a logout hint."""
    try:
        header = jws.extract_compact(id_token_hint.encode()).headers()
        key = keys.public_key(ex.session, str(header.get("kid", "")))
        if key is None:
            return None
        claims = jwt.decode(id_token_hint, key, algorithms=[keys.ALGORITHM]).claims
    except (JoseError, ValueError):
        return None
    if claims.get("iss") != ex.settings.token_issuer:
        return None
    audience = claims.get("aud")
    client_id = audience[0] if isinstance(audience, list) and audience else audience
    return (str(client_id), str(claims.get("sub"))) if client_id else None


@router.get("/oauth/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """RP-initiated logout: end the browser session and return to a registered post-logout URI."""
    params = dict(request.query_params)
    hint = params.get("id_token_hint")
    target = params.get("post_logout_redirect_uri")

    def work(ex: Exchange) -> tuple[str | None, str | None, str]:
        redirect: str | None = None
        client_id = params.get("client_id")
        if hint:
            found = _id_token_client(ex, hint)
            if found is None:
                return None, "The id_token_hint is not a token this provider issued.", ""
            client_id = found[0]
        if target:
            client = client_store.find_active(ex.session, client_id) if client_id else None
            if client is None or target not in client_store.json_list(client.post_logout_redirect_uris):
                return None, "post_logout_redirect_uri is not registered for this client.", ""
            redirect = target
        return redirect, None, client_id or ""

    redirect, error, client_id = await run_exchange(request, work)
    if error:
        return render(request, "oauth_error.html", {"message": error}, status_code=400)
    origin = _origin(redirect or "")
    return render(
        request,
        "oauth_logout.html",
        {"redirect": redirect or "", "state": params.get("state", ""), "client_id": client_id},
        form_action=[origin] if origin else [],
    )


@router.post("/oauth/logout", include_in_schema=False)
async def logout_confirmed(request: Request) -> Response:
    """The person confirmed: end the browser session, then go back to the app when it asked."""
    form = await verify_csrf(request)
    redirect = form.get("redirect") or ""
    state = form.get("state") or ""

    client_id = form.get("client_id") or ""

    def work(ex: Exchange) -> Response | None:
        if redirect:
            # Checked when the page was shown; checked again, since the form came back from the browser.
            client = client_store.find_active(ex.session, client_id) if client_id else None
            if client is None or redirect not in client_store.json_list(client.post_logout_redirect_uris):
                return None
            query = ("&" if urlsplit(redirect).query else "?") + urlencode({"state": state}) if state else ""
            response: Response = RedirectResponse(redirect + query, status_code=303)
        else:
            response = RedirectResponse("/login", status_code=303)
        end_browser_session(request, ex.session, response)
        return response

    response = await run_exchange(request, work)
    if response is None:
        return render(request, "oauth_error.html", {"message": "post_logout_redirect_uri"}, status_code=400)
    return response
