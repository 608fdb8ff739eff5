"""Vendors' monthly statements: computing their lines, closing periods, disputes, adjustments and approval.

Lines come from the usage aggregates by month of use (``UsageMonthTotal``), never the ledger: billable usage billed
in the period, on the meter its price plan charges by (``PricePlan.unit``), at the unit price of the plan that was
in force when it was used. One line per app, school, meter, month of use and plan.

Rounding and caps (stated here and in the API docs):

* Amounts are integer fen: ``gross = quantity x unit price``, exact, no rounding.
* A school's monthly cap for an app is the cap of the app's plan in force at the end of the period (the latest plan
  that took effect before the period ended). It applies to the sum of that app's lines at that school **whose
  month of use is the statement's period**. Adjustment lines (usage of an earlier month arriving after that month
  closed) are not capped again: their month's cap was applied when that month closed.
* When the capped lines add up to more than the cap, the reduction is split over them in proportion to their
  gross amounts, each share rounded down to the fen, and the fen left over go one each to the lines with the
  largest remainders (ties: the earlier line), so the capped lines add up to the cap exactly.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from contracts.events.metering import PeriodClosedV1, StatementApprovedV1, StatementIssuedV1
from kit.db import insert_rows
from kit.outbox import PendingEvent, emit, emit_many
from metering import periods
from metering.benefit.service import rank_period
from metering.config import MeteringSettings
from metering.projections.models import MeteredApp, MeteredOrganisation, MeteredVendor, PricePlan
from metering.statements.errors import (
    DisputeAlreadyOpen,
    DisputeNotFound,
    DisputeResolved,
    LineNotFound,
    OpenDisputes,
    PeriodAlreadyClosed,
    PeriodNotEnded,
    StatementApproved,
    StatementNotFound,
    VendorNotFound,
    invalid,
)
from metering.statements.models import (
    BillingPeriod,
    Statement,
    StatementAdjustment,
    StatementDispute,
    StatementLine,
)
from metering.usage.models import UsageMonthTotal
from metering.usage.service import hold_classification_lock

#: The columns of a stored line, in the order ``issue_statements`` builds them.
LINE_COLUMNS = (
    "statement_id", "app_id", "school_id", "district_id", "meter", "usage_period", "plan_id", "unit_price_fen",
    "quantity", "gross_fen", "cap_fen", "cap_reduction_fen", "amount_fen", "adjustment_fen", "final_fen",
)  # fmt: skip


@dataclass(slots=True)
class LineDraft:
    """A statement line before it is stored (or a preview line, never stored)."""

    app_id: str
    vendor_id: str
    school_id: str
    meter: str
    usage_period: str
    plan_id: int
    unit_price_fen: int
    quantity: int
    gross_fen: int
    district_id: str | None = None
    cap_fen: int | None = None
    cap_reduction_fen: int = 0

    @property
    def amount_fen(self) -> int:
        return self.gross_fen - self.cap_reduction_fen


@dataclass(slots=True)
class Totals:
    gross_fen: int = 0
    cap_reduction_fen: int = 0
    adjustment_fen: int = 0
    total_fen: int = 0
    lines: int = 0

    def add(self, *, gross: int, cap_reduction: int, adjustment: int, final: int, lines: int = 1) -> None:
        self.gross_fen += gross
        self.cap_reduction_fen += cap_reduction
        self.adjustment_fen += adjustment
        self.total_fen += final
        self.lines += lines


@dataclass
class StatementFigures:
    """A statement's (or preview's) totals, overall and per district."""

    totals: Totals
    districts: dict[str | None, Totals] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ computing lines


def split_reduction(reduction: int, weights: Sequence[int]) -> list[int]:
    """Split ``reduction`` fen over ``weights`` in proportion, by the largest remainder method (sums exactly)."""
    total = sum(weights)
    if reduction <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [reduction * weight // total for weight in weights]
    remainders = [reduction * weight % total for weight in weights]
    left = reduction - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[index] += 1
    return shares


def apply_caps(lines: Sequence[LineDraft], *, period: str, caps: dict[str, int | None]) -> None:
    """Cap each app+school's lines of the period's own month (see the module's docstring); changes ``lines``."""
    groups: dict[tuple[str, str], list[LineDraft]] = defaultdict(list)
    for line in lines:
        if line.usage_period == period and caps.get(line.app_id) is not None:
            groups[(line.app_id, line.school_id)].append(line)
    for (app_id, _school_id), capped in groups.items():
        cap = caps[app_id]
        assert cap is not None
        gross = sum(line.gross_fen for line in capped)
        shares = split_reduction(max(gross - cap, 0), [line.gross_fen for line in capped])
        for line, share in zip(capped, shares, strict=True):
            line.cap_fen = cap
            line.cap_reduction_fen = share


def caps_at_period_end(session: Session, *, period: str, app_ids: Iterable[str] | None = None) -> dict[str, int | None]:
    """Each app's monthly cap per school: the cap of the latest plan that took effect before the period ended."""
    end = periods.period_end(period)
    query = select(PricePlan).order_by(col(PricePlan.app_id), col(PricePlan.effective_at), col(PricePlan.id))
    if app_ids is not None:
        query = query.where(col(PricePlan.app_id).in_(sorted(set(app_ids))))
    caps: dict[str, int | None] = {}
    for plan in session.exec(query):
        if _aware(plan.effective_at) < end:
            caps[plan.app_id] = plan.monthly_cap_fen_per_school
    return caps


#: A priced line: app, vendor, school, district, meter, month of use, plan, unit price, quantity, gross, the cap
#: (None: not capped) and the cap's reduction, in fen.
PricedLine = tuple[str, str, str, str | None, str, str, int, int, int, int, int | None, int]
#: A line as stored, in ``LINE_COLUMNS`` order.
LineRow = tuple[str, str, str, str | None, str, str, int, int, int, int, int | None, int, int, int, int]


def _month_rows_query(session: Session, *, period: str, vendor_id: str | None) -> Any:
    """The period's billable monthly aggregates on the meter their plan charges by, with price, vendor and district,
    in line order (vendor, app, school, meter, month of use, plan). One row per line: the table's key is the line's."""
    month_table = UsageMonthTotal.__table__
    plan_table = PricePlan.__table__
    app_table = MeteredApp.__table__
    org_table = MeteredOrganisation.__table__
    month, plan, app, org = month_table.c, plan_table.c, app_table.c, org_table.c
    order: list[Any] = [app.vendor_id, month.app_id, month.school_id, month.meter, month.usage_period]
    if session.get_bind().dialect.name == "postgresql":
        order = [sa.collate(column, "C") for column in order]  # code point order, as Python sorts and SQLite does
    query = (
        sa.select(
            month.app_id, app.vendor_id, month.school_id, org.district_id, month.meter, month.usage_period,
            month.plan_id, plan.unit_price_fen, month.quantity,
        )
        .select_from(month_table)
        .join(plan_table, sa.and_(plan.id == month.plan_id, plan.unit == month.meter))
        .join(app_table, app.app_id == month.app_id)
        .outerjoin(org_table, sa.and_(org.org_id == month.school_id, org.kind == "school"))
        .where(month.billing_period == period, month.status == "billable", month.quantity != 0)
        .order_by(*order, month.plan_id)
    )  # fmt: skip
    if vendor_id is not None:
        query = query.where(app.vendor_id == vendor_id)
    return query


def priced_lines(session: Session, *, period: str, vendor_id: str | None = None) -> list[PricedLine]:
    """The period's statement lines, in line order, from the monthly aggregates (one query); nothing stored.

    Billable usage billed in ``period`` on the meter its plan charges by, priced by the row's plan; one line per
    app, school, meter, month of use and plan; capped per app+school (see the module's docstring).
    """
    caps = caps_at_period_end(session, period=period)
    rows = session.execute(_month_rows_query(session, period=period, vendor_id=vendor_id)).all()
    lines: list[PricedLine] = []
    for app_id, app_rows in groupby(rows, key=itemgetter(0)):
        cap = caps.get(app_id)
        if cap is None:
            lines.extend([
                (app, vendor, school, district, meter, month, plan_id, price, quantity, quantity * price, None, 0)
                for app, vendor, school, district, meter, month, plan_id, price, quantity in app_rows
            ])  # fmt: skip
            continue
        for _school_id, pair in groupby(app_rows, key=itemgetter(2)):
            group = list(pair)
            own_month = [row[7] * row[8] for row in group if row[5] == period]
            shares = iter(split_reduction(sum(own_month) - cap, own_month))
            lines.extend([
                (app, vendor, school, district, meter, month, plan_id, price, quantity, quantity * price,
                 cap if month == period else None, next(shares) if month == period else 0)
                for app, vendor, school, district, meter, month, plan_id, price, quantity in group
            ])  # fmt: skip
    return lines


def compute_statement_lines(
    session: Session, *, period: str, vendor_id: str | None = None
) -> dict[str, list[LineDraft]]:
    """The period's statement lines per vendor (see ``priced_lines``); nothing stored."""
    by_vendor: dict[str, list[LineDraft]] = defaultdict(list)
    for (
        app_id,
        vendor,
        school_id,
        district_id,
        meter,
        month,
        plan_id,
        price,
        quantity,
        gross,
        cap,
        reduction,
    ) in priced_lines(session, period=period, vendor_id=vendor_id):
        by_vendor[vendor].append(
            LineDraft(
                app_id=app_id, vendor_id=vendor, school_id=school_id, meter=meter, usage_period=month,
                plan_id=plan_id, unit_price_fen=price, quantity=quantity, gross_fen=gross, district_id=district_id,
                cap_fen=cap, cap_reduction_fen=reduction,
            )
        )  # fmt: skip
    return dict(by_vendor)


def figures_of(lines: Iterable[LineDraft]) -> StatementFigures:
    figures = StatementFigures(totals=Totals())
    for line in lines:
        for totals in (figures.totals, figures.districts.setdefault(line.district_id, Totals())):
            totals.add(gross=line.gross_fen, cap_reduction=line.cap_reduction_fen, adjustment=0, final=line.amount_fen)
    return figures


def preview(session: Session, *, vendor_id: str, period: str) -> tuple[StatementFigures, list[LineDraft]]:
    """A vendor's statement for an open period as it stands now, computed live (never stored)."""
    if session.exec(select(MeteredVendor.vendor_id).where(MeteredVendor.vendor_id == vendor_id)).first() is None:
        raise VendorNotFound(vendor_id)
    if session.get(BillingPeriod, period) is not None:
        raise PeriodAlreadyClosed(period)
    lines = compute_statement_lines(session, period=period, vendor_id=vendor_id).get(vendor_id, [])
    return figures_of(lines), lines


# ------------------------------------------------------------------------------------------------ periods


def _lock_periods(session: Session) -> None:
    hold_classification_lock(session, exclusive=True)


def closed_period_rows(session: Session) -> list[BillingPeriod]:
    return list(session.exec(select(BillingPeriod).order_by(col(BillingPeriod.period).desc())))


def issue_statements(session: Session, *, period: str, now: datetime) -> int:
    """Compute the period's lines and store one issued statement per vendor with usage billed in it, with their
    ``StatementIssuedV1`` events; returns how many. The lines are written in bulk, in line order."""
    statement_rows: list[dict[str, object]] = []
    events: list[PendingEvent] = []
    line_rows: list[LineRow] = []
    for vendor_id, lines in groupby(priced_lines(session, period=period), key=itemgetter(1)):
        statement_id = str(uuid.uuid4())
        mine: list[LineRow] = [
            (statement_id, app, school, district, meter, month, plan_id, price, quantity, gross, cap, reduction,
             gross - reduction, 0, gross - reduction)
            for app, _vendor, school, district, meter, month, plan_id, price, quantity, gross, cap, reduction in lines
        ]  # fmt: skip
        line_rows.extend(mine)
        gross_fen = sum(row[9] for row in mine)
        cap_reduction_fen = sum(row[11] for row in mine)
        total_fen = gross_fen - cap_reduction_fen
        statement_rows.append({
            "id": statement_id, "vendor_id": vendor_id, "period": period, "state": "issued", "issued_at": now,
            "approved_at": None, "approved_by": None, "approval_note": None, "gross_fen": gross_fen,
            "cap_reduction_fen": cap_reduction_fen, "adjustment_fen": 0, "total_fen": total_fen, "lines": len(mine),
        })  # fmt: skip
        events.append(PendingEvent(
            StatementIssuedV1(statement_id=statement_id, vendor_id=vendor_id, period=period, total_fen=total_fen,
                              issued_at=now),
            subject_id=statement_id,
        ))  # fmt: skip
    if statement_rows:
        session.execute(sa.insert(Statement.__table__), statement_rows)
    insert_rows(session, StatementLine.__table__, LINE_COLUMNS, line_rows)
    emit_many(session, events)
    return len(statement_rows)


def close_period(
    session: Session, *, period: str, settings: MeteringSettings, now: datetime, closed_by: str | None = None
) -> BillingPeriod:
    """Close a period whose month has ended: issue one statement per vendor with usage billed in it, emit the
    events, rank the period's benefit. A closed period never closes again (409; the primary key guards races)."""
    periods.parse_period(period)
    if now < periods.period_end(period):
        raise PeriodNotEnded(period)
    _lock_periods(session)
    if session.get(BillingPeriod, period) is not None:
        raise PeriodAlreadyClosed(period)
    record = BillingPeriod(period=period, state="closed", closed_at=now, closed_by=closed_by, statements=0)
    session.add(record)
    session.flush()
    record.statements = issue_statements(session, period=period, now=now)
    session.add(record)
    emit(session, PeriodClosedV1(period=period, closed_at=now, statements=record.statements), subject_id=period)
    session.flush()
    rank_period(session, period=period, settings=settings, now=now)
    return record


def periods_due(session: Session, *, now: datetime, grace_days: int, look_back: int = 3) -> list[str]:
    """Periods of the last ``look_back`` months, oldest first, whose grace has passed and that are still open."""
    candidates: list[str] = []
    period = periods.period_of(now)
    for _ in range(look_back):
        period = periods.previous_period(period)
        candidates.append(period)
    closed = set(session.exec(select(BillingPeriod.period).where(col(BillingPeriod.period).in_(candidates))))
    return [p for p in reversed(candidates) if p not in closed and now >= periods.grace_ends(p, grace_days)]


# ------------------------------------------------------------------------------------------------ reading


def get_statement(session: Session, statement_id: str, *, for_update: bool = False) -> Statement:
    query = select(Statement).where(Statement.id == statement_id)
    if for_update:
        query = query.with_for_update()
    statement = session.exec(query).first()
    if statement is None:
        raise StatementNotFound(statement_id)
    return statement


def list_statements(
    session: Session, *, vendor_ids: set[str] | None, period: str | None, vendor_id: str | None, state: str | None,
    limit: int, offset: int,
) -> tuple[list[Statement], int]:  # fmt: skip
    """Statements, newest period first; ``vendor_ids`` None: every vendor's."""
    query = select(Statement)
    if vendor_ids is not None:
        query = query.where(col(Statement.vendor_id).in_(sorted(vendor_ids)))
    if period is not None:
        query = query.where(Statement.period == period)
    if vendor_id is not None:
        query = query.where(Statement.vendor_id == vendor_id)
    if state is not None:
        query = query.where(Statement.state == state)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Statement.period).desc(), col(Statement.vendor_id)).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


def district_totals(session: Session, statement_id: str) -> dict[str | None, Totals]:
    line = StatementLine.__table__.c
    rows = session.execute(
        sa.select(
            line.district_id, sa.func.sum(line.gross_fen), sa.func.sum(line.cap_reduction_fen),
            sa.func.sum(line.adjustment_fen), sa.func.sum(line.final_fen), sa.func.count(),
        )
        .where(line.statement_id == statement_id)
        .group_by(line.district_id)
    ).all()  # fmt: skip
    found: dict[str | None, Totals] = {}
    for district_id, gross, cap, adjustment, final, count in rows:
        found[district_id] = Totals(int(gross or 0), int(cap or 0), int(adjustment or 0), int(final or 0), int(count))
    return found


def line_query(
    statement_id: str, *, app_id: str | None = None, school_id: str | None = None, district_id: str | None = None
) -> Any:
    query = select(StatementLine).where(StatementLine.statement_id == statement_id)
    if app_id is not None:
        query = query.where(StatementLine.app_id == app_id)
    if school_id is not None:
        query = query.where(StatementLine.school_id == school_id)
    if district_id is not None:
        query = query.where(StatementLine.district_id == district_id)
    return query


def lines_page(
    session: Session, statement_id: str, *, app_id: str | None, school_id: str | None, district_id: str | None,
    limit: int, offset: int,
) -> tuple[list[StatementLine], int]:  # fmt: skip
    query = line_query(statement_id, app_id=app_id, school_id=school_id, district_id=district_id)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(StatementLine.id)).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def late_usage_line_count(session: Session, statement: Statement) -> int:
    query = select(sa.func.count()).where(
        StatementLine.statement_id == statement.id, StatementLine.usage_period != statement.period
    )
    return int(session.exec(query).one())


def all_lines(session: Session, statement_id: str) -> list[StatementLine]:
    return list(session.exec(line_query(statement_id).order_by(col(StatementLine.id))))


def app_names(session: Session, app_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(app_ids))
    if not wanted:
        return {}
    rows = session.exec(select(MeteredApp.app_id, MeteredApp.name).where(col(MeteredApp.app_id).in_(wanted))).all()
    return {app_id: name for app_id, name in rows}


def organisation_names(session: Session, org_ids: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({org_id for org_id in org_ids if org_id})
    if not wanted:
        return {}
    rows = session.exec(
        select(MeteredOrganisation.org_id, MeteredOrganisation.name).where(col(MeteredOrganisation.org_id).in_(wanted))
    ).all()
    return {org_id: name for org_id, name in rows}


def vendor_names(session: Session, vendor_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(vendor_ids))
    if not wanted:
        return {}
    rows = session.exec(
        select(MeteredVendor.vendor_id, MeteredVendor.name).where(col(MeteredVendor.vendor_id).in_(wanted))
    ).all()
    return {vendor_id: name for vendor_id, name in rows}


def open_dispute_count(session: Session, statement_id: str) -> int:
    return int(
        session.exec(
            select(sa.func.count()).where(
                StatementDispute.statement_id == statement_id, StatementDispute.state == "open"
            )
        ).one()
    )


def disputes_of(session: Session, statement_id: str) -> list[StatementDispute]:
    return list(
        session.exec(
            select(StatementDispute)
            .where(StatementDispute.statement_id == statement_id)
            .order_by(col(StatementDispute.raised_at), col(StatementDispute.id))
        )
    )


def adjustments_of(session: Session, statement_id: str) -> list[StatementAdjustment]:
    return list(
        session.exec(
            select(StatementAdjustment)
            .where(StatementAdjustment.statement_id == statement_id)
            .order_by(col(StatementAdjustment.id))
        )
    )


# ------------------------------------------------------------------------------------------------ changing


def _require_issued(statement: Statement) -> None:
    if statement.state != "issued":
        raise StatementApproved()


def _line(session: Session, statement: Statement, line_id: int, *, field_name: str | None = None) -> StatementLine:
    line = session.get(StatementLine, line_id)
    if line is None or line.statement_id != statement.id:
        if field_name is not None:
            raise invalid(
                field_name, f"此结算单没有明细 {line_id}；The statement has no line {line_id}.", "unknown_line"
            )
        raise LineNotFound(line_id)
    return line


def raise_dispute(
    session: Session, *, statement: Statement, line_id: int, reason: str, raised_by: str, now: datetime
) -> StatementDispute:
    """The vendor disputes a line of an issued statement (one open dispute per line)."""
    _require_issued(statement)
    line = _line(session, statement, line_id)
    existing = session.exec(
        select(StatementDispute).where(
            StatementDispute.statement_id == statement.id, StatementDispute.line_id == line.id,
            StatementDispute.state == "open",
        )
    ).first()  # fmt: skip
    if existing is not None:
        raise DisputeAlreadyOpen(existing.id)
    dispute = StatementDispute(
        id=str(uuid.uuid4()), statement_id=statement.id, line_id=line_id, raised_by=raised_by, raised_at=now,
        reason=reason, state="open",
    )  # fmt: skip
    session.add(dispute)
    session.flush()
    return dispute


def adjust_line(
    session: Session, *, statement: Statement, line_id: int, amount_fen: int, reason: str, made_by: str, now: datetime,
    dispute_id: str | None = None,
) -> tuple[StatementAdjustment, StatementLine]:  # fmt: skip
    """Change a line's final amount by ``amount_fen`` (signed) with a reason; the statement's totals follow."""
    _require_issued(statement)
    line = _line(session, statement, line_id, field_name="line_id")
    if amount_fen == 0:
        raise invalid("amount_fen", "调整金额不能为 0；An adjustment must change the amount.", "zero")
    if line.final_fen + amount_fen < 0:
        raise invalid(
            "amount_fen",
            f"调整后金额不能为负（当前 {line.final_fen} 分）；The line cannot go below 0 (it is {line.final_fen} fen).",
            "below_zero",
        )
    adjustment = StatementAdjustment(
        statement_id=statement.id, line_id=line_id, amount_fen=amount_fen, reason=reason, dispute_id=dispute_id,
        made_by=made_by, made_at=now,
    )  # fmt: skip
    line.adjustment_fen += amount_fen
    line.final_fen = line.amount_fen + line.adjustment_fen
    statement.adjustment_fen += amount_fen
    statement.total_fen = statement.gross_fen - statement.cap_reduction_fen + statement.adjustment_fen
    session.add_all([adjustment, line, statement])
    session.flush()
    return adjustment, line


def resolve_dispute(
    session: Session, *, statement: Statement, dispute_id: str, decision: str, amount_fen: int | None, reason: str,
    resolved_by: str, now: datetime,
) -> tuple[StatementDispute, StatementAdjustment | None]:  # fmt: skip
    """Finance keeps the line (reject) or sets its final amount (adjust), with a reason."""
    _require_issued(statement)
    dispute = session.get(StatementDispute, dispute_id)
    if dispute is None or dispute.statement_id != statement.id:
        raise DisputeNotFound(dispute_id)
    if dispute.state != "open":
        raise DisputeResolved(dispute_id)
    adjustment = None
    if decision == "adjust":
        assert amount_fen is not None
        line = _line(session, statement, dispute.line_id)
        change = amount_fen - line.final_fen
        if change != 0:
            adjustment, _ = adjust_line(
                session, statement=statement, line_id=line.id or 0, amount_fen=change, reason=reason,
                made_by=resolved_by, now=now, dispute_id=dispute.id,
            )  # fmt: skip
        dispute.state = "adjusted"
    else:
        dispute.state = "rejected"
    dispute.resolved_by, dispute.resolved_at, dispute.resolution = resolved_by, now, reason
    session.add(dispute)
    session.flush()
    return dispute, adjustment


def approve(session: Session, *, statement: Statement, approved_by: str, note: str | None, now: datetime) -> Statement:
    """Make an issued statement final (refused while disputes are open); emits StatementApprovedV1."""
    _require_issued(statement)
    still_open = open_dispute_count(session, statement.id)
    if still_open:
        raise OpenDisputes(still_open)
    statement.state = "approved"
    statement.approved_at, statement.approved_by, statement.approval_note = now, approved_by, note
    session.add(statement)
    emit(
        session,
        StatementApprovedV1(
            statement_id=statement.id, vendor_id=statement.vendor_id, period=statement.period,
            total_fen=statement.total_fen, approved_by=approved_by, approved_at=now,
        ),
        subject_id=statement.id,
    )  # fmt: skip
    session.flush()
    return statement
