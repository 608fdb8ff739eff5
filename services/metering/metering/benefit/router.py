"""HTTP routes of the benefit ranking (绩效) and the apps proposed for retirement review.

The city's administrators read the whole ranking and every flag; a vendor's developers read their own apps' rows
(with their rank in the whole city) and flags. District and school administrators do not read it: the figures are
city-wide (population and cost over every installed school), not per district.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from kit.db import ReadSessionDep
from kit.errors import FieldError, Forbidden, InvalidInput
from kit.pagination import PageDep
from metering import periods
from metering.benefit import service
from metering.benefit.models import BenefitFlag
from metering.benefit.schemas import (
    AppBenefitRead,
    BenefitFlagPage,
    BenefitFlagRead,
    BenefitRanking,
    BenefitThresholds,
    FlagState,
)
from metering.deps import CallerDep, Reach, SettingsDep
from metering.projections.models import MeteredApp, MeteredVendor
from metering.usage.service import utcnow

router = APIRouter(tags=["Benefit"])


def _vendor_filter(reach: Reach) -> frozenset[str] | None:
    """None: every app (the city); else the caller's vendors; 403 for anyone else."""
    if reach.every_school:
        return None
    if not reach.vendor_ids:
        raise Forbidden(
            "绩效排名仅供市级管理员和应用企业开发者查看；"
            "The benefit ranking is for city administrators and vendors' developers (their own apps) only.",
        )
    return reach.vendor_ids


def _names(session: Session, app_ids: set[str], vendor_ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    apps: dict[str, str] = {}
    vendors: dict[str, str] = {}
    if app_ids:
        query = select(MeteredApp).where(col(MeteredApp.app_id).in_(sorted(app_ids)))
        apps = {app.app_id: app.name for app in session.exec(query)}
    if vendor_ids:
        query_vendors = select(MeteredVendor).where(col(MeteredVendor.vendor_id).in_(sorted(vendor_ids)))
        vendors = {vendor.vendor_id: vendor.name for vendor in session.exec(query_vendors)}
    return apps, vendors


@router.get("/benefit")
def read_benefit(
    caller: CallerDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    period: Annotated[
        str | None,
        Query(pattern=periods.PERIOD_PATTERN.pattern, description="YYYY-MM (default: the last closed period)"),
    ] = None,
) -> BenefitRanking:
    """The benefit ranking (绩效) of apps for a period, highest active-user rate first.

    Default: the last closed period (the current one while none has closed). A closed period shows the ranking
    stored when it closed; a period not ranked yet is computed as it stands, without being stored. Amounts are
    what the period bills, monthly caps per school applied, before finance's adjustments."""
    vendors = _vendor_filter(caller.reach(session))
    now = utcnow()
    current = periods.period_of(now)
    if period is None:
        period = service.last_closed_period(session) or current
    elif period > current:
        raise InvalidInput(
            "这个月份还没有开始；That period has not begun yet.",
            errors=[FieldError(field="query.period", message=f"Use {current} or earlier.")],
        )
    rows, stored = service.ranking(session, period=period, settings=settings, now=now)
    ranked = list(enumerate(rows, start=1))
    if vendors is not None:
        ranked = [(rank, row) for rank, row in ranked if row.vendor_id in vendors]
    app_names, vendor_names = _names(session, {row.app_id for _, row in ranked}, {row.vendor_id for _, row in ranked})
    return BenefitRanking(
        period=period, stored=stored, computed_at=rows[0].computed_at if stored and rows else now,
        thresholds=BenefitThresholds(
            min_active_rate=settings.benefit_min_active_rate,
            max_cost_per_active_user_fen=settings.benefit_max_cost_per_active_user_fen,
            flag_after_periods=settings.benefit_flag_after_periods,
        ),
        items=[
            AppBenefitRead(
                rank=rank, app_id=row.app_id, app_name=app_names.get(row.app_id), vendor_id=row.vendor_id,
                vendor_name=vendor_names.get(row.vendor_id), installed_schools=row.installed_schools,
                population=row.population, active_users=row.active_users, active_rate=row.active_rate,
                amount_fen=row.amount_fen, cost_per_active_user_fen=row.cost_per_active_user_fen,
                previous_active_rate=row.previous_active_rate, trend=row.trend, below_threshold=row.below_threshold,
                reasons=service.reasons_of(row),
            )
            for rank, row in ranked
        ],
    )  # fmt: skip


def _flag_read(flag: BenefitFlag, app_names: dict[str, str], vendor_names: dict[str, str]) -> BenefitFlagRead:
    assert flag.id is not None
    return BenefitFlagRead(
        id=flag.id, app_id=flag.app_id, app_name=app_names.get(flag.app_id), vendor_id=flag.vendor_id,
        vendor_name=vendor_names.get(flag.vendor_id), period=flag.period, periods=flag.periods.split(","),
        reasons=service.reasons_of(flag),
        active_rate=flag.active_rate, cost_per_active_user_fen=flag.cost_per_active_user_fen,
        state=flag.state, flagged_at=flag.flagged_at, recovered_period=flag.recovered_period,
        recovered_at=flag.recovered_at,
    )  # fmt: skip


@router.get("/benefit/flags")
def read_benefit_flags(
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    state: Annotated[
        FlagState, Query(description="open: proposed for the retirement review; recovered: withdrawn since")
    ] = "open",
) -> BenefitFlagPage:
    """Apps proposed for the retirement review (open flags), newest first: below the thresholds for consecutive
    periods. ``state=recovered``: flags withdrawn because the app ranked within the thresholds in a later period."""
    vendors = _vendor_filter(caller.reach(session))
    flags, total = service.flags(session, state=state, vendor_ids=vendors, limit=page.limit, offset=page.offset)
    app_names, vendor_names = _names(session, {flag.app_id for flag in flags}, {flag.vendor_id for flag in flags})
    return BenefitFlagPage(
        items=[_flag_read(flag, app_names, vendor_names) for flag in flags],
        total=total, limit=page.limit, offset=page.offset,
    )  # fmt: skip
