"""Portal sign-in sessions: the browser holds a random token, the database only its keyed hash."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class PortalSession(SQLModel, table=True):
    """A person signed in to the portal, with the access token identity issued for them (encrypted)."""

    __tablename__ = "portal_session"

    id: str = Field(primary_key=True, max_length=64, description="Keyed hash of the cookie's token")
    person_id: str = Field(max_length=36, index=True)
    access_token_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
