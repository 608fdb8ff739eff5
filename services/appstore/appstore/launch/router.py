"""HTTP routes of launching apps, and the LTI 1.3 platform endpoints.

``POST /launches`` is called with the user's access token (``apps.read``). The ``/lti/...`` endpoints are
called by tools and browsers without a platform token: LTI authenticates with its own one-time launch hints,
signed client assertions and service tokens.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from appstore.deps import CallerDep, SettingsDep
from appstore.launch import nrps, service, tokens
from appstore.launch.keys import PlatformKeys, platform_keys, published_keys
from appstore.launch.schemas import (
    NRPS_MEDIA_TYPE,
    LaunchCreate,
    LaunchRead,
    NrpsMembershipContainer,
    ServiceTokenRead,
)
from appstore.launch.tokens import ToolKeySets, tool_key_sets
from kit.db import DatabaseDep, ReadSessionDep, SessionDep

router = APIRouter(tags=["launch"])

SCOPE_READ = "apps.read"
_AUTOSUBMIT = "document.forms[0].submit();"
_AUTOSUBMIT_HASH = base64.b64encode(hashlib.sha256(_AUTOSUBMIT.encode()).digest()).decode()
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _request_fields(request: Request) -> dict[str, str]:
    """Query parameters, and form fields of a POST (OIDC allows both for the authentication request)."""
    fields = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        fields.update({key: value for key, value in form.items() if isinstance(value, str)})
    return fields


FieldsDep = Annotated[dict[str, str], Depends(_request_fields)]
PlatformKeysDep = Annotated[PlatformKeys, Depends(platform_keys)]
ToolKeySetsDep = Annotated[ToolKeySets, Depends(tool_key_sets)]


@router.post("/launches", response_model=LaunchRead, status_code=201)
def create_launch(data: LaunchCreate, session: SessionDep, caller: CallerDep, settings: SettingsDep) -> LaunchRead:
    """Open an installed app as the caller (a teacher, pupil or administrator of the installing school)."""
    caller.require_scope(SCOPE_READ)
    started = service.start_launch(session, settings, caller, data)
    lti = started.launch.kind == "lti_1p3"
    return LaunchRead(
        launch_id=started.launch.id,
        kind="lti_1p3" if lti else "oidc",
        url=started.url,
        expires_at=started.launch.expires_at if lti else None,
    )


@router.get("/lti/jwks")
def platform_jwks(database: DatabaseDep, session: ReadSessionDep, keys: PlatformKeysDep) -> JSONResponse:
    """The LTI platform's public keys (JWKS), to verify the ID tokens of launches."""
    keys.signing_key(database)  # a platform that never launched yet still publishes its first key
    return JSONResponse(published_keys(session), headers={"Cache-Control": "public, max-age=300"})


def _form_post(post: service.FormPost) -> HTMLResponse:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in post.fields.items()
    )
    target = urlsplit(post.redirect_uri)
    page = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>正在打开应用…</title></head><body>'
        f'<form method="post" action="{html.escape(post.redirect_uri)}">{inputs}'
        '<noscript><button type="submit">继续 Continue</button></noscript></form>'
        f"<script>{_AUTOSUBMIT}</script></body></html>"
    )
    return HTMLResponse(
        page,
        headers={
            **_NO_STORE,
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'sha256-{_AUTOSUBMIT_HASH}'; "
                f"form-action {target.scheme}://{target.netloc}"
            ),
            "Referrer-Policy": "no-referrer",
        },
    )


def _authorize(
    fields: dict[str, str], session: SessionDep, settings: SettingsDep, database: DatabaseDep, keys: PlatformKeysDep
) -> HTMLResponse:
    signing_key = keys.signing_key(database)  # before the request's own transaction takes the write lock
    return _form_post(service.authorize(session, settings, signing_key, fields))


@router.get("/lti/authorize", response_class=HTMLResponse)
def lti_authorize(
    fields: FieldsDep, session: SessionDep, settings: SettingsDep, database: DatabaseDep, keys: PlatformKeysDep
) -> HTMLResponse:
    """The tool's OIDC authentication request (LTI 1.3 §5.1.1): answered by an auto-posted id_token or error."""
    return _authorize(fields, session, settings, database, keys)


@router.post("/lti/authorize", response_class=HTMLResponse)
def lti_authorize_post(
    fields: FieldsDep, session: SessionDep, settings: SettingsDep, database: DatabaseDep, keys: PlatformKeysDep
) -> HTMLResponse:
    """The same authentication request, sent as a form POST."""
    return _authorize(fields, session, settings, database, keys)


@router.post("/lti/token", response_model=ServiceTokenRead)
def lti_token(fields: FieldsDep, session: SessionDep, settings: SettingsDep, key_sets: ToolKeySetsDep) -> JSONResponse:
    """Client credentials with a signed client assertion: an access token for the LTI Advantage services."""
    issued = tokens.issue_service_token(session, settings, key_sets, fields)
    body = ServiceTokenRead(access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope)
    return JSONResponse(body.model_dump(), headers=_NO_STORE)


@router.get(
    "/lti/nrps/{deployment_id}/contexts/{context_id}/memberships",
    response_model=NrpsMembershipContainer,
    responses={200: {"content": {NRPS_MEDIA_TYPE: {}}}},
)
def context_memberships(
    deployment_id: str,
    context_id: str,
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
    role: Annotated[str | None, Query(max_length=200, description="Only members with this LIS role")] = None,
    limit: Annotated[int | None, Query(ge=1, le=nrps.MAX_LIMIT, description="Members per page")] = None,
    offset: Annotated[int, Query(ge=0, le=100_000, description="Members to skip")] = 0,
) -> Response:
    """Names and Role Provisioning 2.0: the class's members, for a tool installed at its school."""
    caller = tokens.service_caller(session, authorization, scope=service.NRPS_SCOPE)
    page = nrps.memberships(session, settings, caller, deployment_id, context_id, role=role, limit=limit, offset=offset)
    if page.learners:
        nrps.audit_pupils_read(session, caller, deployment_id, context_id, page)
    headers = dict(_NO_STORE)
    if page.next_url:
        headers["Link"] = f'<{page.next_url}>; rel="next"'
    return Response(page.container.model_dump_json(exclude_none=True), media_type=NRPS_MEDIA_TYPE, headers=headers)
