"""Which schools installed which app, with the scopes each school granted, and the apps' web origins.

These tables are the gateway's own copy of what the app store decides: the app store drives them
with its ``InstallationGrantedV1`` and ``InstallationRemovedV1`` events, which
:mod:`gateway.installations.handlers` applies through the functions in :mod:`gateway.installations.service`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class AppInstallation(SQLModel, table=True):
    """An app's OAuth client installed at one school, with the scopes the school granted it."""

    __tablename__ = "app_installation"

    client_id: str = Field(primary_key=True, max_length=64)
    school_id: str = Field(primary_key=True, max_length=36)
    app_id: str = Field(max_length=64, index=True)
    scopes: str = Field(sa_type=sa.Text, description="Space-separated scopes the school granted")
    active: bool = True
    updated_at: datetime = Field(default_factory=_now, sa_type=sa.DateTime(timezone=True))


class AppOrigin(SQLModel, table=True):
    """A web origin an app's browser front end calls the API from (CORS)."""

    __tablename__ = "app_origin"

    client_id: str = Field(primary_key=True, max_length=64)
    origin: str = Field(primary_key=True, max_length=255)
