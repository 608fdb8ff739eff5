"""Events published by the enrollment service (stream EDU_ENROLLMENT).

Admission events carry application ids, schools and counts, never a child's name or resident ID number;
roster events carry the person ids identity already published.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from contracts.events.base import EventPayload, registry

EnrollmentSource = Literal["admission", "directory"]
LeavingReason = Literal["transferred", "graduated", "withdrawn"]
MembershipReason = Literal["assigned", "balanced_assignment", "transfer", "left"]


class _EnrollmentEvent(EventPayload):
    service = "enrollment"


@registry.register
class AdmissionSeasonOpenedV1(_EnrollmentEvent):
    """A district opened an admission season to applications."""

    entity = "season"
    event = "opened"
    summary = "A district's admission season (入学季) opened to applications."

    season_id: str
    district_id: str
    title: str
    grade: str = Field(description="Entry grade (CEDS code: '01' primary, '07' junior secondary)")
    school_year: int
    opens_at: datetime
    closes_at: datetime
    school_ids: list[str]


@registry.register
class AdmissionDrawCommittedV1(_EnrollmentEvent):
    """The lottery seed's hash and the frozen input's digest were published before the draw."""

    entity = "draw"
    event = "committed"
    summary = (
        "Before the draw: the SHA-256 of the secret lottery seed and of the frozen, anonymised placement input were "
        "published, so neither can change afterwards."
    )

    season_id: str
    district_id: str
    seed_commitment: str = Field(description="Hex SHA-256 of the lottery seed")
    input_digest: str = Field(description="Hex SHA-256 of the canonical placement input")
    applicants: int
    committed_at: datetime


@registry.register
class AdmissionPlacementPublishedV1(_EnrollmentEvent):
    """A placement round's results were published; the seed is revealed so anyone can re-run the draw."""

    entity = "placement"
    event = "published"
    summary = (
        "A placement round was published: the committed seed is revealed with the witness's entropy; the lottery "
        "seed is HMAC-SHA256(seed, witness_entropy), so anyone can re-run the draw and compare the assignment "
        "digest. Round 1 is the draw; later rounds follow declined offers."
    )

    season_id: str
    district_id: str
    round: int
    seed: str = Field(description="The committed seed, revealed (hex); its SHA-256 is the published commitment")
    witness_entropy: str = Field(description="The supervising witness's contribution at the draw")
    assignment_digest: str
    placed: int
    unplaced: int
    published_at: datetime


@registry.register
class AdmissionOfferAcceptedV1(_EnrollmentEvent):
    """A family accepted the place their child was offered."""

    entity = "offer"
    event = "accepted"
    summary = "A family accepted a school place; the school expects the pupil."

    application_id: str
    season_id: str
    school_id: str
    grade: str


@registry.register
class StudentEnrolledV1(_EnrollmentEvent):
    """A pupil was enrolled at a school."""

    entity = "student"
    event = "enrolled"
    summary = "A pupil was enrolled at a school (from admission or from the directory)."

    enrollment_id: str
    student_id: str = Field(description="Identity's person id")
    school_id: str
    grade: str | None = Field(default=None, description="CEDS grade code; unknown for a pupil from the directory")
    source: EnrollmentSource
    start_date: date
    admission_application_id: str | None = None


@registry.register
class StudentLeftV1(_EnrollmentEvent):
    """A pupil's enrolment at a school ended."""

    entity = "student"
    event = "left"
    summary = "A pupil's enrolment at a school ended (transfer, graduation or withdrawal)."

    enrollment_id: str
    student_id: str
    school_id: str
    reason: LeavingReason
    end_date: date


@registry.register
class ClassChangedV1(_EnrollmentEvent):
    """A class was created or changed."""

    entity = "class"
    event = "changed"
    summary = "A class was created or changed (name, head teacher, teachers)."

    class_id: str
    school_id: str
    school_year_id: str
    grade: str
    name: str
    head_teacher_id: str | None = None
    teacher_ids: list[str] = Field(default_factory=list)


@registry.register
class ClassDeletedV1(_EnrollmentEvent):
    """A class was deleted; its membership history is kept."""

    entity = "class"
    event = "deleted"
    summary = "A class was deleted (its membership history is kept)."

    class_id: str
    school_id: str


@registry.register
class ClassMembershipChangedV1(_EnrollmentEvent):
    """A pupil joined, left or moved between classes."""

    entity = "membership"
    event = "changed"
    summary = "A pupil joined a class, left one, or moved between classes; the history is kept."

    student_id: str
    school_id: str
    from_class_id: str | None = None
    to_class_id: str | None = None
    effective_on: date
    reason: MembershipReason
