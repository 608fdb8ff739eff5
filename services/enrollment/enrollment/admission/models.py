"""Tables of admission: seasons, seats, attendance zones, applications and their history, verifications,
supporting documents and placement rounds."""

from __future__ import annotations

from datetime import date, datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow


def new_id() -> str:
    return str(uuid4())


class AdmissionSeason(SQLModel, table=True):
    """One district's admission to one entry grade for one school year (e.g. 2026 primary grade 1)."""

    __tablename__ = "admission_season"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    district_id: str = Field(index=True, max_length=36)
    district_path: str = Field(max_length=200)
    title: str = Field(max_length=100)
    grade: str = Field(max_length=2)  # entry grade, CEDS code: "01" primary, "07" junior secondary
    school_year: int
    opens_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    closes_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    # The admission age: children born in this window may apply (e.g. 2019-09-01 .. 2020-08-31 for 2026).
    birth_from: date
    birth_to: date
    max_choices: int = 5
    categories: str = Field(sa_type=sa.Text)  # JSON: ordered priority categories, strongest first
    status: str = Field(default="draft", max_length=16)  # draft | open | committed | drawn
    seed_commitment: str | None = Field(default=None, max_length=64)
    input_digest: str | None = Field(default=None, max_length=64)
    seed_cipher: str | None = Field(default=None, max_length=200)  # secret until the draw
    seed: str | None = Field(default=None, max_length=64)  # revealed after the draw
    witness_entropy: str | None = Field(default=None, max_length=200)  # the notary's contribution at the draw
    draw_input: str | None = Field(default=None, sa_type=sa.Text)  # the published, anonymised placement input
    committed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    drawn_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    created_by: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class SeasonSchool(SQLModel, table=True):
    """A school taking new pupils in a season, with its seats (学位) for the entry grade."""

    __tablename__ = "season_school"
    __table_args__ = (sa.UniqueConstraint("season_id", "school_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    season_id: str = Field(foreign_key="admission_season.id", index=True, max_length=36)
    school_id: str = Field(max_length=36)
    name: str = Field(max_length=100)
    seats: int
    # Schools that also take children from outside their zones (private schools under 公民同招, or a school
    # with seats to spare); such children rank below every in-zone category.
    open_to_all_zones: bool = False


class AttendanceZone(SQLModel, table=True):
    """An attendance zone (学区): addresses that belong to one school, or to several (多校划片)."""

    __tablename__ = "attendance_zone"
    __table_args__ = (sa.UniqueConstraint("season_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    season_id: str = Field(foreign_key="admission_season.id", index=True, max_length=36)
    name: str = Field(max_length=100)
    school_ids: str = Field(sa_type=sa.Text)  # JSON list
    address_prefixes: str = Field(sa_type=sa.Text)  # JSON list of normalised address prefixes (roads, compounds)


class Application(SQLModel, table=True):
    """A family's application for a child: one per child per season, edited until the deadline."""

    __tablename__ = "admission_application"
    __table_args__ = (sa.UniqueConstraint("season_id", "child_id_hash"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    season_id: str = Field(foreign_key="admission_season.id", index=True, max_length=36)
    applicant_person_id: str = Field(index=True, max_length=36)
    applicant_relationship: str = Field(max_length=16)  # father | mother | legal_guardian
    applicant_id_cipher: str = Field(max_length=200)
    applicant_id_masked: str = Field(max_length=18)
    child_name: str = Field(max_length=64)
    child_id_hash: str = Field(max_length=64, index=True)
    child_id_cipher: str = Field(max_length=200)
    child_id_masked: str = Field(max_length=18)
    child_sex: str = Field(max_length=8)
    child_birth_date: date
    household_number_cipher: str = Field(max_length=200)
    address: str = Field(max_length=200)
    zone_id: str | None = Field(default=None, max_length=36)
    choices: str = Field(sa_type=sa.Text)  # JSON list of school ids, most preferred first
    # submitted → verifying → verified | needs_documents | rejected; then placed | unplaced; withdrawn any time before
    status: str = Field(default="verifying", max_length=24, index=True)
    status_reason: str | None = Field(default=None, max_length=300)
    priorities: str | None = Field(default=None, sa_type=sa.Text)  # JSON: school id → [category rank, tie-break]
    category: str | None = Field(default=None, max_length=32)  # the strongest category the child holds anywhere
    lottery_number: str | None = Field(default=None, max_length=20)
    placed_school_id: str | None = Field(default=None, max_length=36)
    offer: str | None = Field(default=None, max_length=16)  # offered | accepted | declined
    round: int | None = None
    version: int = 1
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class ApplicationRevision(SQLModel, table=True):
    """Every change to an application, kept: who changed what, when, from where."""

    __tablename__ = "admission_application_revision"

    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(foreign_key="admission_application.id", index=True, max_length=36)
    version: int
    action: str = Field(max_length=32)  # submitted | edited | withdrawn | verified | placed | accepted | declined ...
    changes: str = Field(sa_type=sa.Text)  # JSON: field → [before, after]; identifiers masked
    actor_id: str | None = Field(default=None, max_length=36)
    at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class Verification(SQLModel, table=True):
    """One fact checked through the city's data-sharing platform (or, failing that, by a reviewed document)."""

    __tablename__ = "admission_verification"
    __table_args__ = (sa.UniqueConstraint("application_id", "kind"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    application_id: str = Field(foreign_key="admission_application.id", index=True, max_length=36)
    kind: str = Field(
        max_length=24
    )  # identity | guardianship | household | property | residence_permit | social_insurance
    status: str = Field(default="pending", max_length=16, index=True)  # pending | verified | not_found | document
    source: str | None = Field(default=None, max_length=64)
    reference: str | None = Field(default=None, max_length=100)
    checked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    facts: str = Field(default="{}", sa_type=sa.Text)  # JSON: only what priority needs (address, dates, months)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True), index=True)
    last_error: str | None = Field(default=None, max_length=300)


class SupportingDocument(SQLModel, table=True):
    """A document a family uploaded for a fact the platform could not verify; reviewed by the district."""

    __tablename__ = "admission_document"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    application_id: str = Field(foreign_key="admission_application.id", index=True, max_length=36)
    kind: str = Field(max_length=24)
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_type=sa.LargeBinary)
    facts: str = Field(default="{}", sa_type=sa.Text)  # what the family states the document shows
    status: str = Field(default="submitted", max_length=16)  # submitted | accepted | rejected
    review_note: str | None = Field(default=None, max_length=300)
    reviewed_by: str | None = Field(default=None, max_length=36)
    reviewed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


class PlacementRound(SQLModel, table=True):
    """A published placement: round 1 is the draw, later rounds re-run it without the children who declined."""

    __tablename__ = "admission_placement_round"
    __table_args__ = (sa.UniqueConstraint("season_id", "round"),)

    id: int | None = Field(default=None, primary_key=True)
    season_id: str = Field(foreign_key="admission_season.id", index=True, max_length=36)
    round: int
    declined: str = Field(default="[]", sa_type=sa.Text)  # JSON list of application ids left out
    assignment_digest: str = Field(max_length=64)
    placed: int
    unplaced: int
    moved: int = 0
    published_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
