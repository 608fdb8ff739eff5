"""OAuth clients, authorization codes, refresh-token families, issued access tokens and consents.

Secrets, codes and refresh tokens are stored only as SHA-256 digests: they are high-entropy random
strings, so a fast hash is enough and a leaked table grants nothing.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import new_id, utcnow

_TZ = sa.DateTime(timezone=True)


class OAuthClient(SQLModel, table=True):
    """A registered relying party: a platform application or a vendor's app from the app store."""

    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=64)
    client_name: str = Field(max_length=100)
    client_type: str = Field(max_length=16)  # public | confidential
    token_endpoint_auth_method: str = Field(
        max_length=32
    )  # none | client_secret_basic | client_secret_post | private_key_jwt
    client_secret_hash: str | None = Field(default=None, max_length=64)
    jwks: str | None = Field(default=None, sa_type=sa.Text)  # JSON JWK set for private_key_jwt
    redirect_uris: str = Field(default="[]", sa_type=sa.Text)  # JSON list, matched exactly
    post_logout_redirect_uris: str = Field(default="[]", sa_type=sa.Text)
    grant_types: str = Field(default="[]", sa_type=sa.Text)
    scope: str = Field(default="", sa_type=sa.Text)  # the scopes the client may ever be granted
    # Third-party clients get pairwise subject identifiers (OIDC Core 8.1), keyed by this sector.
    subject_type: str = Field(default="pairwise", max_length=16)  # public | pairwise
    sector_identifier: str = Field(max_length=255)
    # First-party platform applications act for the user without a consent screen.
    first_party: bool = False
    app_id: str | None = Field(default=None, max_length=64, index=True)  # the app store's app, for vendor apps
    owner_org_id: str | None = Field(default=None, max_length=36)
    active: bool = True
    registered_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class AuthorizationCode(SQLModel, table=True):
    """A single-use, short-lived code; its ``grant_id`` ties together everything redeemed from it."""

    __tablename__ = "oauth_authorization_code"

    code_hash: str = Field(primary_key=True, max_length=64)
    grant_id: str = Field(default_factory=new_id, max_length=36, unique=True)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64, index=True)
    person_id: str = Field(foreign_key="person.id", max_length=36, index=True)
    redirect_uri: str = Field(sa_type=sa.Text)
    scope: str = Field(sa_type=sa.Text)
    nonce: str | None = Field(default=None, max_length=255)
    code_challenge: str | None = Field(default=None, max_length=128)
    code_challenge_method: str | None = Field(default=None, max_length=8)
    auth_time: int
    amr: str = Field(default="[]", max_length=100)  # JSON list (RFC 8176)
    browser_session_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ)
    used_at: datetime | None = Field(default=None, sa_type=_TZ)


class RefreshToken(SQLModel, table=True):
    """One link of a rotation chain; a family shares ``grant_id`` from the code that started it."""

    __tablename__ = "oauth_refresh_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    grant_id: str = Field(max_length=36, index=True)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64, index=True)
    person_id: str = Field(foreign_key="person.id", max_length=36, index=True)
    scope: str = Field(sa_type=sa.Text)
    auth_time: int
    amr: str = Field(default="[]", max_length=100)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ)
    rotated_at: datetime | None = Field(default=None, sa_type=_TZ)  # exchanged for its successor
    revoked_at: datetime | None = Field(default=None, sa_type=_TZ)


class IssuedAccessToken(SQLModel, table=True):
    """Every JWT access token issued, by ``jti``: what revocation and introspection consult."""

    __tablename__ = "oauth_access_token"

    jti: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=64)
    person_id: str | None = Field(default=None, max_length=36, index=True)
    grant_id: str | None = Field(default=None, max_length=36, index=True)
    scope: str = Field(sa_type=sa.Text)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ, index=True)
    revoked_at: datetime | None = Field(default=None, sa_type=_TZ)
    revocation_reason: str | None = Field(default=None, max_length=32)


class PairwiseSubject(SQLModel, table=True):
    """The pairwise ``sub`` a sector knows a person by, so userinfo can find the person again."""

    __tablename__ = "oauth_pairwise_subject"
    __table_args__ = (sa.UniqueConstraint("sector_identifier", "person_id"),)

    subject: str = Field(primary_key=True, max_length=64)
    sector_identifier: str = Field(max_length=255)
    person_id: str = Field(foreign_key="person.id", max_length=36, index=True)


class Consent(SQLModel, table=True):
    """Scopes a person (or, for a child under 14, a guardian) agreed to release to a client."""

    __tablename__ = "oauth_consent"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    person_id: str = Field(foreign_key="person.id", max_length=36, index=True)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64, index=True)
    scope: str = Field(sa_type=sa.Text)
    granted_by: str = Field(max_length=36)  # the person themself, or the guardian who consented
    granted_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    withdrawn_at: datetime | None = Field(default=None, sa_type=_TZ)
    withdrawn_by: str | None = Field(default=None, max_length=36)


class GuardianConsentRequest(SQLModel, table=True):
    """A child's app asked for personal scopes; a guardian decides on their account page."""

    __tablename__ = "oauth_guardian_consent_request"
    __table_args__ = (sa.UniqueConstraint("student_id", "client_id", "scope"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    student_id: str = Field(foreign_key="person.id", max_length=36, index=True)
    client_id: str = Field(foreign_key="oauth_client.client_id", max_length=64)
    scope: str = Field(sa_type=sa.Text)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    decided_at: datetime | None = Field(default=None, sa_type=_TZ)
    decided_by: str | None = Field(default=None, max_length=36)
    decision: str | None = Field(default=None, max_length=16)  # approved | declined


class UsedClientAssertion(SQLModel, table=True):
    """``jti``s of private_key_jwt client assertions already used, so a captured one cannot be replayed."""

    __tablename__ = "oauth_used_client_assertion"

    key: str = Field(primary_key=True, max_length=64)  # sha256 of client_id and jti
    expires_at: datetime = Field(sa_type=_TZ, index=True)
