"""HTTP routes of the catalog: school staff browse and search listed apps and rate the ones their school installed."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session, select

from appstore.catalog import service
from appstore.catalog.models import AppRating
from appstore.catalog.schemas import (
    CatalogDetail,
    CatalogItem,
    CatalogPage,
    RatingComment,
    RatingRead,
    RatingWrite,
    SortOrder,
)
from appstore.deps import Caller, CallerDep, SettingsDep
from appstore.installations.models import Installation
from contracts.manifest import Category, GradeBand, PricingUnit, Subject
from kit.db import ReadSessionDep, SessionDep
from kit.errors import FieldError, Forbidden, InvalidInput

router = APIRouter(tags=["Catalog"])

SCOPE_READ = "apps.read"
#: Staff of a school, a district or the city browse the catalog.
BROWSER_ROLES = ("city_admin", "district_admin", "school_admin", "teacher")
#: Who may rate an app: the people who use it at a school that installed it.
RATER_ROLES = ("school_admin", "teacher")


def require_browser(caller: Caller) -> None:
    caller.require_scope(SCOPE_READ)
    if caller.is_app or not caller.principal.roles_named(*BROWSER_ROLES):
        raise Forbidden(
            "只有学校、区或市教育局的工作人员可以浏览应用超市；Only staff of a school, district or the city may browse "
            "the app catalog.",
            required_roles=list(BROWSER_ROLES),
        )


@router.get("/catalog/apps")
def search_catalog(
    caller: CallerDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    q: Annotated[str | None, Query(max_length=200, description="Keywords (中文 or English), space-separated")] = None,
    category: Annotated[Category | None, Query()] = None,
    grade_band: Annotated[GradeBand | None, Query()] = None,
    subject: Annotated[Subject | None, Query()] = None,
    pricing_unit: Annotated[PricingUnit | None, Query()] = None,
    min_rating: Annotated[float | None, Query(ge=1, le=5, description="Only apps rated at least this (1–5)")] = None,
    sort: Annotated[SortOrder | None, Query(description="relevance (default with keywords), rating, newest")] = None,
    limit: Annotated[int, Query(ge=1, description="Items per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> CatalogPage:
    """Listed apps, searched by Chinese keywords (name hits first) and filtered; each says what data it gets, why."""
    require_browser(caller)
    if limit > settings.catalog_max_limit:
        message = f"limit 不能超过 {settings.catalog_max_limit}；limit may be at most {settings.catalog_max_limit}."
        raise InvalidInput(message, errors=[FieldError(field="limit", message=message, code="too_large")])
    query = service.CatalogQuery(
        q=q, category=category, grade_band=grade_band, subject=subject, pricing_unit=pricing_unit,
        min_rating=min_rating, sort=sort, limit=limit, offset=offset,
    )  # fmt: skip
    rows, total = service.search(session, query)
    return CatalogPage(
        items=[CatalogItem.model_validate(service.item(entry)) for entry, _ in rows],
        total=total, limit=limit, offset=offset,
    )  # fmt: skip


@router.get("/catalog/apps/{app_id}")
def read_catalog_app(app_id: str, caller: CallerDep, session: ReadSessionDep) -> CatalogDetail:
    """A listed app's page: description, screenshots, what data it gets and why, price, ratings."""
    require_browser(caller)
    entry = service.listed_entry(session, app_id)
    mine = session.get(AppRating, (app_id, caller.person_id))
    return CatalogDetail.model_validate(
        {
            **service.item(entry),
            **json.loads(entry.detail),
            "recent_comments": [
                RatingComment(stars=row.stars, comment=row.comment or "", updated_at=row.updated_at)
                for row in service.recent_comments(session, app_id)
            ],
            "my_rating": mine.stars if mine else None,
        }
    )


def _rating_school(session: Session, caller: Caller, app_id: str) -> str:
    """A school where the caller is a school admin or teacher and the app is installed."""
    school_ids = [role.org_id for role in caller.principal.roles_named(*RATER_ROLES) if role.org_id]
    if school_ids:
        installed = session.exec(
            select(Installation.school_id).where(
                Installation.app_id == app_id,
                Installation.status == "active",
                Installation.school_id.in_(school_ids),
            )
        ).first()
        if installed is not None:
            return installed
    raise Forbidden(
        "只有已安装该应用的学校的管理员或教师可以评分；Only school admins and teachers of a school that installed the "
        "app may rate it."
    )


@router.put("/catalog/apps/{app_id}/rating")
def rate_app(app_id: str, body: RatingWrite, caller: CallerDep, session: SessionDep) -> RatingRead:
    """Rate the app 1–5 with an optional comment; one rating per person, which they may change."""
    caller.require_scope(SCOPE_READ)
    entry = service.listed_entry(session, app_id)
    school_id = _rating_school(session, caller, app_id)
    rating = service.rate(
        session, entry=entry, person_id=caller.person_id, school_id=school_id, stars=body.stars,
        comment=body.comment,
    )  # fmt: skip
    return RatingRead.model_validate(
        {"app_id": app_id, "stars": rating.stars, "comment": rating.comment, "rating": service.rating_of(entry)}
    )
