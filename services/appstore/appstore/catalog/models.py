"""Tables of the catalog: one denormalised, searchable row per published app, and schools' ratings.

Search reads only ``catalog_entry``: what a listing shows (the data an app gets and why, its price) is precomputed
into ``card`` when a version is published or the app's status changes, so a query never parses a manifest.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class CatalogEntry(SQLModel, table=True):
    __tablename__ = "catalog_entry"
    __table_args__ = (sa.Index("ix_catalog_entry_listed_published", "listed", "published_at"),)

    app_id: str = Field(foreign_key="app.id", primary_key=True, max_length=36)
    vendor_id: str = Field(max_length=36, index=True)
    version_id: str = Field(max_length=36)
    listed: bool = Field(default=False)
    name_zh: str = Field(max_length=60)
    # Lower-cased text searched by keywords: the name (ranked first), the summary, then description and vendor.
    name_text: str = Field(sa_type=sa.Text)
    summary_text: str = Field(sa_type=sa.Text)
    body_text: str = Field(sa_type=sa.Text)
    search_text: str = Field(sa_type=sa.Text)  # all of the above, for the keyword filter
    category: str = Field(max_length=24, index=True)
    grade_bands: str = Field(max_length=120)  # " junior senior ": space-delimited for a LIKE '% junior %' filter
    subjects: str = Field(max_length=400)
    pricing_unit: str = Field(max_length=24)
    unit_price_fen: int
    rating_count: int = 0
    rating_sum: int = 0
    rating_average: float = Field(default=0.0, index=True)
    published_at: datetime = Field(sa_type=_TZ)
    card: str = Field(sa_type=sa.Text)  # JSON of the listing item, ratings excepted
    detail: str = Field(sa_type=sa.Text)  # JSON of what the detail page adds


class AppRating(SQLModel, table=True):
    """A school staff member's rating of an app their school installed; one per person per app."""

    __tablename__ = "app_rating"

    app_id: str = Field(foreign_key="app.id", primary_key=True, max_length=36)
    person_id: str = Field(primary_key=True, max_length=36)
    school_id: str = Field(max_length=36, index=True)
    stars: int
    comment: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
