"""Client registration (the internal API the app store calls; RFC 7591 field names) and consent views."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]


class ClientRegistration(BaseModel):
    """What the app store (or a platform operator) registers for an app."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{2,63}$", description="Chosen id; generated when absent"
    )
    client_name: str = Field(min_length=1, max_length=100)
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"  # noqa: S105 - a method name
    grant_types: list[GrantType] = Field(default=["authorization_code", "refresh_token"], min_length=1)
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    scope: str = Field(default="openid", max_length=1000, description="Space-separated scopes the client may request")
    jwks: dict[str, Any] | None = Field(default=None, description="Public JWK set, for private_key_jwt")
    subject_type: Literal["public", "pairwise"] = "pairwise"
    sector_identifier: str | None = Field(default=None, max_length=255)
    first_party: bool = Field(default=False, description="A platform application: no consent screen, public subject")
    app_id: str | None = Field(default=None, max_length=64)
    owner_org_id: str | None = Field(default=None, max_length=36)


class ClientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_name: str | None = Field(default=None, min_length=1, max_length=100)
    redirect_uris: list[str] | None = Field(default=None, max_length=20)
    post_logout_redirect_uris: list[str] | None = Field(default=None, max_length=20)
    scope: str | None = Field(default=None, max_length=1000)
    jwks: dict[str, Any] | None = None
    grant_types: list[GrantType] | None = Field(default=None, min_length=1)


class ClientRead(BaseModel):
    client_id: str
    client_name: str
    client_type: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scope: str
    subject_type: str
    first_party: bool
    app_id: str | None
    active: bool
    created_at: datetime


class ClientRegistered(ClientRead):
    client_secret: str | None = Field(default=None, description="Shown once; store it in the vendor's secret store")


class ClientSecretRotated(BaseModel):
    client_id: str
    client_secret: str
