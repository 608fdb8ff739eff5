"""HTTP routes of usage queries: usage and cost over time within the caller's reach (the city dashboard's data)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from kit.db import ReadSessionDep
from metering.deps import CallerDep
from metering.usage import queries
from metering.usage.queries import MAX_POINTS, MAX_SPAN_DAYS, UsageQuery
from metering.usage.schemas import Granularity, Meter, UsageSeries, UsageStatus
from metering.usage.service import utcnow

router = APIRouter(tags=["Usage"])

_GROUP_BY_HELP = "Comma-separated keys to group by: app, school, district, vendor, meter (none: one series)"


def usage_query(
    from_day: Annotated[
        date | None, Query(alias="from", description="First day of use, inclusive (default: this month's first)")
    ] = None,
    to_day: Annotated[
        date | None,
        Query(alias="to", description=f"Last day of use, inclusive (default: month end; at most {MAX_SPAN_DAYS} days)"),
    ] = None,
    granularity: Annotated[Granularity, Query(description="Bucket size: day or month of use")] = "day",
    group_by: Annotated[str | None, Query(max_length=100, description=_GROUP_BY_HELP)] = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    vendor_id: Annotated[str | None, Query(max_length=64)] = None,
    meter: Annotated[Meter | None, Query()] = None,
    status: Annotated[UsageStatus, Query(description="Which usage: billable (default), held, not billable")] = (
        "billable"
    ),
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS, description="Most points returned")] = 5000,
) -> UsageQuery:
    start, end = queries.resolve_days(from_day, to_day, now=utcnow())
    return UsageQuery(
        from_day=start, to_day=end, granularity=granularity, group_by=queries.parse_group_by(group_by),
        app_id=app_id, district_id=district_id, vendor_id=vendor_id, meter=meter, status=status, limit=limit,
    )  # fmt: skip


UsageQueryDep = Annotated[UsageQuery, Depends(usage_query)]


@router.get("/usage")
def read_usage(
    caller: CallerDep,
    query: UsageQueryDep,
    session: ReadSessionDep,
    school_id: Annotated[str | None, Query(max_length=64)] = None,
) -> UsageSeries:
    """Usage and cost over time within your reach, per day or month of use (China Standard Time), grouped and
    filtered as asked.

    The city reads everything, a district administrator the district's schools, a school administrator the school,
    a vendor's developer the vendor's apps at every school. A school, district, vendor or app outside your reach is
    refused (403). ``amount_fen`` is quantity x the unit price of the plan in force at the time of use, for the meter
    each app is priced by, **before** the monthly caps per school (statements apply the caps)."""
    reach = caller.reach(session)
    query = replace(query, school_id=school_id)
    queries.check_reach(session, reach, query)
    return queries.usage_series(session, reach=reach, query=query)


@router.get("/schools/{school_id}/usage")
def read_school_usage(school_id: str, caller: CallerDep, query: UsageQueryDep, session: ReadSessionDep) -> UsageSeries:
    """A school's usage of its apps over time: the same figures as ``GET /usage`` restricted to one school.

    The school's administrators and those of its district and city read all of it; a vendor's developer reads
    their own apps' usage there. Amounts are before the monthly caps per school."""
    reach = caller.reach(session)
    queries.check_school(session, reach, school_id)
    query = replace(query, school_id=school_id)
    queries.check_reach(session, reach, query)
    return queries.usage_series(session, reach=reach, query=query)
