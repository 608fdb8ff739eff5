"""The benefit ranking (绩效): per app and period, active users among the installed schools' people, cost per
active user, the trend, and apps proposed for retirement review.

Figures of a period, per app:

* installed schools: schools where the app was installed at any moment of the period;
* population: the active pupils and teachers of those schools (as the directory knows them now), each person once;
* active users: distinct pupils and teachers (by pseudonym) who launched the app billably in the month of use;
* amount: what the period bills for the app (billable usage whose billing period is this one, late usage of
  earlier months included), at the plan prices, with each school's monthly cap applied as statements apply it
  (the cap of the plan in force at the end of the period); finance's later adjustments of statements are not
  included;
* cost per active user: amount / active users, rounded half up to the fen; null when nobody was active;
* trend: the active rate minus the previous period's stored one.

An app is below the thresholds when its active rate is below ``benefit_min_active_rate`` or its cost per active
user above ``benefit_max_cost_per_active_user_fen`` (or it cost money and nobody was active). Below them for
``benefit_flag_after_periods`` consecutive ranked periods, it is flagged once per period for the app store's
retirement review (淘汰) with an ``AppBenefitFlaggedV1`` event. When an app with an open flag ranks within the
thresholds in a later period, its open flags are withdrawn (state ``recovered``) with an ``AppBenefitRecoveredV1``
event, and the app store withdraws the proposal unless a reviewer decided it already.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from contracts.events.metering import AppBenefitFlaggedV1, AppBenefitRecoveredV1
from kit import outbox
from metering import periods
from metering.benefit.models import HIGH_COST_PER_ACTIVE_USER, LOW_ACTIVE_RATE, AppBenefit, BenefitFlag
from metering.config import MeteringSettings
from metering.projections.models import InstallationSpan, MeteredApp, PopulationMember, PricePlan
from metering.statements.models import BillingPeriod
from metering.usage.models import UsageEvent, UsageMonthTotal

POPULATION_KINDS = ("student", "teacher")
REASON_ORDER = (LOW_ACTIVE_RATE, HIGH_COST_PER_ACTIVE_USER)


def reasons_of(row: AppBenefit | BenefitFlag) -> list[str]:
    return [reason for reason in row.reasons.split(",") if reason]


def _installed(period: str) -> sa.Subquery:
    start, end = periods.period_start(period), periods.period_end(period)
    return (
        select(InstallationSpan.app_id, InstallationSpan.school_id)
        .where(
            col(InstallationSpan.granted_at) < end,
            sa.or_(col(InstallationSpan.removed_at).is_(None), col(InstallationSpan.removed_at) > start),
        )
        .distinct()
        .subquery()
    )


def _installed_schools(session: Session, period: str) -> dict[str, int]:
    installed = _installed(period)
    rows = session.execute(
        select(installed.c.app_id, sa.func.count(installed.c.school_id)).group_by(installed.c.app_id)
    ).all()
    return {str(app_id): int(count) for app_id, count in rows}


def _population(session: Session, period: str) -> dict[str, int]:
    installed = _installed(period)
    rows = session.execute(
        select(installed.c.app_id, sa.func.count(sa.distinct(PopulationMember.person_id)))
        .join(PopulationMember, col(PopulationMember.school_id) == installed.c.school_id)
        .where(col(PopulationMember.active).is_(True), col(PopulationMember.kind).in_(POPULATION_KINDS))
        .group_by(installed.c.app_id)
    ).all()
    return {str(app_id): int(count) for app_id, count in rows}


def _active_users(session: Session, period: str) -> dict[str, int]:
    rows = session.execute(
        select(UsageEvent.app_id, sa.func.count(sa.distinct(UsageEvent.user_pseudonym)))
        .where(
            UsageEvent.source == "derived",
            UsageEvent.meter == "monthly_active_user",
            UsageEvent.status == "billable",
            col(UsageEvent.billing_period) >= period,  # the index's range: late rows bill in later periods
            UsageEvent.usage_period == period,
            col(UsageEvent.role).in_(POPULATION_KINDS),
        )
        .group_by(col(UsageEvent.app_id))
    ).all()
    return {str(app_id): int(count) for app_id, count in rows}


def _plans_at_end(session: Session, period: str) -> dict[str, PricePlan]:
    """Each app's plan in force at the end of the period (the latest that took effect before it ended)."""
    latest: dict[str, PricePlan] = {}
    for plan in session.exec(
        select(PricePlan)
        .where(col(PricePlan.effective_at) < periods.period_end(period))
        .order_by(col(PricePlan.app_id), col(PricePlan.effective_at), col(PricePlan.id))
    ):
        latest[plan.app_id] = plan
    return latest


def _amounts(session: Session, period: str, plans: dict[str, PricePlan]) -> dict[str, int]:
    """What the period bills per app, as its statements do: per school, the period's own usage up to the school's
    monthly cap, plus late usage of earlier months uncapped (capped in its own month). From the monthly rollup."""
    priced = sa.case(
        (
            col(PricePlan.unit) == col(UsageMonthTotal.meter),
            col(UsageMonthTotal.quantity) * col(PricePlan.unit_price_fen),
        ),
        else_=0,
    )
    own_month = sa.case((col(UsageMonthTotal.usage_period) == period, priced), else_=0)
    rows = session.execute(
        select(UsageMonthTotal.app_id, UsageMonthTotal.school_id, sa.func.sum(own_month), sa.func.sum(priced))
        .select_from(UsageMonthTotal)
        .outerjoin(PricePlan, col(PricePlan.id) == col(UsageMonthTotal.plan_id))
        .where(UsageMonthTotal.billing_period == period, UsageMonthTotal.status == "billable")
        .group_by(col(UsageMonthTotal.app_id), col(UsageMonthTotal.school_id))
    ).all()
    amounts: dict[str, int] = defaultdict(int)
    for app_id, _school_id, own, everything in rows:
        plan = plans.get(app_id)
        cap = plan.monthly_cap_fen_per_school if plan else None
        own, late = int(own or 0), int(everything or 0) - int(own or 0)
        amounts[str(app_id)] += (own if cap is None else min(own, cap)) + late
    return amounts


def _cost(amount_fen: int, active_users: int) -> int | None:
    if active_users == 0:
        return None
    return (amount_fen * 2 + active_users) // (2 * active_users)  # half up


def compute_period(session: Session, *, period: str, settings: MeteringSettings, now: datetime) -> list[AppBenefit]:
    """Every ranked app's figures for the period (not stored), best active rate first."""
    plans = _plans_at_end(session, period)
    installed = _installed_schools(session, period)
    population = _population(session, period)
    active = _active_users(session, period)
    amounts = _amounts(session, period, plans)
    apps = {app.app_id: app for app in session.exec(select(MeteredApp))}
    wanted = {app_id for app_id in installed if app_id in apps}
    wanted |= {app_id for app_id in plans if app_id in apps and apps[app_id].status != "retired"}
    wanted |= {app_id for app_id in (*active, *amounts) if app_id in apps}
    previous = {
        row.app_id: row
        for row in session.exec(select(AppBenefit).where(AppBenefit.period == periods.previous_period(period)))
    }
    rows = []
    for app_id in sorted(wanted):
        people, users, amount = population.get(app_id, 0), active.get(app_id, 0), amounts.get(app_id, 0)
        rate = users / people if people else None
        cost = _cost(amount, users)
        reasons = []
        if rate is not None and rate < settings.benefit_min_active_rate:
            reasons.append(LOW_ACTIVE_RATE)
        if (cost is not None and cost > settings.benefit_max_cost_per_active_user_fen) or (amount > 0 and not users):
            reasons.append(HIGH_COST_PER_ACTIVE_USER)
        before = previous.get(app_id)
        previous_rate = before.active_rate if before else None
        rows.append(
            AppBenefit(
                period=period, app_id=app_id, vendor_id=apps[app_id].vendor_id,
                installed_schools=installed.get(app_id, 0), population=people, active_users=users, active_rate=rate,
                amount_fen=amount, cost_per_active_user_fen=cost, previous_active_rate=previous_rate,
                trend=rate - previous_rate if rate is not None and previous_rate is not None else None,
                below_threshold=bool(reasons), reasons=",".join(reasons), computed_at=now,
            )
        )  # fmt: skip
    return sort_ranking(rows)


def sort_ranking(rows: list[AppBenefit]) -> list[AppBenefit]:
    """Best active rate first; unknown rates last; ties by lower cost per active user, then app id."""
    return sorted(
        rows,
        key=lambda row: (
            row.active_rate is None, -(row.active_rate or 0.0),
            row.cost_per_active_user_fen is None, row.cost_per_active_user_fen or 0, row.app_id,
        ),
    )  # fmt: skip


def rank_period(session: Session, *, period: str, settings: MeteringSettings, now: datetime) -> None:
    """Compute and store the period's ranking when the period closes; flag apps below the thresholds."""
    rows = compute_period(session, period=period, settings=settings, now=now)
    stored = {row.app_id: row for row in session.exec(select(AppBenefit).where(AppBenefit.period == period))}
    for row in rows:
        existing = stored.get(row.app_id)
        if existing is None:
            session.add(row)
        else:
            for name, value in row.model_dump(exclude={"period", "app_id"}).items():
                setattr(existing, name, value)
            session.add(existing)
    session.flush()
    _flag(session, [row for row in rows if row.below_threshold], period=period, settings=settings, now=now)
    _withdraw_recovered(session, [row for row in rows if not row.below_threshold], period=period, now=now)


def _flag(session: Session, below: list[AppBenefit], *, period: str, settings: MeteringSettings, now: datetime) -> None:
    if not below:
        return
    streak = [period]
    for _ in range(settings.benefit_flag_after_periods - 1):
        streak.insert(0, periods.previous_period(streak[0]))
    app_ids = [row.app_id for row in below]
    history: dict[tuple[str, str], AppBenefit] = {
        (row.period, row.app_id): row
        for row in session.exec(
            select(AppBenefit).where(col(AppBenefit.period).in_(streak[:-1]), col(AppBenefit.app_id).in_(app_ids))
        )
    }
    flagged = set(
        session.exec(
            select(BenefitFlag.app_id).where(BenefitFlag.period == period, col(BenefitFlag.app_id).in_(app_ids))
        )
    )
    for row in below:
        earlier = [history.get((earlier_period, row.app_id)) for earlier_period in streak[:-1]]
        if row.app_id in flagged or not all(item is not None and item.below_threshold for item in earlier):
            continue
        found = {reason for item in (*earlier, row) if item is not None for reason in reasons_of(item)}
        reasons = [reason for reason in REASON_ORDER if reason in found]
        session.add(
            BenefitFlag(
                app_id=row.app_id, vendor_id=row.vendor_id, period=period, periods=",".join(streak),
                reasons=",".join(reasons), active_rate=row.active_rate or 0.0,
                cost_per_active_user_fen=row.cost_per_active_user_fen, flagged_at=now,
            )
        )  # fmt: skip
        outbox.emit(
            session,
            AppBenefitFlaggedV1(
                app_id=row.app_id, vendor_id=row.vendor_id, periods=streak, reasons=reasons,
                active_rate=row.active_rate or 0.0, cost_per_active_user_fen=row.cost_per_active_user_fen,
                flagged_at=now,
            ),
            subject_id=row.app_id,
        )  # fmt: skip
    session.flush()


def _withdraw_recovered(session: Session, within: list[AppBenefit], *, period: str, now: datetime) -> None:
    """Withdraw the open flags, raised by earlier periods, of apps that ranked within the thresholds in ``period``:
    one event per app, naming its latest flag."""
    if not within:
        return
    rows = {row.app_id: row for row in within}
    flags = session.exec(
        select(BenefitFlag)
        .where(BenefitFlag.state == "open", col(BenefitFlag.app_id).in_(sorted(rows)), col(BenefitFlag.period) < period)
        .order_by(col(BenefitFlag.app_id), col(BenefitFlag.period))
    ).all()
    latest: dict[str, BenefitFlag] = {}
    for flag in flags:
        flag.state, flag.recovered_period, flag.recovered_at = "recovered", period, now
        session.add(flag)
        latest[flag.app_id] = flag  # ordered by period: the last one is the latest
    for app_id, flag in latest.items():
        row = rows[app_id]
        outbox.emit(
            session,
            AppBenefitRecoveredV1(
                app_id=app_id, vendor_id=flag.vendor_id, flagged_period=flag.period, period=period,
                active_rate=row.active_rate or 0.0, cost_per_active_user_fen=row.cost_per_active_user_fen,
                recovered_at=now,
            ),
            subject_id=app_id,
        )  # fmt: skip
    session.flush()


def last_closed_period(session: Session) -> str | None:
    return session.exec(select(sa.func.max(BillingPeriod.period))).one()


def ranking(
    session: Session, *, period: str, settings: MeteringSettings, now: datetime
) -> tuple[list[AppBenefit], bool]:
    """The period's ranking as stored when it closed, or computed now (not stored) when it was not ranked yet."""
    stored = list(session.exec(select(AppBenefit).where(AppBenefit.period == period)))
    if stored:
        return sort_ranking(stored), True
    return compute_period(session, period=period, settings=settings, now=now), False


def flags(
    session: Session, *, state: str, vendor_ids: frozenset[str] | None, limit: int, offset: int
) -> tuple[list[BenefitFlag], int]:
    """Flags in ``state`` (open, recovered), newest first; ``vendor_ids`` restricts them to those vendors' apps
    (None: all)."""
    query = select(BenefitFlag).where(BenefitFlag.state == state)
    if vendor_ids is not None:
        query = query.where(col(BenefitFlag.vendor_id).in_(sorted(vendor_ids)))
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(BenefitFlag.flagged_at).desc(), col(BenefitFlag.id).desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)
