"""Request and response bodies of admission."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Requirement = Literal["household_in_zone", "property_in_zone", "residence_permit_in_zone", "social_insurance"]
TieBreak = Literal["household_registered_on", "property_registered_on", "social_insurance_since"]
Relationship = Literal["father", "mother", "legal_guardian"]
ApplicationStatus = Literal["verifying", "verified", "needs_documents", "rejected", "withdrawn", "placed", "unplaced"]
VerificationKind = Literal["identity", "guardianship", "household", "property", "residence_permit", "social_insurance"]

ENTRY_GRADES = ("01", "07")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PriorityCategory(_Body):
    """One priority category; a child holds the first category (in the season's order) whose requirements all hold."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name_zh: str = Field(min_length=1, max_length=60)
    name_en: str | None = Field(default=None, max_length=100)
    requires: list[Requirement] = Field(min_length=1)
    social_insurance_months: int = Field(default=12, ge=1, le=240)
    tie_break: TieBreak | None = Field(
        default=None, description="Within the category, the earlier date ranks first (then the lottery)"
    )


class SeasonSchoolIn(_Body):
    school_id: str = Field(min_length=1, max_length=36)
    seats: int = Field(ge=0, le=100_000)
    open_to_all_zones: bool = False


class ZoneIn(_Body):
    name: str = Field(min_length=1, max_length=100)
    school_ids: list[str] = Field(min_length=1)
    address_prefixes: list[str] = Field(min_length=1, description="Roads or residential compounds in the zone")


class SeasonCreate(_Body):
    district_id: str = Field(min_length=1, max_length=36)
    title: str = Field(min_length=1, max_length=100)
    grade: Literal["01", "07"]
    school_year: int = Field(ge=2000, le=2100)
    opens_at: datetime
    closes_at: datetime
    birth_from: date
    birth_to: date
    max_choices: int = Field(default=5, ge=1, le=20)
    categories: list[PriorityCategory] = Field(min_length=1, max_length=20)
    schools: list[SeasonSchoolIn] = Field(min_length=1)
    zones: list[ZoneIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SeasonCreate:
        if self.opens_at.tzinfo is None or self.closes_at.tzinfo is None:
            raise ValueError("opens_at and closes_at need a time zone (e.g. 2026-05-10T09:00:00+08:00)")
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        if self.birth_to < self.birth_from:
            raise ValueError("birth_to must not be before birth_from")
        codes = [category.code for category in self.categories]
        if len(set(codes)) != len(codes):
            raise ValueError("category codes must be unique")
        schools = [school.school_id for school in self.schools]
        if len(set(schools)) != len(schools):
            raise ValueError("a school is listed twice")
        names = [zone.name for zone in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        for zone in self.zones:
            unknown = sorted(set(zone.school_ids) - set(schools))
            if unknown:
                raise ValueError(f"zone {zone.name!r} names schools that take no pupils this season: {unknown}")
        return self


class SeasonSchoolRead(BaseModel):
    school_id: str
    name: str
    seats: int
    open_to_all_zones: bool


class ZoneRead(BaseModel):
    id: str
    name: str
    school_ids: list[str]
    address_prefixes: list[str]


class SeasonRead(BaseModel):
    id: str
    district_id: str
    title: str
    grade: str
    school_year: int
    opens_at: datetime
    closes_at: datetime
    birth_from: date
    birth_to: date
    max_choices: int
    categories: list[PriorityCategory]
    status: str
    accepting_applications: bool
    schools: list[SeasonSchoolRead]
    zones: list[ZoneRead]
    seed_commitment: str | None
    input_digest: str | None


class ApplicationCreate(_Body):
    child_name: str = Field(min_length=1, max_length=64)
    child_id_number: str = Field(min_length=1, max_length=40, description="The child's resident ID number")
    household_number: str = Field(min_length=1, max_length=40, description="户号 of the child's household")
    address: str = Field(min_length=2, max_length=200, description="Where the family lives (户籍或房产地址)")
    applicant_id_number: str = Field(min_length=1, max_length=40, description="The applying parent's own ID number")
    relationship: Relationship
    choices: list[str] = Field(min_length=1, description="School ids, most preferred first")

    @field_validator("choices")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a school is chosen twice")
        return value


class ApplicationUpdate(_Body):
    """What a family may change before the deadline; omitted fields stay as they are."""

    address: str | None = Field(default=None, min_length=2, max_length=200)
    household_number: str | None = Field(default=None, min_length=1, max_length=40)
    applicant_id_number: str | None = Field(default=None, min_length=1, max_length=40)
    choices: list[str] | None = Field(default=None, min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a school is chosen twice")
        return value


class VerificationRead(BaseModel):
    kind: str
    status: str
    source: str | None
    checked_at: datetime | None
    attempts: int
    message: str


class DocumentRead(BaseModel):
    id: str
    kind: str
    filename: str
    size: int
    status: str
    review_note: str | None
    uploaded_at: datetime


class ApplicationRead(BaseModel):
    id: str
    season_id: str
    child_name: str
    child_id_number: str = Field(description="Masked")
    child_sex: str
    applicant_id_number: str = Field(description="Masked")
    relationship: str
    address: str
    zone: str | None
    choices: list[str]
    status: str
    status_message: str
    category: str | None
    lottery_number: str | None
    placed_school_id: str | None
    offer: str | None
    round: int | None
    version: int
    submitted_at: datetime
    updated_at: datetime
    verifications: list[VerificationRead]
    documents: list[DocumentRead]


class RevisionRead(BaseModel):
    version: int
    action: str
    changes: dict[str, object]
    actor_id: str | None
    at: datetime


class DocumentReview(_Body):
    decision: Literal["accept", "reject"]
    note: str | None = Field(default=None, max_length=300)
    facts: dict[str, str] = Field(
        default_factory=dict,
        description="What the accepted document establishes: address, registered_on (YYYY-MM-DD), months, ...",
    )


class SchoolPressure(BaseModel):
    school_id: str
    name: str
    seats: int
    first_choice: int
    any_choice: int
    ratio: float = Field(description="First-choice applicants per seat")
    level: Literal["green", "yellow", "red"]


class ZonePressure(BaseModel):
    zone_id: str
    name: str
    seats: int
    applicants: int
    ratio: float
    level: Literal["green", "yellow", "red"]


class PressureRead(BaseModel):
    season_id: str
    schools: list[SchoolPressure]
    zones: list[ZonePressure]


class ProgressRead(BaseModel):
    season_id: str
    applications: int
    by_status: dict[str, int]
    verifications_pending: int
    verified_facts: int
    documents_avoided: int
    documents_uploaded: int
    documents_avoided_per_family: float


class CommitRequest(_Body):
    include_unsettled: bool = Field(
        default=False,
        description="Commit although some applications are still being verified (they are left out of the draw)",
    )


class DrawRequest(_Body):
    witness_entropy: str = Field(
        min_length=6,
        max_length=200,
        description="Chosen at the draw by its supervising witness (a notary): e.g. digits read from dice or a "
        "number announced in public; nobody knew it when the seed was committed, so the seed cannot be chosen",
    )


class RoundRead(BaseModel):
    round: int
    assignment_digest: str
    placed: int
    unplaced: int
    moved: int
    declined: list[str]
    published_at: datetime


class DrawRead(BaseModel):
    season_id: str
    status: str
    seed_commitment: str | None
    input_digest: str | None
    committed_at: datetime | None
    seed: str | None = Field(description="The committed seed, revealed after the draw (its SHA-256 is the commitment)")
    witness_entropy: str | None = Field(description="What the supervising witness contributed at the draw")
    lottery_seed: str | None = Field(
        description="HMAC-SHA256(seed, witness_entropy): the seed the lottery numbers were drawn from"
    )
    drawn_at: datetime | None
    rounds: list[RoundRead]
    verify_command: str
