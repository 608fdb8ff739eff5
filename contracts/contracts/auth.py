"""Claims of the platform's RFC 9068 JWT access tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.events.identity import RoleName

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


class RoleClaim(BaseModel):
    """One role the token may act in, with the organisation it applies to and that org's path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: RoleName
    org_id: str
    org_path: str = Field(description="Ancestor ids from the root, '/'-separated, ending with org_id")


class AccessTokenClaims(BaseModel):
    """RFC 9068 claims plus the roles (with organisation scope) the token may act for."""

    model_config = ConfigDict(extra="allow")

    iss: str
    sub: str
    aud: str | list[str]
    exp: int
    iat: int
    jti: str
    client_id: str
    scope: str = ""
    roles: list[RoleClaim] = Field(default_factory=list)
    app_id: str | None = Field(
        default=None,
        description="Present only on tokens of a vendor's app: the app store's app (or the client id when the "
        "client was registered outside the app store). The gateway confines such tokens to the schools that "
        "installed the app.",
    )
