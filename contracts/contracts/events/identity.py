"""Events published by the identity service (stream EDU_IDENTITY).

Payloads carry ids and the facts consumers need; personal identifiers of minors (resident ID
number, birth date) never travel on the bus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.events.base import EventPayload, registry

OrganisationKind = Literal["city", "district", "school"]
SchoolType = Literal["primary", "junior", "senior", "nine_year", "twelve_year", "kindergarten", "vocational"]
PersonKind = Literal["staff", "student", "guardian"]
RoleName = Literal[
    "city_admin",
    "district_admin",
    "school_admin",
    "teacher",
    "student",
    "parent",
    "auditor",
    "vendor_developer",
]
GuardianRelationship = Literal["father", "mother", "grandparent", "other_relative", "legal_guardian"]


class _IdentityEvent(EventPayload):
    service = "identity"


@registry.register
class OrganisationCreatedV1(_IdentityEvent):
    """An organisation (city, district or school) was added to the tree."""

    entity = "organisation"
    event = "created"
    summary = "An organisation was added to the city → district → school tree."

    org_id: str
    parent_id: str | None
    kind: OrganisationKind
    name: str
    path: str = Field(description="Ancestor ids from the root, '/'-separated, ending with org_id")
    school_code: str | None = Field(default=None, description="National school code (学校标识码), 10 digits")
    school_type: SchoolType | None = None


@registry.register
class OrganisationUpdatedV1(_IdentityEvent):
    """An organisation's name, type or status changed."""

    entity = "organisation"
    event = "updated"
    summary = "An organisation's name, school type or active status changed."

    org_id: str
    name: str
    school_type: SchoolType | None = None
    active: bool
    changed: list[str] = Field(description="Names of the fields that changed")


@registry.register
class PersonCreatedV1(_IdentityEvent):
    """A person account was created."""

    entity = "person"
    event = "created"
    summary = "A person (staff, student or guardian) got an account."

    person_id: str
    kind: PersonKind
    name: str
    org_id: str | None = Field(default=None, description="School of a student, home organisation of staff")
    student_number: str | None = Field(default=None, description="National student number (学籍号)")
    sex: Literal["male", "female"] | None = None


@registry.register
class PersonUpdatedV1(_IdentityEvent):
    """A person's directory record changed."""

    entity = "person"
    event = "updated"
    summary = "A person's name, school or other directory fields changed."

    person_id: str
    name: str
    org_id: str | None = None
    changed: list[str] = Field(description="Names of the fields that changed (never their sensitive values)")


@registry.register
class PersonDeactivatedV1(_IdentityEvent):
    """A person was deactivated; accounts are never hard-deleted."""

    entity = "person"
    event = "deactivated"
    summary = "A person's account was deactivated (never deleted)."

    person_id: str
    reason: str | None = None


@registry.register
class RoleGrantedV1(_IdentityEvent):
    """A person was given a role within an organisation."""

    entity = "role"
    event = "granted"
    summary = "A person was given a role within an organisation."

    grant_id: str
    person_id: str
    role: RoleName
    org_id: str
    org_path: str


@registry.register
class RoleRevokedV1(_IdentityEvent):
    """A role grant was withdrawn."""

    entity = "role"
    event = "revoked"
    summary = "A role grant was withdrawn."

    grant_id: str
    person_id: str
    role: RoleName
    org_id: str


@registry.register
class GuardianLinkedV1(_IdentityEvent):
    """A guardian was linked to a student."""

    entity = "guardian"
    event = "linked"
    summary = "A guardian was linked to a student with a stated relationship."

    link_id: str
    guardian_id: str
    student_id: str
    relationship: GuardianRelationship


RevocationReason = Literal[
    "client_request",  # RFC 7009 revocation by the client
    "refresh_token_reuse",  # a rotated refresh token was presented again: the whole family is revoked
    "authorization_code_reuse",  # a code was redeemed twice: what the first redemption issued is revoked
    "consent_withdrawn",
    "account_deactivated",
    "client_disabled",
    "logout",
    "app_uninstalled",  # the school uninstalled the app: its tokens for the school's people end
    "app_suspended",  # the city suspended or retired the app: every token of its client ends
]


@registry.register
class AccessTokensRevokedV1(_IdentityEvent):
    """Access tokens were revoked before they expired; resource servers refuse them from now on."""

    entity = "token"
    event = "revoked"
    summary = (
        "Access tokens (by jti) were revoked before expiry; the gateway refuses them until `expires_at`, after which "
        "they are invalid anyway."
    )

    jtis: list[str] = Field(min_length=1, description="The `jti` claims of the revoked access tokens")
    client_id: str
    sub: str | None = Field(default=None, description="The tokens' `sub`, when they were issued to a person")
    reason: RevocationReason
    expires_at: int = Field(description="Latest `exp` among the revoked tokens (seconds since the epoch)")
