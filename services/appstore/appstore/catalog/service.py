"""The catalog: keeping each app's searchable entry in step with its published version and status, searching it,
and schools' ratings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from appstore.apps.models import App, AppVersion
from appstore.apps.service import manifest_of
from appstore.catalog.models import AppRating, CatalogEntry
from appstore.catalog.schemas import SortOrder
from appstore.errors import UnknownApp
from appstore.vendors.models import Vendor
from contracts.manifest import (
    CATEGORY_LABELS,
    GRADE_BAND_LABELS,
    PRICING_UNIT_LABELS,
    SUBJECT_LABELS,
    AppManifestV1,
)
from contracts.scopes import personal_field_label, personal_fields_for, requires_guardian_consent
from contracts.scopes import scope as catalogue_scope
from kit.outbox import utcnow

NAME_WEIGHT = 100
SUMMARY_WEIGHT = 10
BODY_WEIGHT = 1
MAX_KEYWORDS = 8


def _yuan(fen: int | None) -> str | None:
    return None if fen is None else f"{fen // 100}.{fen % 100:02d}"


def _field(field: Any) -> dict[str, str]:
    label = personal_field_label(field)
    return {"id": label.id, "label_zh": label.label_zh, "label_en": label.label_en}


def data_access(manifest: AppManifestV1) -> dict[str, Any]:
    """Exactly what data the app gets and why: each scope with its purpose, meaning and personal fields."""
    scopes = []
    for request in manifest.scopes:
        known = catalogue_scope(request.scope)
        scopes.append(
            {
                "scope": request.scope,
                "purpose": {"zh_cn": request.purpose.zh_cn, "en": request.purpose.en},
                "description_zh": known.description_zh,
                "description_en": known.description_en,
                "personal_fields": [_field(field) for field in known.personal_fields],
                "sensitive": known.sensitive,
            }
        )
    ids = manifest.scope_ids
    return {
        "scopes": scopes,
        "personal_fields": [_field(field) for field in personal_fields_for(ids)],
        "guardian_consent_required_under_14": requires_guardian_consent(ids),
        "data_retention_days": manifest.data_retention_days,
    }


def pricing(manifest: AppManifestV1) -> dict[str, Any]:
    plan = manifest.pricing
    return {
        "unit": plan.unit,
        "unit_label": PRICING_UNIT_LABELS[plan.unit],
        "unit_price_fen": plan.unit_price_fen,
        "unit_price_yuan": _yuan(plan.unit_price_fen),
        "monthly_cap_fen_per_school": plan.monthly_cap_fen_per_school,
        "monthly_cap_yuan_per_school": _yuan(plan.monthly_cap_fen_per_school),
        "reported_unit_name": plan.reported_unit_name.zh_cn if plan.reported_unit_name else None,
    }


def listing_card(app: App, version: AppVersion, manifest: AppManifestV1, vendor: Vendor) -> dict[str, Any]:
    """What a listing shows of the app (ratings apart): names, vendor, labels, data access, pricing."""
    return {
        "app_id": app.id,
        "version": version.version,
        "name": {"zh_cn": manifest.name.zh_cn, "en": manifest.name.en},
        "summary": {"zh_cn": manifest.summary.zh_cn, "en": manifest.summary.en},
        "vendor": {"id": vendor.id, "label": vendor.name},
        "category": {"id": manifest.category, "label": CATEGORY_LABELS[manifest.category]},
        "grade_bands": [{"id": band, "label": GRADE_BAND_LABELS[band]} for band in manifest.grade_bands],
        "subjects": [{"id": subject, "label": SUBJECT_LABELS[subject]} for subject in manifest.subjects],
        "icon_url": manifest.icon_url,
        "launch_type": manifest.launch.type,
        "data_access": data_access(manifest),
        "pricing": pricing(manifest),
    }


def _detail(manifest: AppManifestV1) -> dict[str, Any]:
    return {
        "description": {"zh_cn": manifest.description.zh_cn, "en": manifest.description.en},
        "screenshots": list(manifest.screenshots),
        "privacy_policy_url": manifest.privacy_policy_url,
        "support": manifest.support.model_dump(),
    }


def _lower(*parts: str | None) -> str:
    return " ".join(part for part in parts if part).lower()


def refresh_entry(session: Session, app: App) -> CatalogEntry | None:
    """Bring the app's catalog entry in line with its published version and status (listed only while 'listed')."""
    entry = session.get(CatalogEntry, app.id)
    version = session.get(AppVersion, app.published_version_id) if app.published_version_id else None
    if version is None:
        if entry is not None:
            session.delete(entry)
            session.flush()
        return None
    manifest = manifest_of(version)
    vendor = session.get(Vendor, app.vendor_id)
    assert vendor is not None
    name = _lower(manifest.name.zh_cn, manifest.name.en)
    summary = _lower(manifest.summary.zh_cn, manifest.summary.en)
    body = _lower(manifest.description.zh_cn, manifest.description.en, vendor.name)
    fields: dict[str, Any] = {
        "vendor_id": app.vendor_id,
        "version_id": version.id,
        "listed": app.status == "listed",
        "name_zh": manifest.name.zh_cn,
        "name_text": name,
        "summary_text": summary,
        "body_text": body,
        "search_text": f"{name}\n{summary}\n{body}",
        "category": manifest.category,
        "grade_bands": " " + " ".join(manifest.grade_bands) + " ",
        "subjects": " " + " ".join(manifest.subjects) + " ",
        "pricing_unit": manifest.pricing.unit,
        "unit_price_fen": manifest.pricing.unit_price_fen,
        "published_at": version.published_at or utcnow(),
        "card": json.dumps(listing_card(app, version, manifest, vendor), ensure_ascii=False),
        "detail": json.dumps(_detail(manifest), ensure_ascii=False),
    }
    if entry is None:
        entry = CatalogEntry(app_id=app.id, **fields)
    else:
        for key, value in fields.items():
            setattr(entry, key, value)
    session.add(entry)
    session.flush()
    return entry


# ------------------------------------------------------------------------------------------ searching


@dataclass(frozen=True)
class CatalogQuery:
    q: str | None = None
    category: str | None = None
    grade_band: str | None = None
    subject: str | None = None
    pricing_unit: str | None = None
    min_rating: float | None = None
    sort: SortOrder | None = None
    limit: int = 20
    offset: int = 0


def keywords(text: str | None) -> list[str]:
    """Whitespace-separated keywords, lower-cased, deduplicated, at most MAX_KEYWORDS."""
    if not text:
        return []
    seen: list[str] = []
    for word in text.replace("\u3000", " ").lower().split():
        if word not in seen:
            seen.append(word[:50])
    return seen[:MAX_KEYWORDS]


def _contains(session: Session, column: Any, word: str) -> Any:
    """``column`` contains ``word`` (both lower-case): instr/strpos, cheaper than LIKE and free of wildcards."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.strpos(column, word) > 0
    return sa.func.instr(column, word) > 0


def search(session: Session, query: CatalogQuery) -> tuple[list[tuple[CatalogEntry, int]], int]:
    """Listed apps matching every keyword and filter, ranked (name hits first), with the number of all matches.

    The ranking sorts only ids and scores (with the match count as a window), then loads the page's entries: the
    sort never carries the entries' large card columns.
    """
    conditions: list[Any] = [col(CatalogEntry.listed).is_(True)]
    words = keywords(query.q)
    score: Any = sa.literal(0)
    for word in words:
        conditions.append(_contains(session, col(CatalogEntry.search_text), word))
        score = (
            score
            + sa.case((_contains(session, col(CatalogEntry.name_text), word), NAME_WEIGHT), else_=0)
            + sa.case((_contains(session, col(CatalogEntry.summary_text), word), SUMMARY_WEIGHT), else_=0)
            + sa.case((_contains(session, col(CatalogEntry.body_text), word), BODY_WEIGHT), else_=0)
        )
    if query.category:
        conditions.append(col(CatalogEntry.category) == query.category)
    if query.grade_band:
        conditions.append(col(CatalogEntry.grade_bands).like(f"% {query.grade_band} %"))
    if query.subject:
        conditions.append(col(CatalogEntry.subjects).like(f"% {query.subject} %"))
    if query.pricing_unit:
        conditions.append(col(CatalogEntry.pricing_unit) == query.pricing_unit)
    if query.min_rating is not None:
        conditions.append(col(CatalogEntry.rating_count) > 0)
        conditions.append(col(CatalogEntry.rating_average) >= query.min_rating)
    sort = query.sort or ("relevance" if words else "newest")
    relevance = score.label("relevance")
    newest = (col(CatalogEntry.published_at).desc(), col(CatalogEntry.app_id))
    by_rating = (col(CatalogEntry.rating_average).desc(), col(CatalogEntry.rating_count).desc())
    if sort == "relevance":
        order: tuple[Any, ...] = (relevance.desc(), *by_rating, *newest)
    elif sort == "rating":
        order = (*by_rating, *newest)
    else:
        order = newest
    ranked = session.exec(
        select(CatalogEntry.app_id, relevance, sa.func.count().over().label("total"))
        .where(*conditions)
        .order_by(*order)
        .limit(query.limit)
        .offset(query.offset)
    ).all()
    if ranked:
        total = int(ranked[0][2])
    else:
        total = int(session.exec(select(sa.func.count()).select_from(CatalogEntry).where(*conditions)).one())
    entries = {
        entry.app_id: entry
        for entry in session.exec(
            select(CatalogEntry).where(col(CatalogEntry.app_id).in_([row[0] for row in ranked]))
        ).all()
    }
    return [(entries[app_id], int(rank)) for app_id, rank, _ in ranked], total


def listed_entry(session: Session, app_id: str) -> CatalogEntry:
    entry = session.get(CatalogEntry, app_id)
    if entry is None or not entry.listed:
        raise UnknownApp(app_id)
    return entry


def rating_of(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "average": round(entry.rating_average, 2) if entry.rating_count else None,
        "count": entry.rating_count,
    }


def item(entry: CatalogEntry) -> dict[str, Any]:
    card: dict[str, Any] = json.loads(entry.card)
    card["rating"] = rating_of(entry)
    card["published_at"] = entry.published_at
    return card


# ------------------------------------------------------------------------------------------- ratings


def rate(
    session: Session, *, entry: CatalogEntry, person_id: str, school_id: str, stars: int, comment: str | None
) -> AppRating:
    """Record (or change) the person's rating and keep the entry's average in step."""
    rating = session.get(AppRating, (entry.app_id, person_id))
    text = comment.strip() if comment and comment.strip() else None
    if rating is None:
        rating = AppRating(app_id=entry.app_id, person_id=person_id, school_id=school_id, stars=stars, comment=text)
        entry.rating_count += 1
        entry.rating_sum += stars
    else:
        entry.rating_sum += stars - rating.stars
        rating.stars = stars
        rating.comment = text
        rating.school_id = school_id
        rating.updated_at = utcnow()
    entry.rating_average = entry.rating_sum / entry.rating_count if entry.rating_count else 0.0
    session.add(rating)
    session.add(entry)
    session.flush()
    return rating


def recent_comments(session: Session, app_id: str, limit: int = 5) -> list[AppRating]:
    return list(
        session.exec(
            select(AppRating)
            .where(AppRating.app_id == app_id, col(AppRating.comment).is_not(None))
            .order_by(col(AppRating.updated_at).desc())
            .limit(limit)
        ).all()
    )
