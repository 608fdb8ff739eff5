"""Token signing keys: published before they sign, kept published until their tokens expire."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from identity.organisations.models import utcnow


class SigningKey(SQLModel, table=True):
    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=16)
    public_jwk: str = Field(sa_type=sa.Text)
    private_jwk_cipher: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    signs_from: datetime = Field(sa_type=sa.DateTime(timezone=True))
    retired_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    # After this moment no token it signed can still be valid, so it leaves the JWKS.
    unpublish_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
