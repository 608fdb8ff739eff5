"""HTTP routes of billing periods and vendors' statements: previews, closing, lines, disputes, adjustments,
approval and exports.

Statements are read by city administrators (all) and by a vendor's developers (their vendor's); district and
school administrators read usage, not statements. Finance decisions need ``city_admin`` with ``metering.approve``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlmodel import Session

from kit import audit
from kit.db import ReadSessionDep, SessionDep
from kit.pagination import PageDep
from metering import periods
from metering.deps import Caller, CallerDep, SettingsDep
from metering.statements import service
from metering.statements.errors import (
    NotStatementReader,
    NotVendorDeveloper,
    StatementNotFound,
    VendorNotFound,
    invalid,
)
from metering.statements.export import ExportData, filename, to_csv, to_xlsx
from metering.statements.models import BillingPeriod, Statement, StatementAdjustment, StatementDispute, StatementLine
from metering.statements.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    AdjustmentResult,
    ApprovalCreate,
    DisputeCreate,
    DisputeRead,
    DistrictTotalsRead,
    LinePage,
    LineRead,
    PeriodRead,
    PreviewRead,
    ResolutionCreate,
    ResolutionResult,
    StatementDetail,
    StatementPage,
    StatementRead,
    StatementState,
    TotalsRead,
)
from metering.statements.service import LineDraft, Totals

router = APIRouter(tags=["Statements"])

PERIOD_REGEX = r"^\d{4}-(0[1-9]|1[0-2])$"
PeriodQuery = Annotated[str | None, Query(pattern=PERIOD_REGEX, description="YYYY-MM, a month in China time")]
CAP_RULE = (
    "Amounts are integer fen: gross = quantity x unit price (the plan in force when used). A school's monthly cap "
    "(the app's plan in force at the period's end) applies per app and school to the lines of the period's own "
    "month; lines billing late usage of earlier months (late_usage_adjustment) are not capped again. A cap "
    "reduction is split over the capped lines in proportion to gross, rounded down to the fen, the fen left over "
    "going to the largest remainders, so the lines add up to the cap exactly."
)


def _audit(
    session: Session, caller: Caller, action: str, *, target_type: str, target_id: str, **detail: object
) -> None:
    audit.append(
        session, action=action, actor_id=caller.person_id, actor_client=caller.principal.client_id,
        source_ip=caller.source_ip, request_id=caller.request_id, target_type=target_type, target_id=target_id,
        detail=dict(detail),
    )  # fmt: skip


def _readable_vendors(session: Session, caller: Caller) -> set[str] | None:
    """The vendors whose statements the caller reads; None: every vendor's (the city)."""
    reach = caller.reach(session)
    if reach.every_school:
        return None
    if not reach.vendor_ids:
        raise NotStatementReader()
    return set(reach.vendor_ids)


def _readable_statement(session: Session, caller: Caller, statement_id: str) -> Statement:
    vendors = _readable_vendors(session, caller)
    statement = service.get_statement(session, statement_id)
    if vendors is not None and statement.vendor_id not in vendors:
        raise StatementNotFound(statement_id)
    return statement


def _finance_statement(session: Session, caller: Caller, statement_id: str) -> Statement:
    caller.require_finance()
    return service.get_statement(session, statement_id, for_update=True)


def _totals(totals: Totals) -> TotalsRead:
    return TotalsRead(
        gross_fen=totals.gross_fen, cap_reduction_fen=totals.cap_reduction_fen, adjustment_fen=totals.adjustment_fen,
        total_fen=totals.total_fen, lines=totals.lines,
    )  # fmt: skip


def _districts(session: Session, districts: dict[str | None, Totals]) -> list[DistrictTotalsRead]:
    names = service.organisation_names(session, districts)
    items = [
        DistrictTotalsRead(district_id=district_id, district_name=names.get(district_id or ""),
                           **_totals(totals).model_dump())
        for district_id, totals in districts.items()
    ]  # fmt: skip
    return sorted(items, key=lambda item: (item.district_id is None, item.district_name or "", item.district_id or ""))


def _statement_read(statement: Statement, vendor_name: str) -> StatementRead:
    return StatementRead(
        id=statement.id, vendor_id=statement.vendor_id, vendor_name=vendor_name, period=statement.period,
        state=statement.state,
        issued_at=statement.issued_at, approved_at=statement.approved_at, approved_by=statement.approved_by,
        approval_note=statement.approval_note,
        totals=TotalsRead(
            gross_fen=statement.gross_fen, cap_reduction_fen=statement.cap_reduction_fen,
            adjustment_fen=statement.adjustment_fen, total_fen=statement.total_fen, lines=statement.lines,
        ),
    )  # fmt: skip


def _vendor_name(session: Session, vendor_id: str) -> str:
    return service.vendor_names(session, [vendor_id]).get(vendor_id, "")


def _line_reads(session: Session, period: str, lines: list[StatementLine] | list[LineDraft]) -> list[LineRead]:
    apps = service.app_names(session, [line.app_id for line in lines])
    orgs = service.organisation_names(
        session, [*(line.school_id for line in lines), *(line.district_id for line in lines)]
    )
    reads = []
    for line in lines:
        reads.append(
            LineRead(
                id=line.id if isinstance(line, StatementLine) else None, app_id=line.app_id,
                app_name=apps.get(line.app_id, ""), school_id=line.school_id, school_name=orgs.get(line.school_id),
                district_id=line.district_id, district_name=orgs.get(line.district_id or ""), meter=line.meter,
                usage_period=line.usage_period, late_usage_adjustment=line.usage_period != period,
                plan_id=line.plan_id, unit_price_fen=line.unit_price_fen, quantity=line.quantity,
                gross_fen=line.gross_fen, cap_fen=line.cap_fen, cap_reduction_fen=line.cap_reduction_fen,
                amount_fen=line.amount_fen,
                adjustment_fen=line.adjustment_fen if isinstance(line, StatementLine) else 0,
                final_fen=line.final_fen if isinstance(line, StatementLine) else line.amount_fen,
            )
        )  # fmt: skip
    return reads


def _dispute_read(dispute: StatementDispute) -> DisputeRead:
    return DisputeRead.model_validate(dispute, from_attributes=True)


def _adjustment_read(adjustment: StatementAdjustment) -> AdjustmentRead:
    return AdjustmentRead.model_validate(adjustment, from_attributes=True)


# ------------------------------------------------------------------------------------------------ periods


def _period_read(period: str, record: BillingPeriod | None, *, now: datetime, grace_days: int) -> PeriodRead:
    if record is not None:
        state = "closed"
    elif now < periods.period_end(period):
        state = "open"
    else:
        state = "grace"
    return PeriodRead(
        period=period, state=state, starts_at=periods.period_start(period), ends_at=periods.period_end(period),
        grace_ends_at=periods.grace_ends(period, grace_days), closed_at=record.closed_at if record else None,
        closed_by=record.closed_by if record else None, statements=record.statements if record else None,
    )  # fmt: skip


@router.get("/periods")
def list_periods(caller: CallerDep, session: ReadSessionDep, settings: SettingsDep) -> list[PeriodRead]:
    """Billing periods, newest first: the current open month, earlier months still in their grace, closed ones."""
    caller.reach(session)
    now = service.utcnow()
    records = {record.period: record for record in service.closed_period_rows(session)}
    known = set(records)
    period = periods.period_of(now)
    known.add(period)
    for _ in range(3):
        period = periods.previous_period(period)
        known.add(period)
    return [
        _period_read(p, records.get(p), now=now, grace_days=settings.grace_days) for p in sorted(known, reverse=True)
    ]


@router.post("/periods/{period}/close")
def close_period(
    period: Annotated[str, Path(pattern=PERIOD_REGEX, description="YYYY-MM")],
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> PeriodRead:
    """Close a period now (city finance; only after its month ended): issues every vendor's statement for it.

    Usage for it arriving later bills in the next open period as an adjustment. A closed period cannot close again.
    """
    caller.require_finance()
    now = service.utcnow()
    record = service.close_period(session, period=period, settings=settings, now=now, closed_by=caller.person_id)
    _audit(session, caller, "metering.period_closed", target_type="billing_period", target_id=period,
           statements=record.statements)  # fmt: skip
    return _period_read(period, record, now=now, grace_days=settings.grace_days)


# ------------------------------------------------------------------------------------------------ preview


@router.get("/vendors/{vendor_id}/statement-preview", description=CAP_RULE)
def statement_preview(
    vendor_id: str, caller: CallerDep, session: ReadSessionDep, page: PageDep, period: PeriodQuery = None
) -> PreviewRead:
    """A vendor's statement for an open period as it stands now (default: the current month), computed live."""
    vendors = _readable_vendors(session, caller)
    if vendors is not None and vendor_id not in vendors:
        raise VendorNotFound(vendor_id)
    now = service.utcnow()
    current = periods.period_of(now)
    period = period or current
    if period > current:
        raise invalid("period", f"{period} 尚未开始；The period {period} has not begun.", "future_period")
    figures, lines = service.preview(session, vendor_id=vendor_id, period=period)
    return PreviewRead(
        vendor_id=vendor_id, vendor_name=_vendor_name(session, vendor_id), period=period, computed_at=now,
        totals=_totals(figures.totals), districts=_districts(session, figures.districts),
        lines=LinePage(
            items=_line_reads(session, period, lines[page.offset : page.offset + page.limit]), total=len(lines),
            limit=page.limit, offset=page.offset,
        ),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ statements


@router.get("/statements")
def list_statements(
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    period: PeriodQuery = None,
    vendor_id: Annotated[str | None, Query(max_length=36)] = None,
    state: StatementState | None = None,
) -> StatementPage:
    """Issued and approved statements, newest period first (the city: all; a vendor's developers: their vendor's)."""
    vendors = _readable_vendors(session, caller)
    rows, total = service.list_statements(
        session, vendor_ids=vendors, period=period, vendor_id=vendor_id, state=state, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip
    names = service.vendor_names(session, [row.vendor_id for row in rows])
    return StatementPage(
        items=[_statement_read(row, names.get(row.vendor_id, "")) for row in rows], total=total, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip


def _detail(session: Session, statement: Statement) -> StatementDetail:
    districts = service.district_totals(session, statement.id)
    late = service.late_usage_line_count(session, statement)
    return StatementDetail(
        **_statement_read(statement, _vendor_name(session, statement.vendor_id)).model_dump(),
        districts=_districts(session, districts), open_disputes=service.open_dispute_count(session, statement.id),
        late_usage_adjustment_lines=late,
    )  # fmt: skip


@router.get("/statements/{statement_id}", description=CAP_RULE)
def read_statement(statement_id: str, caller: CallerDep, session: ReadSessionDep) -> StatementDetail:
    """A statement with its totals, overall and per district."""
    return _detail(session, _readable_statement(session, caller, statement_id))


@router.get("/statements/{statement_id}/lines")
def statement_lines(
    statement_id: str,
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    school_id: Annotated[str | None, Query(max_length=64)] = None,
    district_id: Annotated[str | None, Query(max_length=36)] = None,
) -> LinePage:
    """A statement's lines with app and school names; late usage of earlier months is marked (补计)."""
    statement = _readable_statement(session, caller, statement_id)
    rows, total = service.lines_page(
        session, statement.id, app_id=app_id, school_id=school_id, district_id=district_id, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip
    return LinePage(items=_line_reads(session, statement.period, rows), total=total, limit=page.limit,
                    offset=page.offset)  # fmt: skip


def _export_data(session: Session, statement: Statement) -> ExportData:
    lines = service.all_lines(session, statement.id)
    districts = service.district_totals(session, statement.id)
    return ExportData(
        statement=statement, vendor_name=_vendor_name(session, statement.vendor_id), lines=lines,
        app_names=service.app_names(session, [line.app_id for line in lines]),
        org_names=service.organisation_names(
            session, [*(line.school_id for line in lines), *(district for district in districts)]
        ),
        districts=districts,
    )  # fmt: skip


@router.get("/statements/{statement_id}/export.csv", response_class=Response)
def export_csv(statement_id: str, caller: CallerDep, session: ReadSessionDep) -> Response:
    """The statement as CSV (UTF-8 with BOM): lines, totals per district, the city total; its state on top."""
    data = _export_data(session, _readable_statement(session, caller, statement_id))
    return Response(
        to_csv(data), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename(data, "csv")}"'},
    )  # fmt: skip


@router.get("/statements/{statement_id}/export.xlsx", response_class=Response)
def export_xlsx(statement_id: str, caller: CallerDep, session: ReadSessionDep) -> Response:
    """The statement as an Excel workbook: a sheet of lines and a sheet of district and city totals."""
    data = _export_data(session, _readable_statement(session, caller, statement_id))
    return Response(
        to_xlsx(data), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{filename(data, "xlsx")}"'},
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ disputes


@router.post("/statements/{statement_id}/lines/{line_id}/disputes", status_code=status.HTTP_201_CREATED)
def dispute_line(
    statement_id: str, line_id: int, body: DisputeCreate, caller: CallerDep, session: SessionDep
) -> DisputeRead:
    """The vendor disputes a line of an issued statement, with a reason (one open dispute per line)."""
    reach = caller.reach(session)
    statement = service.get_statement(session, statement_id, for_update=True)
    if statement.vendor_id not in reach.vendor_ids:
        if reach.every_school:
            raise NotVendorDeveloper()
        if not reach.vendor_ids:
            raise NotStatementReader()
        raise StatementNotFound(statement_id)
    dispute = service.raise_dispute(
        session, statement=statement, line_id=line_id, reason=body.reason, raised_by=caller.person_id,
        now=service.utcnow(),
    )  # fmt: skip
    _audit(session, caller, "metering.statement_line_disputed", target_type="statement", target_id=statement.id,
           line_id=line_id, dispute_id=dispute.id, reason=body.reason)  # fmt: skip
    return _dispute_read(dispute)


@router.get("/statements/{statement_id}/disputes")
def list_disputes(statement_id: str, caller: CallerDep, session: ReadSessionDep) -> list[DisputeRead]:
    """A statement's disputes, oldest first, with how finance resolved them."""
    statement = _readable_statement(session, caller, statement_id)
    return [_dispute_read(dispute) for dispute in service.disputes_of(session, statement.id)]


@router.post("/statements/{statement_id}/disputes/{dispute_id}/resolution")
def resolve_dispute(
    statement_id: str, dispute_id: str, body: ResolutionCreate, caller: CallerDep, session: SessionDep
) -> ResolutionResult:
    """City finance resolves a dispute: adjust (the line's new final amount) or reject (keep it), with a reason."""
    statement = _finance_statement(session, caller, statement_id)
    dispute, adjustment = service.resolve_dispute(
        session, statement=statement, dispute_id=dispute_id, decision=body.decision, amount_fen=body.amount_fen,
        reason=body.reason, resolved_by=caller.person_id, now=service.utcnow(),
    )  # fmt: skip
    _audit(session, caller, f"metering.dispute_{dispute.state}", target_type="statement", target_id=statement.id,
           dispute_id=dispute.id, line_id=dispute.line_id, amount_fen=body.amount_fen, reason=body.reason,
           change_fen=adjustment.amount_fen if adjustment else 0)  # fmt: skip
    return ResolutionResult(
        dispute=_dispute_read(dispute), adjustment=_adjustment_read(adjustment) if adjustment else None,
        statement=_statement_read(statement, _vendor_name(session, statement.vendor_id)),
    )  # fmt: skip


@router.post("/statements/{statement_id}/adjustments", status_code=status.HTTP_201_CREATED)
def adjust(statement_id: str, body: AdjustmentCreate, caller: CallerDep, session: SessionDep) -> AdjustmentResult:
    """City finance changes a line's amount by a signed number of fen, with a recorded reason."""
    statement = _finance_statement(session, caller, statement_id)
    adjustment, line = service.adjust_line(
        session, statement=statement, line_id=body.line_id, amount_fen=body.amount_fen, reason=body.reason,
        made_by=caller.person_id, now=service.utcnow(),
    )  # fmt: skip
    _audit(session, caller, "metering.statement_adjusted", target_type="statement", target_id=statement.id,
           line_id=line.id, amount_fen=body.amount_fen, reason=body.reason, adjustment_id=adjustment.id)  # fmt: skip
    return AdjustmentResult(
        adjustment=_adjustment_read(adjustment), line=_line_reads(session, statement.period, [line])[0],
        statement=_statement_read(statement, _vendor_name(session, statement.vendor_id)),
    )  # fmt: skip


@router.post("/statements/{statement_id}/approve")
def approve_statement(
    statement_id: str, caller: CallerDep, session: SessionDep, body: ApprovalCreate | None = None
) -> StatementRead:
    """City finance approves a statement (no open disputes): it becomes final and immutable."""
    statement = _finance_statement(session, caller, statement_id)
    note = body.note if body else None
    service.approve(session, statement=statement, approved_by=caller.person_id, note=note, now=service.utcnow())
    _audit(session, caller, "metering.statement_approved", target_type="statement", target_id=statement.id,
           total_fen=statement.total_fen, note=note)  # fmt: skip
    return _statement_read(statement, _vendor_name(session, statement.vendor_id))
