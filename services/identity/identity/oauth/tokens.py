"""Issuing, rotating, revoking and introspecting the provider's tokens.

Access tokens are RFC 9068 JWTs signed with the current platform key; each ``jti`` is recorded so it
can be revoked before it expires (and the revocation announced on the bus for the gateway).
Refresh tokens are opaque, rotate on every use, and belong to a family (``grant_id``): presenting a
rotated one again means it was stolen, so the whole family and its access tokens are revoked.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlmodel import Session, col, select

from contracts.auth import RoleClaim
from contracts.events.identity import AccessTokensRevokedV1, RevocationReason
from identity.config import IdentitySettings
from identity.keys import service as keys
from identity.oauth.models import AuthorizationCode, IssuedAccessToken, OAuthClient, RefreshToken, UsedClientAssertion
from identity.organisations import service as organisations
from identity.people import service as people
from kit.outbox import emit


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def roles_for(session: Session, person_id: str) -> list[RoleClaim]:
    """The roles (with organisation scope) a person's token may act for."""
    claims = []
    for grant in people.roles_of(session, person_id):
        if grant.active:
            path = organisations.get(session, grant.org_id).path
            claims.append(RoleClaim(role=grant.role, org_id=grant.org_id, org_path=path))
    return claims


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    jti: str
    expires_in: int
    subject: str


def issue_access_token(
    session: Session,
    settings: IdentitySettings,
    *,
    client: OAuthClient,
    subject: str,
    person_id: str | None,
    scope: str,
    grant_id: str | None,
    auth_time: int | None = None,
    amr: list[str] | None = None,
    store: Callable[[IssuedAccessToken], object] | None = None,
) -> IssuedToken:
    """Sign an access token for ``client`` and record its ``jti`` (in ``session``, or through ``store``)."""
    roles = roles_for(session, person_id) if person_id else []
    extra: dict[str, Any] = {}
    if auth_time is not None:
        extra["auth_time"] = auth_time
    if amr:
        extra["amr"] = amr
    if not client.first_party:
        # Marks a vendor's app for the gateway, which confines such tokens to the schools that installed it.
        extra["app_id"] = client.app_id or client.client_id
    jti = str(uuid.uuid4())
    ttl = settings.access_token_ttl_seconds
    token = keys.issue_access_token(
        session,
        settings,
        subject=subject,
        client_id=client.client_id,
        scopes=scope.split(),
        roles=roles,
        ttl_seconds=ttl,
        extra_claims={"jti": jti, **extra},
    )
    now = datetime.now(UTC)
    row = IssuedAccessToken(
        jti=jti,
        client_id=client.client_id,
        subject=subject,
        person_id=person_id,
        grant_id=grant_id,
        scope=scope,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    (store or session.add)(row)
    return IssuedToken(access_token=token, jti=jti, expires_in=ttl, subject=subject)


def new_refresh_token(
    session: Session,
    settings: IdentitySettings,
    *,
    client_id: str,
    person_id: str,
    scope: str,
    grant_id: str,
    auth_time: int,
    amr: list[str],
) -> str:
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        RefreshToken(
            token_hash=digest(token),
            grant_id=grant_id,
            client_id=client_id,
            person_id=person_id,
            scope=scope,
            auth_time=auth_time,
            amr=json.dumps(amr),
            issued_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    return token


def find_refresh_token(session: Session, token: str) -> RefreshToken | None:
    return session.get(RefreshToken, digest(token))


# ------------------------------------------------------------------------------------------ revoking


def _revoke_access_tokens(
    session: Session, rows: list[IssuedAccessToken], *, reason: RevocationReason, client_id: str
) -> int:
    now = datetime.now(UTC)
    live = [row for row in rows if row.revoked_at is None and as_utc(row.expires_at) > now]
    for row in live:
        row.revoked_at = now
        row.revocation_reason = reason
        session.add(row)
    if live:
        subjects = {row.subject for row in live}
        emit(
            session,
            AccessTokensRevokedV1(
                jtis=[row.jti for row in live],
                client_id=client_id,
                sub=subjects.pop() if len(subjects) == 1 else None,
                reason=reason,
                expires_at=int(max(as_utc(row.expires_at) for row in live).timestamp()),
            ),
            subject_id=client_id,
        )
    return len(live)


def revoke_access_token(session: Session, row: IssuedAccessToken, *, reason: RevocationReason) -> int:
    return _revoke_access_tokens(session, [row], reason=reason, client_id=row.client_id)


def revoke_grant(session: Session, grant_id: str, *, reason: RevocationReason) -> int:
    """Revoke a whole family: every refresh token and access token descended from one authorization."""
    now = datetime.now(UTC)
    refresh_rows = session.exec(
        select(RefreshToken).where(RefreshToken.grant_id == grant_id, col(RefreshToken.revoked_at).is_(None))
    ).all()
    for row in refresh_rows:
        row.revoked_at = now
        session.add(row)
    access_rows = list(session.exec(select(IssuedAccessToken).where(IssuedAccessToken.grant_id == grant_id)).all())
    client_id = access_rows[0].client_id if access_rows else (refresh_rows[0].client_id if refresh_rows else "")
    return _revoke_access_tokens(session, access_rows, reason=reason, client_id=client_id)


def revoke_client_tokens(
    session: Session, client_id: str, *, reason: RevocationReason, person_id: str | None = None
) -> int:
    """Revoke every live token of a client (for one person, or for everyone)."""
    now = datetime.now(UTC)
    refresh_query = select(RefreshToken).where(
        RefreshToken.client_id == client_id, col(RefreshToken.revoked_at).is_(None)
    )
    access_query = select(IssuedAccessToken).where(
        IssuedAccessToken.client_id == client_id,
        col(IssuedAccessToken.revoked_at).is_(None),
        col(IssuedAccessToken.expires_at) > now,
    )
    if person_id is not None:
        refresh_query = refresh_query.where(RefreshToken.person_id == person_id)
        access_query = access_query.where(IssuedAccessToken.person_id == person_id)
    for row in session.exec(refresh_query).all():
        row.revoked_at = now
        session.add(row)
    return _revoke_access_tokens(session, list(session.exec(access_query).all()), reason=reason, client_id=client_id)


def revoke_person_tokens(session: Session, person_id: str, *, reason: RevocationReason) -> int:
    """Revoke everything issued to a person, across clients (deactivation)."""
    client_ids = session.exec(
        select(IssuedAccessToken.client_id).where(IssuedAccessToken.person_id == person_id).distinct()
    ).all()
    refresh_clients = session.exec(
        select(RefreshToken.client_id).where(RefreshToken.person_id == person_id).distinct()
    ).all()
    return sum(
        revoke_client_tokens(session, client_id, reason=reason, person_id=person_id)
        for client_id in sorted(set(client_ids) | set(refresh_clients))
    )


# ------------------------------------------------------------------------------------- introspection


@dataclass
class PresentedToken:
    """A token presented to introspection or revocation, whichever kind it turned out to be."""

    kind: str  # access_token | refresh_token
    client_id: str
    scope: str
    expires_at: int
    revoked: bool
    claims: dict[str, Any]
    access_row: IssuedAccessToken | None = None
    refresh_row: RefreshToken | None = None

    # The names authlib's introspection and revocation endpoints call.
    def is_expired(self) -> bool:
        return self.expires_at <= int(time.time())

    def is_revoked(self) -> bool:
        return self.revoked

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope


def read_access_token(session: Session, settings: IdentitySettings, token: str) -> PresentedToken | None:
    """A JWT access token this provider signed, with its revocation state; None if it is not one."""
    try:
        header = jws.extract_compact(token.encode()).headers() if token.count(".") == 2 else None
    except (JoseError, ValueError):
        return None
    if not header or header.get("alg") != keys.ALGORITHM or "kid" not in header:
        return None
    public_key = keys.public_key(session, str(header["kid"]))
    if public_key is None:
        return None
    try:
        decoded = jwt.decode(token, public_key, algorithms=[keys.ALGORITHM])
    except (JoseError, ValueError):
        return None
    claims = decoded.claims
    if claims.get("iss") != settings.token_issuer or not isinstance(claims.get("jti"), str):
        return None
    row = session.get(IssuedAccessToken, claims["jti"])
    return PresentedToken(
        kind="access_token",
        client_id=str(claims.get("client_id", "")),
        scope=str(claims.get("scope", "")),
        expires_at=int(claims.get("exp", 0)),
        revoked=row is None or row.revoked_at is not None,
        claims=claims,
        access_row=row,
    )


def read_refresh_token(session: Session, token: str) -> PresentedToken | None:
    row = find_refresh_token(session, token)
    if row is None:
        return None
    return PresentedToken(
        kind="refresh_token",
        client_id=row.client_id,
        scope=row.scope,
        expires_at=int(as_utc(row.expires_at).timestamp()),
        revoked=row.revoked_at is not None or row.rotated_at is not None,
        claims={},
        refresh_row=row,
    )


def purge_expired(session: Session, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete codes, tokens and client-assertion ids well past expiry; nothing about them matters any more.

    Access-token rows only serve revocation, which an expired token no longer needs; a refresh token's
    row serves reuse detection until it expires.
    """
    cutoff = datetime.now(UTC) - older_than
    deleted = 0
    for model, column in (
        (IssuedAccessToken, IssuedAccessToken.expires_at),
        (RefreshToken, RefreshToken.expires_at),
        (AuthorizationCode, AuthorizationCode.expires_at),
        (UsedClientAssertion, UsedClientAssertion.expires_at),
    ):
        result = session.execute(sa.delete(model).where(col(column) < cutoff))
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted
