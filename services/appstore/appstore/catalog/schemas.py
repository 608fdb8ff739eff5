"""API schemas of the catalog: what a school sees of an app, above all what data it gets and why."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SortOrder = Literal["relevance", "rating", "newest"]


class Labelled(BaseModel):
    id: str
    label: str


class Texts(BaseModel):
    zh_cn: str
    en: str | None = None


class PersonalFieldRead(BaseModel):
    id: str
    label_zh: str
    label_en: str


class ScopeAccess(BaseModel):
    """One scope the app asks for: why (the vendor's stated purpose), what it means, and what personal data it opens."""

    scope: str
    purpose: Texts
    description_zh: str = Field(description="The scope's description in the platform's scope catalogue")
    description_en: str
    personal_fields: list[PersonalFieldRead]
    sensitive: bool = Field(description="Releases personal information of minors")


class DataAccess(BaseModel):
    scopes: list[ScopeAccess]
    personal_fields: list[PersonalFieldRead] = Field(description="Every personal field the app may receive")
    guardian_consent_required_under_14: bool = Field(
        description="A guardian must consent before a child under 14 uses the app (PIPL Art. 31)"
    )
    data_retention_days: int = Field(description="Days the vendor keeps a school's data after the school uninstalls")


class Pricing(BaseModel):
    unit: str
    unit_label: str
    unit_price_fen: int
    unit_price_yuan: str = Field(description="The unit price in yuan, two decimals")
    monthly_cap_fen_per_school: int | None
    monthly_cap_yuan_per_school: str | None
    reported_unit_name: str | None = None


class Rating(BaseModel):
    average: float | None = Field(description="Average stars (1–5), None without ratings")
    count: int


class CatalogItem(BaseModel):
    app_id: str
    version: str
    name: Texts
    summary: Texts
    vendor: Labelled
    category: Labelled
    grade_bands: list[Labelled]
    subjects: list[Labelled]
    icon_url: str | None
    launch_type: str
    data_access: DataAccess
    pricing: Pricing
    rating: Rating
    published_at: datetime


class Support(BaseModel):
    email: str
    phone: str | None = None
    url: str | None = None


class RatingComment(BaseModel):
    stars: int
    comment: str
    updated_at: datetime


class CatalogDetail(CatalogItem):
    description: Texts
    screenshots: list[str]
    privacy_policy_url: str
    support: Support
    recent_comments: list[RatingComment]
    my_rating: int | None = Field(default=None, description="The caller's own stars, if they rated it")


class CatalogPage(BaseModel):
    items: list[CatalogItem]
    total: int
    limit: int
    offset: int


class RatingWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stars: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=500)


class RatingRead(BaseModel):
    app_id: str
    stars: int
    comment: str | None
    rating: Rating
