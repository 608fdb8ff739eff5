"""Request-scoped dependencies shared by the identity routers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from identity.config import IdentitySettings
from identity.oauth.models import IssuedAccessToken
from kit.auth import REALM, CurrentPrincipal, Principal
from kit.crypto import FieldCipher
from kit.db import Database
from kit.errors import Unauthenticated


@dataclass(frozen=True)
class Actor:
    """The authenticated caller plus where the call came from, as the audit log records it."""

    principal: Principal
    source_ip: str | None
    request_id: str | None

    @property
    def person_id(self) -> str:
        return self.principal.subject

    @property
    def client_id(self) -> str:
        return self.principal.client_id


@dataclass(frozen=True)
class Origin:
    """Who acts and from where when there is no access token yet: a login page, a token request."""

    person_id: str | None
    client_id: str | None
    source_ip: str | None
    request_id: str | None


def origin_of(request: Request, *, person_id: str | None = None, client_id: str | None = None) -> Origin:
    """The audit identity of an unauthenticated (or browser-session) request."""
    return Origin(
        person_id=person_id,
        client_id=client_id,
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


def _revoked(request: Request, token_id: str) -> bool:
    """Identity issued the token, so it honours its own revocations at once (others learn by event)."""
    database: Database = request.app.state.database
    with database.read_session() as session:
        row = session.get(IssuedAccessToken, token_id)
        return row is not None and row.revoked_at is not None


def current_actor(request: Request, principal: CurrentPrincipal) -> Actor:
    if _revoked(request, principal.token_id):
        raise Unauthenticated(
            "The access token has been revoked; obtain a new one.",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )
    actor = Actor(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        # The id the telemetry middleware vetted and echoes in X-Request-Id (a client's own, when sane).
        request_id=getattr(request.state, "request_id", None),
    )
    request.state.actor = actor  # for auditing refusals after the request's transaction rolled back
    return actor


def get_settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


def get_cipher(request: Request) -> FieldCipher:
    cipher: FieldCipher = request.app.state.cipher
    return cipher


ActorDep = Annotated[Actor, Depends(current_actor)]
SettingsDep = Annotated[IdentitySettings, Depends(get_settings)]
CipherDep = Annotated[FieldCipher, Depends(get_cipher)]
