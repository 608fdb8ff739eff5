"""Usage over time for charts and the city dashboard, read from the aggregates only and grouped in SQL.

A point is one day or month of use (China Standard Time) and one combination of the grouped keys. Its amount is
quantity times the unit price of the plan that was in force when the app was used, counted only for the meter the
app is priced by; monthly caps per school are not applied here (statements apply them to what is billed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from kit.errors import FieldError, Forbidden, InvalidInput, NotFound
from metering import periods
from metering.deps import Reach
from metering.projections.models import MeteredApp, MeteredOrganisation, MeteredVendor, PricePlan
from metering.usage.models import UsageTotal
from metering.usage.schemas import GROUP_KEYS, GroupKey, UsagePoint, UsageSeries, UsageTotals

MAX_SPAN_DAYS = 400
MAX_POINTS = 10_000


class OutsideReach(Forbidden):
    """The caller asked for usage of a school, district, vendor or app they may not read."""

    slug = "metering/outside-reach"
    title_zh = "超出可查看范围"
    title_en = "Outside your reach"


class UnknownSchool(NotFound):
    slug = "metering/school-not-found"
    title_zh = "学校不存在"
    title_en = "School not found"

    def __init__(self, school_id: str) -> None:
        super().__init__(
            f"没有编号为 {school_id[:64]} 的学校；No school has the id {school_id[:64]!r}.", school_id=school_id[:64]
        )


@dataclass(frozen=True)
class UsageQuery:
    """What to sum: days of use (inclusive), bucket size, grouping and filters."""

    from_day: date
    to_day: date
    granularity: str = "day"
    group_by: tuple[GroupKey, ...] = ()
    app_id: str | None = None
    school_id: str | None = None
    district_id: str | None = None
    vendor_id: str | None = None
    meter: str | None = None
    status: str = "billable"
    limit: int = 5000


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{message}", errors=[FieldError(field=f"query.{field}", message=message)])


def parse_group_by(raw: str | None) -> tuple[GroupKey, ...]:
    """``app,school`` into its keys, in order and once each; 422 naming ``group_by`` for anything else."""
    keys: list[GroupKey] = []
    for part in (raw or "").split(","):
        name = part.strip()
        if not name:
            continue
        if name not in GROUP_KEYS:
            raise _invalid(
                "group_by",
                f"不能按 {name[:40]} 分组，可选 {', '.join(GROUP_KEYS)}；"
                f"Cannot group by {name[:40]!r}: use any of {', '.join(GROUP_KEYS)}, comma-separated.",
            )
        key: GroupKey = name
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def resolve_days(from_day: date | None, to_day: date | None, *, now: datetime) -> tuple[date, date]:
    """The days asked for, by default the current month; at most :data:`MAX_SPAN_DAYS` days, in order."""
    current = periods.period_of(now)
    start = from_day or (periods.first_day(periods.period_of_day(to_day)) if to_day else periods.first_day(current))
    end = to_day or (periods.last_day(periods.period_of_day(from_day)) if from_day else periods.last_day(current))
    if start > end:
        raise _invalid("from", "开始日期晚于结束日期；`from` is after `to`.")
    if (end - start).days + 1 > MAX_SPAN_DAYS:
        raise _invalid(
            "to",
            f"查询跨度不能超过 {MAX_SPAN_DAYS} 天；Ask for at most {MAX_SPAN_DAYS} days at a time.",
        )
    return start, end


def check_reach(session: Session, reach: Reach, query: UsageQuery) -> None:
    """403 when a filter names a school, district, vendor or app of which the caller could read nothing.

    A vendor's developer reads their apps' usage at every school, so school and district filters only narrow it;
    administrators read every app's usage at their schools, so vendor and app filters only narrow theirs.
    """
    if reach.every_school:
        return
    if query.school_id is not None and not reach.covers_school(query.school_id) and not reach.vendor_ids:
        raise OutsideReach(
            "您无权查看这所学校的使用量；You may not read this school's usage.", school_id=query.school_id
        )
    if query.district_id is not None and not reach.vendor_ids:
        schools = set(
            session.exec(
                select(MeteredOrganisation.org_id).where(
                    MeteredOrganisation.kind == "school", MeteredOrganisation.district_id == query.district_id
                )
            )
        )
        if not schools & reach.school_ids:
            raise OutsideReach(
                "您无权查看这个区县的使用量；You may not read this district's usage.", district_id=query.district_id
            )
    if reach.school_ids:
        return
    if query.vendor_id is not None and query.vendor_id not in reach.vendor_ids:
        raise OutsideReach("您只能查看本企业应用的使用量；You may read your own vendor's usage only.",
                           vendor_id=query.vendor_id)  # fmt: skip
    if query.app_id is not None:
        app = session.get(MeteredApp, query.app_id)
        if app is None or app.vendor_id not in reach.vendor_ids:
            raise OutsideReach("您只能查看本企业应用的使用量；You may read your own vendor's apps' usage only.",
                               app_id=query.app_id)  # fmt: skip


def check_school(session: Session, reach: Reach, school_id: str) -> MeteredOrganisation:
    """The school of a tenant route: 403 outside the caller's reach, 404 when it is not a known school."""
    if not reach.covers_school(school_id) and not reach.vendor_ids:
        raise OutsideReach(
            "您无权查看这所学校的使用量；You may not read this school's usage.", school_id=school_id[:64]
        )
    organisation = session.get(MeteredOrganisation, school_id)
    if organisation is None or organisation.kind != "school":
        raise UnknownSchool(school_id)
    return organisation


_School = aliased(MeteredOrganisation, name="school_org")


def _bucket(session: Session, granularity: str) -> Any:
    if granularity == "day":
        return col(UsageTotal.usage_day)
    # A literal format (not a bound parameter) so the same expression may appear in SELECT and GROUP BY.
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(col(UsageTotal.usage_day), sa.literal_column("'YYYY-MM'"))
    return sa.func.strftime(sa.literal_column("'%Y-%m'"), col(UsageTotal.usage_day))


def _filtered(statement: Any, reach: Reach, query: UsageQuery, *, join_app: bool, join_school: bool) -> Any:
    statement = statement.select_from(UsageTotal).outerjoin(PricePlan, col(PricePlan.id) == col(UsageTotal.plan_id))
    if join_app:
        statement = statement.outerjoin(MeteredApp, col(MeteredApp.app_id) == col(UsageTotal.app_id))
    if join_school:
        statement = statement.outerjoin(_School, _School.org_id == col(UsageTotal.school_id))
    conditions: list[Any] = [
        col(UsageTotal.usage_day) >= query.from_day,
        col(UsageTotal.usage_day) <= query.to_day,
        col(UsageTotal.status) == query.status,
    ]
    if query.app_id is not None:
        conditions.append(col(UsageTotal.app_id) == query.app_id)
    if query.school_id is not None:
        conditions.append(col(UsageTotal.school_id) == query.school_id)
    if query.meter is not None:
        conditions.append(col(UsageTotal.meter) == query.meter)
    if query.district_id is not None:
        conditions.append(_School.district_id == query.district_id)
    if query.vendor_id is not None:
        conditions.append(col(MeteredApp.vendor_id) == query.vendor_id)
    if not reach.every_school:
        readable = []
        if reach.school_ids:
            readable.append(col(UsageTotal.school_id).in_(sorted(reach.school_ids)))
        if reach.vendor_ids:
            readable.append(col(MeteredApp.vendor_id).in_(sorted(reach.vendor_ids)))
        conditions.append(sa.or_(*readable) if readable else sa.false())
    return statement.where(*conditions)


def _sums() -> list[Any]:
    priced = sa.case(
        (col(PricePlan.unit) == col(UsageTotal.meter), col(UsageTotal.quantity) * col(PricePlan.unit_price_fen)),
        else_=0,
    )
    return [
        sa.func.coalesce(sa.func.sum(col(UsageTotal.quantity)), 0).label("quantity"),
        sa.func.coalesce(sa.func.sum(col(UsageTotal.events)), 0).label("events"),
        sa.func.coalesce(sa.func.sum(priced), 0).label("amount_fen"),
    ]


def usage_series(session: Session, *, reach: Reach, query: UsageQuery) -> UsageSeries:
    """Sum the aggregates within reach into points per bucket and grouped keys, oldest first."""
    columns: dict[GroupKey, Any] = {
        "app": col(UsageTotal.app_id),
        "school": col(UsageTotal.school_id),
        "district": _School.district_id,
        "vendor": col(MeteredApp.vendor_id),
        "meter": col(UsageTotal.meter),
    }
    join_app = "vendor" in query.group_by or query.vendor_id is not None or bool(reach.vendor_ids)
    join_school = "district" in query.group_by or query.district_id is not None
    bucket = _bucket(session, query.granularity)
    grouped = [columns[key].label(key) for key in query.group_by]
    statement = _filtered(
        select(bucket.label("bucket"), *grouped, *_sums()), reach, query, join_app=join_app, join_school=join_school
    )
    keys = [bucket, *(columns[key] for key in query.group_by)]
    statement = statement.group_by(*keys).order_by(*keys).limit(query.limit + 1)
    rows = list(session.execute(statement).mappings())
    truncated = len(rows) > query.limit
    rows = rows[: query.limit]
    totals_row = session.execute(
        _filtered(select(*_sums()), reach, query, join_app=join_app, join_school=join_school)
    ).one()
    points = _points(session, rows, query.group_by)
    return UsageSeries(
        from_day=query.from_day, to_day=query.to_day, granularity=query.granularity,
        group_by=list(query.group_by), status=query.status, school_id=query.school_id,
        points=points,
        totals=UsageTotals(quantity=int(totals_row.quantity), events=int(totals_row.events),
                           amount_fen=int(totals_row.amount_fen)),
        truncated=truncated,
    )  # fmt: skip


def _points(session: Session, rows: Sequence[Any], group_by: Sequence[GroupKey]) -> list[UsagePoint]:
    def ids(key: str) -> list[str]:
        return sorted({row[key] for row in rows if row[key]}) if key in group_by else []

    app_names = _names(session, MeteredApp, col(MeteredApp.app_id), col(MeteredApp.name), ids("app"))
    vendor_names = _names(session, MeteredVendor, col(MeteredVendor.vendor_id), col(MeteredVendor.name), ids("vendor"))
    org_names = _names(
        session, MeteredOrganisation, col(MeteredOrganisation.org_id), col(MeteredOrganisation.name),
        ids("school") + ids("district"),
    )  # fmt: skip
    points = []
    for row in rows:
        bucket = row["bucket"]
        point: dict[str, Any] = {
            "bucket": bucket.isoformat() if isinstance(bucket, date) else str(bucket),
            "quantity": int(row["quantity"]),
            "events": int(row["events"]),
            "amount_fen": int(row["amount_fen"]),
        }
        if "app" in group_by:
            point["app_id"], point["app_name"] = row["app"], app_names.get(row["app"])
        if "school" in group_by:
            point["school_id"], point["school_name"] = row["school"], org_names.get(row["school"])
        if "district" in group_by:
            point["district_id"], point["district_name"] = row["district"], org_names.get(row["district"] or "")
        if "vendor" in group_by:
            point["vendor_id"], point["vendor_name"] = row["vendor"], vendor_names.get(row["vendor"] or "")
        if "meter" in group_by:
            point["meter"] = row["meter"]
        points.append(UsagePoint(**point))
    return points


def _names(session: Session, model: Any, key: Any, name: Any, wanted: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update({str(k): str(n) for k, n in session.execute(select(key, name).where(key.in_(chunk))).all()})
    return found
