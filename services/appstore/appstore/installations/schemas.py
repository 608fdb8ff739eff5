"""Request and response bodies of installations, teachers' app requests and vendors' app credentials."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Grade = Literal["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]

_SCOPES_DESCRIPTION = "Scopes the school grants: among the app's requested scopes, including openid; default all"


class InstallationCreate(BaseModel):
    """What a school administrator grants an app when installing it."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1, max_length=36)
    scopes: list[str] | None = Field(default=None, max_length=20, description=_SCOPES_DESCRIPTION)
    grades: list[Grade] = Field(default_factory=list, max_length=12, description="CEDS grade codes; empty: all")
    class_ids: list[str] = Field(default_factory=list, max_length=200, description="Classes of the school; empty: all")


class InstallationUpdate(BaseModel):
    """A new grant: scopes, grades and classes, to the app's current published version."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=20, description=_SCOPES_DESCRIPTION)
    grades: list[Grade] = Field(default_factory=list, max_length=12)
    class_ids: list[str] = Field(default_factory=list, max_length=200)


class PersonalFieldRead(BaseModel):
    id: str
    label_zh: str
    label_en: str


class ScopeGrantRead(BaseModel):
    """One scope: what it allows, why the app asks for it, and which personal fields it releases."""

    scope: str
    description_zh: str
    description_en: str
    purpose_zh: str | None = Field(description="The app's stated purpose (from its manifest)")
    purpose_en: str | None = None
    personal_fields: list[PersonalFieldRead]
    sensitive: bool = Field(description="Releases minors' personal information: guardians consent for under-14s")


class InstallationRead(BaseModel):
    id: str = Field(description="The installation id, also the app's LTI deployment id at this school")
    app_id: str
    app_name: str
    app_version: str
    client_id: str
    school_id: str
    status: str
    scopes: list[ScopeGrantRead] = Field(description="What data the app gets and why")
    personal_fields: list[PersonalFieldRead] = Field(description="Every personal field the granted scopes release")
    grades: list[str]
    class_ids: list[str]
    needs_regrant: bool = Field(description="A newer published version asks for scopes the school has not granted")
    missing_scopes: list[ScopeGrantRead] = Field(description="Those scopes, with the app's purposes")
    installed_by: str
    installed_at: datetime
    updated_at: datetime
    removed_at: datetime | None = None
    removal_reason: str | None = None
    delete_data_by: date | None = Field(default=None, description="The vendor must delete the school's data by then")


class MyAppRead(BaseModel):
    """An app installed for the caller at one of their schools."""

    installation_id: str
    app_id: str
    school_id: str
    name: str
    summary: str
    category: str
    icon_url: str | None
    launch_type: str


class AppRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1, max_length=36)
    reason: str = Field(min_length=2, max_length=500, description="Why the teacher wants the app")


class AppRequestApprove(BaseModel):
    """Approve a teacher's request: install with all the app's requested scopes, or the ones chosen here."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=20, description=_SCOPES_DESCRIPTION)
    grades: list[Grade] = Field(default_factory=list, max_length=12)
    class_ids: list[str] = Field(default_factory=list, max_length=200)
    note: str | None = Field(default=None, max_length=500)


class AppRequestDecline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=2, max_length=500, description="Why, shown to the teacher")


class AppRequestRead(BaseModel):
    id: str
    app_id: str
    app_name: str
    school_id: str
    requested_by: str
    requested_by_name: str | None = Field(description="Shown to the school's administrators and the teacher only")
    reason: str
    status: str = Field(description="pending | approved | declined")
    requested_at: datetime
    decided_at: datetime | None
    decision_note: str | None
    installation_id: str | None


class AppCredentials(BaseModel):
    """The app's OAuth client credentials; the secret is shown once and replaces the previous one."""

    client_id: str
    client_secret: str
