"""Tables of the launch sub-domain: launches, the LTI platform's signing keys, and LTI service credentials."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from appstore.vendors.models import new_id
from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class Launch(SQLModel, table=True):
    """One user opening one installed app. An LTI launch waits here, bound to its user, deployment and class,
    until the tool comes back with its one-time hints; an OIDC launch is complete when it is recorded."""

    __tablename__ = "app_launch"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = Field(max_length=16)  # oidc | lti_1p3
    app_id: str = Field(max_length=36, index=True)
    vendor_id: str = Field(max_length=36)
    client_id: str = Field(max_length=64)
    installation_id: str = Field(max_length=36, index=True)
    school_id: str = Field(max_length=36, index=True)
    person_id: str = Field(max_length=36)
    role: str = Field(max_length=32)  # teacher | student | school_admin
    class_id: str | None = Field(default=None, max_length=36)
    # The LTI context's label and title, as the class was when the launch began (no roster lookup at sign-in).
    context_label: str | None = Field(default=None, max_length=100)
    context_title: str | None = Field(default=None, max_length=200)
    target_link_uri: str = Field(sa_type=sa.Text)
    # SHA-256 of the opaque hints handed to the tool: a leaked table cannot be replayed.
    message_hint_hash: str | None = Field(default=None, max_length=64, unique=True)
    login_hint_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ)
    used_at: datetime | None = Field(default=None, sa_type=_TZ)


class PlatformKey(SQLModel, table=True):
    """An RSA key the LTI platform signs ID tokens with; every key not retired is published in the JWKS,
    so a new key can be introduced before the old one stops signing."""

    __tablename__ = "lti_platform_key"

    kid: str = Field(primary_key=True, max_length=64)
    private_key_cipher: str = Field(sa_type=sa.Text)  # PEM, AES-GCM encrypted with the service's key
    public_jwk: str = Field(sa_type=sa.Text)  # JSON
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    retired_at: datetime | None = Field(default=None, sa_type=_TZ)


class UsedToolAssertion(SQLModel, table=True):
    """A tool's client assertion already exchanged at the token endpoint (``jti`` replay protection)."""

    __tablename__ = "lti_used_assertion"

    key: str = Field(primary_key=True, max_length=64)  # SHA-256 of client_id|jti
    expires_at: datetime = Field(sa_type=_TZ, index=True)


class ServiceToken(SQLModel, table=True):
    """A short-lived access token a tool got for the LTI Advantage services; stored as a digest only."""

    __tablename__ = "lti_service_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    app_id: str = Field(max_length=36, index=True)
    client_id: str = Field(max_length=64)
    scope: str = Field(sa_type=sa.Text)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    expires_at: datetime = Field(sa_type=_TZ)
