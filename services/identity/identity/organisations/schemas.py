from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contracts.events.identity import OrganisationKind, SchoolType


class OrganisationCreate(BaseModel):
    """A district under a city, or a school under a district."""

    model_config = ConfigDict(extra="forbid")

    kind: OrganisationKind
    name: str = Field(min_length=2, max_length=100, examples=["思明区"])
    parent_id: str = Field(description="The city (for a district) or district (for a school)")
    school_code: str | None = Field(default=None, description="学校标识码, 10 digits; required for schools")
    school_type: SchoolType | None = Field(default=None, description="Required for schools")


class OrganisationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=2, max_length=100)
    school_type: SchoolType | None = None


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    parent_id: str | None
    kind: OrganisationKind
    name: str
    path: str
    school_code: str | None
    school_type: SchoolType | None
    active: bool
    created_at: datetime
    updated_at: datetime
