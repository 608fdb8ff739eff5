"""Request and response shapes of launching apps and of the LTI Advantage services."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NRPS_MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"


class LaunchCreate(BaseModel):
    """Open an app the school installed, optionally from one of the school's classes."""

    model_config = ConfigDict(extra="forbid")

    installation_id: str = Field(min_length=1, max_length=36, description="The installation (LTI deployment)")
    class_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="The class the app is opened from (the LTI context); a pupil's own class when absent",
    )


class LaunchRead(BaseModel):
    """Where to send the user's browser: the app's login initiation URL with the launch's parameters."""

    launch_id: str
    kind: Literal["oidc", "lti_1p3"]
    url: str = Field(description="Open this URL in the user's browser (top-level window or a new tab)")
    expires_at: datetime | None = Field(
        default=None, description="An LTI launch must reach the platform's authorize endpoint before this"
    )


class ServiceTokenRead(BaseModel):
    """An access token for the LTI Advantage services (RFC 6749 §5.1)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token type name
    expires_in: int
    scope: str


class NrpsContext(BaseModel):
    id: str
    label: str
    title: str


class NrpsMember(BaseModel):
    status: Literal["Active", "Inactive", "Deleted"] = "Active"
    user_id: str = Field(description="The user's pairwise pseudonym at the app (the LTI and OIDC ``sub``)")
    roles: list[str]
    name: str | None = Field(default=None, description="Only when the school granted the app the names")


class NrpsMembershipContainer(BaseModel):
    id: str
    context: NrpsContext
    members: list[NrpsMember]
