from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events.identity import GuardianRelationship, PersonKind, RoleName
from kit.identifiers import mask_student_number

Sex = Literal["male", "female"]


class PersonCreate(BaseModel):
    """A staff member, student or guardian; sensitive identifiers are stored encrypted."""

    model_config = ConfigDict(extra="forbid")

    kind: PersonKind
    name: str = Field(min_length=1, max_length=64, examples=["王雨桐"])
    org_id: str = Field(description="The school (students, teachers, guardians) or office the person belongs to")
    sex: Sex | None = None
    birth_date: date | None = None
    resident_id_number: str | None = Field(default=None, description="居民身份证号 (GB 11643), 18 characters")
    student_number: str | None = Field(default=None, description="全国学籍号: G/J/L + 18 characters")
    staff_number: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, description="Mainland mobile number, 11 digits")
    username: str | None = Field(default=None, min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class PersonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=64)
    org_id: str | None = None
    sex: Sex | None = None
    birth_date: date | None = None
    phone: str | None = None
    staff_number: str | None = Field(default=None, max_length=32)


class PersonDeactivate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=2, max_length=200, examples=["转学离校"])


class PersonRead(BaseModel):
    """A person as administrators see them: identifiers masked."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: PersonKind
    name: str
    sex: Sex | None
    birth_date: date | None
    org_id: str
    username: str | None
    student_number: str | None
    staff_number: str | None
    resident_id_masked: str | None
    phone_masked: str | None
    active: bool
    deactivation_reason: str | None
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="after")
    def _hide_embedded_resident_id(self) -> PersonRead:
        """A G student number is "G" + the resident ID number, so it is masked like the ID itself
        (also where it doubles as the login name); the full number needs GET /people/{id}/resident-id."""
        number = self.student_number
        if number is not None and number.startswith("G"):
            self.student_number = mask_student_number(number)
            if self.username == number:
                self.username = self.student_number
        return self


class ResidentIdReveal(BaseModel):
    person_id: str
    resident_id_number: str


class RoleGrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleName
    org_id: str


class RoleGrantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    person_id: str
    role: RoleName
    org_id: str
    active: bool
    granted_at: datetime
    revoked_at: datetime | None


class GuardianLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    guardian_id: str
    relationship: GuardianRelationship


class GuardianLinkRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    guardian_id: str
    student_id: str
    relationship: GuardianRelationship
    active: bool
    created_at: datetime


class InitialPassword(BaseModel):
    """A one-time initial password for an administrator to hand out; the person must change it at first login."""

    person_id: str
    username: str
    initial_password: str = Field(description="Shown once; it is stored only as an argon2id hash")
    must_change_password: bool = True
