"""What metering knows of the rest of the platform, projected from other services' events.

Apps, their price plans over time and their vendors' developers come from the app store; installations as time
spans (for "was it installed when it was used?"); organisations and the number of pupils and teachers per school
from identity. Only ids and counts: no names of people, nothing about pupils but that they are pupils of a school.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

_TZ = sa.DateTime(timezone=True)


class MeteredVendor(SQLModel, table=True):
    __tablename__ = "metered_vendor"

    vendor_id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)


class VendorDeveloper(SQLModel, table=True):
    """A person who acts for a vendor in the app store, and so reads its usage and statements here."""

    __tablename__ = "vendor_developer"

    vendor_id: str = Field(primary_key=True, max_length=36)
    person_id: str = Field(primary_key=True, max_length=36, index=True)


class MeteredApp(SQLModel, table=True):
    __tablename__ = "metered_app"

    app_id: str = Field(primary_key=True, max_length=36)
    vendor_id: str = Field(max_length=36, index=True)
    name: str = Field(default="", max_length=200)
    client_id: str = Field(default="", max_length=100, index=True)
    status: str = Field(default="listed", max_length=16)  # listed | suspended | retired


class PricePlan(SQLModel, table=True):
    """An app's approved pricing plan from the moment it was published; the next plan ends it."""

    __tablename__ = "price_plan"
    __table_args__ = (sa.UniqueConstraint("app_id", "version_id"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: str = Field(max_length=36, index=True)
    version_id: str = Field(max_length=36)
    app_version: str = Field(default="", max_length=40)
    unit: str = Field(max_length=32)  # contracts.manifest.PricingUnit
    unit_price_fen: int
    monthly_cap_fen_per_school: int | None = None
    reported_unit_name: str | None = Field(default=None, max_length=120)
    effective_at: datetime = Field(sa_type=_TZ)


class InstallationSpan(SQLModel, table=True):
    """An app installed at a school from ``granted_at`` until ``removed_at`` (open while installed)."""

    __tablename__ = "installation_span"
    __table_args__ = (sa.Index("ix_installation_span_app_school", "app_id", "school_id"),)

    installation_id: str = Field(primary_key=True, max_length=36)
    app_id: str = Field(max_length=36)
    school_id: str = Field(max_length=36)
    granted_at: datetime = Field(sa_type=_TZ)
    removed_at: datetime | None = Field(default=None, sa_type=_TZ)


class MeteredOrganisation(SQLModel, table=True):
    """The city's organisation tree: a school's district is its nearest district ancestor."""

    __tablename__ = "metered_organisation"

    org_id: str = Field(primary_key=True, max_length=36)
    parent_id: str | None = Field(default=None, max_length=36)
    kind: str = Field(max_length=16)  # city | district | school | ...
    name: str = Field(max_length=200)
    path: str = Field(max_length=400, index=True)
    district_id: str | None = Field(default=None, max_length=36, index=True)


class PopulationMember(SQLModel, table=True):
    """One pupil or teacher of a school, counted for the benefit ranking's active-user rate (an id, no more)."""

    __tablename__ = "population_member"

    member_key: str = Field(primary_key=True, max_length=80)  # person:<id> for pupils, grant:<id> for teachers
    person_id: str = Field(max_length=36, index=True)
    school_id: str = Field(max_length=36, index=True)
    kind: str = Field(max_length=16)  # student | teacher
    active: bool = True
