"""Recording usage: every event once, priced by the plan of its time, checked against installations, summed.

``record_usage`` takes a batch of usage from any source and, in the caller's transaction:

1. resolves each event's app, price plan (the plan in force when it was used) and installation at that moment;
2. decides its status: billable; held for the city's review (vendor reports without a matching launch, or far
   above what the platform observed); not_installed or unknown (kept and reported, never billed);
3. inserts it into the ledger unless its (source, id) is already there: a re-sent event is a duplicate forever;
4. for a billable launch, adds the user to the month's active users (a derived row unique per app, school, month
   and pseudonym, so the unique index does the distinct count);
5. adds the new rows to the aggregates.

Statuses change later through :func:`change_status`, which moves the quantities between aggregates with them:
an installation or a price plan that arrives after the usage it covers releases it, a launch that arrives after
the vendor's report of it matches it, and the city decides what stays held.
"""

from __future__ import annotations

import bisect
import logging
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kit.db import add_to_counters, driver_placeholder, insert_new_rows
from metering import periods
from metering.projections.models import InstallationSpan, MeteredApp, PricePlan
from metering.statements.models import BillingPeriod
from metering.usage.models import UsageEvent, UsageMonthTotal, UsageTotal

logger = logging.getLogger("metering.usage")

LAUNCH = "launch"
API_CALL = "api_call"
MONTHLY_ACTIVE_USER = "monthly_active_user"
MINUTE = "minute"
REPORTED_UNIT = "reported_unit"

# Reasons, shown to the city and the vendor next to a status.
REASON_NOT_INSTALLED = "not_installed_at_time"
REASON_UNKNOWN_APP = "unknown_app"
REASON_NO_PLAN = "no_price_plan_at_time"
REASON_NO_LAUNCH = "no_launch_given"
REASON_LAUNCH_NOT_SEEN = "launch_not_observed"
REASON_LAUNCH_MISMATCH = "launch_of_other_app_or_school"
REASON_ABOVE_OBSERVED = "above_observed_activity"
REASON_ACCEPTED = "accepted_by_city"


@dataclass(frozen=True, slots=True)
class UsageInput:
    """One event of use as a source reported it."""

    source: str
    source_event_id: str
    app_id: str
    school_id: str | None
    meter: str
    quantity: int
    occurred_at: datetime
    user_pseudonym: str | None = None
    role: str | None = None
    launch_id: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of one input: new (with its status) or a duplicate of an earlier event."""

    duplicate: bool
    status: str | None = None
    reason: str | None = None
    billing_period: str | None = None


@dataclass
class _Context:
    """Reference data for one batch, loaded in a few queries."""

    apps: dict[str, MeteredApp]
    plans: dict[str, list[PricePlan]]
    spans: dict[tuple[str, str], list[_Span]]
    closed: set[str]
    launches: dict[str, UsageEvent] = field(default_factory=dict)
    plan_times: dict[str, list[datetime]] = field(default_factory=dict)

    def plan_at(self, app_id: str, at: datetime) -> PricePlan | None:
        """The app's plan in force at ``at`` (the same answer as :func:`plan_at`, by bisection)."""
        times = self.plan_times.get(app_id)
        if times is None:
            plans = self.plans.get(app_id, ())
            times = self.plan_times[app_id] = [_aware(plan.effective_at) for plan in plans]
        index = bisect.bisect_right(times, at)
        return self.plans[app_id][index - 1] if index else None

    reported_per_launch: dict[str, int] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


def hold_classification_lock(session: Session, *, exclusive: bool) -> None:
    """Order recording usage against the facts that classify it (PostgreSQL; SQLite's write lock already does).

    Recording holds the lock shared, from before it reads apps, plans, installations and periods until it commits;
    closing a period and applying a price plan or an installation (which re-checks usage recorded without it) hold
    it exclusively. So usage either sees a fact committed or is there, committed, for the fact to re-check: two
    consumers of different streams cannot both miss each other.
    """
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(sa.text(f"SELECT {function}(:key)"), {"key": periods.PERIOD_LOCK_KEY})


def closed_periods(session: Session) -> set[str]:
    return set(session.exec(select(BillingPeriod.period)))


def billing_period_for(usage_period: str, closed: set[str]) -> str:
    """The period usage is billed in: its own month while that is open, else the next open one (an adjustment)."""
    period = usage_period
    while period in closed:
        period = periods.next_period(period)
    return period


def plan_at(plans: Sequence[PricePlan], at: datetime) -> PricePlan | None:
    """The plan in force at ``at``: the latest one that took effect at or before it (plans sorted oldest first)."""
    found = None
    for plan in plans:
        if _aware(plan.effective_at) <= at:
            found = plan
        else:
            break
    return found


class _Span(NamedTuple):
    granted_at: datetime
    removed_at: datetime | None


def installed_at(spans: Iterable[_Span], at: datetime) -> bool:
    """Whether one of the installation's spans (aware times) covers ``at``."""
    return any(span.granted_at <= at and (span.removed_at is None or at < span.removed_at) for span in spans)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored moment is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# (app, school) pairs looked up per query; well under every database's limit on bound parameters.
_PAIRS_PER_QUERY = 200


def _load_context(session: Session, inputs: Sequence[UsageInput]) -> _Context:
    hold_classification_lock(session, exclusive=False)
    app_ids = sorted({item.app_id for item in inputs})
    apps = {app.app_id: app for app in session.exec(select(MeteredApp).where(col(MeteredApp.app_id).in_(app_ids)))}
    plans: dict[str, list[PricePlan]] = defaultdict(list)
    for plan in session.exec(
        select(PricePlan)
        .where(col(PricePlan.app_id).in_(app_ids))
        .order_by(col(PricePlan.app_id), col(PricePlan.effective_at), col(PricePlan.id))
    ):
        plans[plan.app_id].append(plan)
    pairs = sorted({(item.app_id, item.school_id) for item in inputs if item.school_id})
    spans: dict[tuple[str, str], list[_Span]] = defaultdict(list)
    for start in range(0, len(pairs), _PAIRS_PER_QUERY):
        for app_id, school_id, granted_at, removed_at in _installation_rows(
            session, pairs[start : start + _PAIRS_PER_QUERY]
        ):
            spans[(app_id, school_id)].append(
                _Span(_moment(granted_at), None if removed_at is None else _moment(removed_at))
            )
    context = _Context(apps=apps, plans=plans, spans=spans, closed=closed_periods(session))
    launch_ids = sorted({item.launch_id for item in inputs if item.launch_id and item.source == "vendor"})
    if launch_ids:
        for event in session.exec(
            select(UsageEvent).where(UsageEvent.source == "appstore", col(UsageEvent.source_event_id).in_(launch_ids))
        ):
            context.launches[event.source_event_id] = event
        context.reported_per_launch = reported_units_by_launch(session, launch_ids)
    return context


def _installation_rows(session: Session, pairs: Sequence[tuple[str, str]]) -> Iterable[Sequence[Any]]:
    """The installation spans of these (app, school) pairs as plain driver rows: a batch can touch a thousand
    installations, and compiling the expanding tuple IN and processing each row through SQLAlchemy cost more than
    the look-up. Each dialect gets the row-value IN it plans on the (app, school) index."""
    placeholder = driver_placeholder(session)
    connection = session.connection()
    if placeholder is None:
        table = InstallationSpan.__table__
        return connection.execute(
            sa.select(table.c.app_id, table.c.school_id, table.c.granted_at, table.c.removed_at).where(
                sa.tuple_(table.c.app_id, table.c.school_id).in_(pairs)
            )
        )
    marks = ", ".join([f"({placeholder}, {placeholder})"] * len(pairs))
    values = f"VALUES {marks}" if connection.dialect.name == "sqlite" else marks
    return connection.exec_driver_sql(
        "SELECT app_id, school_id, granted_at, removed_at FROM installation_span "  # noqa: S608 - placeholders only
        f"WHERE (app_id, school_id) IN ({values})",
        tuple(value for pair in pairs for value in pair),
    )


def _moment(value: datetime | str) -> datetime:
    """A stored moment from the driver: SQLite gives SQLAlchemy's text (UTC wall time), PostgreSQL a datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return _aware(value)


def reported_units_by_launch(session: Session, launch_ids: Sequence[str]) -> dict[str, int]:
    rows = session.exec(
        select(UsageEvent.launch_id, sa.func.sum(UsageEvent.quantity))
        .where(
            UsageEvent.source == "vendor",
            col(UsageEvent.launch_id).in_(launch_ids),
            col(UsageEvent.status).in_(("billable", "held")),
        )
        .group_by(col(UsageEvent.launch_id))
    ).all()
    return {str(launch_id): int(total or 0) for launch_id, total in rows}


def _status(item: UsageInput, context: _Context, plan: PricePlan | None, max_per_launch: int) -> tuple[str, str | None]:
    if item.app_id not in context.apps:
        return "unknown", REASON_UNKNOWN_APP
    if plan is None:
        return "unknown", REASON_NO_PLAN
    if item.school_id and not installed_at(context.spans.get((item.app_id, item.school_id), ()), item.occurred_at):
        return "not_installed", REASON_NOT_INSTALLED
    if item.source != "vendor":
        return "billable", None
    return reconcile(item, context.launches.get(item.launch_id or ""), context.reported_per_launch, max_per_launch)


def reconcile(
    item: UsageInput, launch: UsageEvent | None, reported_per_launch: dict[str, int], max_per_launch: int
) -> tuple[str, str | None]:
    """A vendor report is paid automatically only when it matches a launch the platform saw and stays in bounds."""
    if not item.launch_id:
        return "held", REASON_NO_LAUNCH
    if launch is None:
        return "held", REASON_LAUNCH_NOT_SEEN
    if launch.app_id != item.app_id or launch.school_id != (item.school_id or ""):
        return "held", REASON_LAUNCH_MISMATCH
    already = reported_per_launch.get(item.launch_id, 0)
    reported_per_launch[item.launch_id] = already + item.quantity
    if already + item.quantity > max_per_launch:
        return "held", REASON_ABOVE_OBSERVED
    return "billable", None


#: The condition of the ledger's partial indexes, written exactly as they are, for queries over non-billable rows.
NOT_BILLABLE = sa.text("status <> 'billable'")
_LEDGER = UsageEvent.__table__
_LEDGER_COLUMNS = [column.name for column in _LEDGER.c if column.name != "id"]
# Every ledger row dict carries every column, so one C-level getter turns it into the driver's tuple.
_ledger_values = operator.itemgetter(*_LEDGER_COLUMNS)
_TOTALS = UsageTotal.__table__
_MONTH_TOTALS = UsageMonthTotal.__table__
_LEDGER_KEY = ("source", "source_event_id")


def _insert_new(session: Session, rows: list[dict[str, object]]) -> set[tuple[str, str]]:
    """Insert the ledger rows not there yet (one row per key); returns the (source, id) keys that were new.

    The unique key decides (:func:`kit.db.insert_new_rows`): two replicas inserting the same event at once both
    succeed, and only one of them counts it.
    """
    return insert_new_rows(session, _LEDGER, _LEDGER_COLUMNS, [_ledger_values(row) for row in rows], _LEDGER_KEY)


_TotalKey = tuple[str, date, str, str, str, int, str]


# The aggregates' primary keys, in the order of ``_TotalKey`` (checked below), then the counters.
_DAILY_KEY = ("billing_period", "usage_day", "app_id", "school_id", "meter", "plan_id", "status")
_MONTHLY_KEY = ("billing_period", "usage_period", "app_id", "school_id", "meter", "plan_id", "status")
_COUNTERS = ("quantity", "events")
assert [column.name for column in _TOTALS.primary_key.columns] == list(_DAILY_KEY)
assert [column.name for column in _MONTH_TOTALS.primary_key.columns] == list(_MONTHLY_KEY)


def _add_to_totals(session: Session, deltas: dict[_TotalKey, tuple[int, int]]) -> None:
    """Add (quantity, events) to the daily and monthly aggregates, creating rows as needed (rows sorted by key, so
    concurrent writers lock them in the same order)."""
    if not deltas:
        return
    monthly: dict[tuple[str, str, str, str, str, int, str], list[int]] = {}
    month_of: dict[date, str] = {}
    for (billing_period, day, app_id, school_id, meter, plan_id, status), (quantity, events) in deltas.items():
        month = month_of.get(day)
        if month is None:
            month = month_of[day] = periods.period_of_day(day)
        key = (billing_period, month, app_id, school_id, meter, plan_id, status)
        found = monthly.get(key)
        if found is None:
            monthly[key] = [quantity, events]
        else:
            found[0] += quantity
            found[1] += events
    add_to_counters(
        session, _TOTALS, _DAILY_KEY, _COUNTERS, [(*key, *counts) for key, counts in sorted(deltas.items())]
    )
    add_to_counters(
        session, _MONTH_TOTALS, _MONTHLY_KEY, _COUNTERS, [(*key, *counts) for key, counts in sorted(monthly.items())]
    )


_TOTAL_KEY_FIELDS = ("billing_period", "usage_day", "app_id", "school_id", "meter", "plan_id", "status")
_total_key_of_row = operator.itemgetter(*_TOTAL_KEY_FIELDS)
_total_key_of_event = operator.attrgetter(*_TOTAL_KEY_FIELDS)


def _total_key(row: dict[str, object] | UsageEvent) -> _TotalKey:
    if isinstance(row, dict):
        return _total_key_of_row(row)
    return _total_key_of_event(row)


def record_usage(
    session: Session,
    inputs: Sequence[UsageInput],
    *,
    max_reported_units_per_launch: int,
    now: datetime | None = None,
) -> list[Recorded]:
    """Record a batch of usage (see the module's docstring); returns one outcome per input, in order."""
    if not inputs:
        return []
    received_at = now or utcnow()
    context = _load_context(session, inputs)
    rows: list[dict[str, object]] = []
    billing_periods: dict[str, str] = {}
    for item in inputs:
        occurred_at = item.occurred_at.astimezone(UTC)
        plan = context.plan_at(item.app_id, occurred_at)
        status, reason = _status(item, context, plan, max_reported_units_per_launch)
        usage_day = periods.local_day(occurred_at)
        usage_period = periods.period_of_day(usage_day)
        billing_period = billing_periods.get(usage_period)
        if billing_period is None:
            billing_period = billing_periods[usage_period] = billing_period_for(usage_period, context.closed)
        app = context.apps.get(item.app_id)
        rows.append({
            "source": item.source, "source_event_id": item.source_event_id, "app_id": item.app_id,
            "vendor_id": app.vendor_id if app else None, "school_id": item.school_id or "", "meter": item.meter,
            "quantity": item.quantity, "user_pseudonym": item.user_pseudonym, "role": item.role,
            "launch_id": item.launch_id, "occurred_at": occurred_at, "usage_day": usage_day,
            "usage_period": usage_period, "billing_period": billing_period,
            "plan_id": plan.id if plan and plan.id else 0, "status": status, "reason": reason,
            "received_at": received_at, "decided_by": None, "decided_at": None, "decision_reason": None,
        })  # fmt: skip
    # One row per key even if the batch repeats an event: the first one stands.
    unique: dict[tuple[str, str], dict[str, object]] = {}
    for row in rows:
        unique.setdefault((str(row["source"]), str(row["source_event_id"])), row)
    new_keys = _insert_new(session, list(unique.values()))
    deltas: dict[_TotalKey, tuple[int, int]] = defaultdict(lambda: (0, 0))
    active_users: list[dict[str, object]] = []
    outcomes: list[Recorded] = []
    counted: set[tuple[str, str]] = set()
    for row in rows:
        key = (str(row["source"]), str(row["source_event_id"]))
        if key not in new_keys or key in counted:
            outcomes.append(Recorded(duplicate=True))
            continue
        counted.add(key)
        total_key = _total_key(row)
        quantity, events = deltas[total_key]
        deltas[total_key] = (quantity + int(row["quantity"]), events + 1)  # type: ignore[call-overload]
        if row["meter"] == LAUNCH and row["status"] == "billable" and row["user_pseudonym"]:
            active_users.append(_active_user_row(row, received_at))
        outcomes.append(Recorded(duplicate=False, status=str(row["status"]), reason=row["reason"],  # type: ignore[arg-type]
                                 billing_period=str(row["billing_period"])))  # fmt: skip
    if active_users:
        _record_active_users(session, active_users, deltas)
    _add_to_totals(session, deltas)
    return outcomes


def _active_user_row(launch: dict[str, object], received_at: datetime) -> dict[str, object]:
    """The derived row that makes a user active for an app at a school in a month (priced like a launch then)."""
    key = f"{launch['usage_period']}|{launch['app_id']}|{launch['school_id']}|{launch['user_pseudonym']}"
    return {**launch, "source": "derived", "source_event_id": key, "meter": MONTHLY_ACTIVE_USER, "quantity": 1,
            "launch_id": launch.get("launch_id") or launch["source_event_id"], "received_at": received_at}  # fmt: skip


def _record_active_users(
    session: Session, rows: list[dict[str, object]], deltas: dict[_TotalKey, tuple[int, int]]
) -> None:
    unique: dict[str, dict[str, object]] = {}
    for row in rows:
        unique.setdefault(str(row["source_event_id"]), row)
    new_keys = _insert_new(session, list(unique.values()))
    for event_id, row in unique.items():
        if ("derived", event_id) in new_keys:
            quantity, events = deltas[_total_key(row)]
            deltas[_total_key(row)] = (quantity + 1, events + 1)


def change_status(
    session: Session,
    events: Sequence[UsageEvent],
    *,
    status: str,
    reason: str | None,
    decided_by: str | None = None,
    decision_reason: str | None = None,
    plan_id: int | None = None,
    vendor_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Move ledger rows to another status, and their quantities between aggregates with them.

    A row whose billing period has closed since moves to the next open period (it shows there as an adjustment).
    Launches that become billable make their users active for the month. Returns how many rows changed.
    """
    moment = now or utcnow()
    hold_classification_lock(session, exclusive=False)
    closed = closed_periods(session)
    deltas: dict[_TotalKey, tuple[int, int]] = defaultdict(lambda: (0, 0))
    active_users: list[dict[str, object]] = []
    changed = 0
    for event in events:
        if event.status == status and event.reason == reason and plan_id in (None, event.plan_id):
            continue
        old_key = _total_key(event)
        quantity, count = deltas[old_key]
        deltas[old_key] = (quantity - event.quantity, count - 1)
        event.status = status
        event.reason = reason
        if plan_id is not None:
            event.plan_id = plan_id
        if vendor_id is not None:
            event.vendor_id = vendor_id
        event.billing_period = billing_period_for(event.usage_period, closed)
        if decided_by is not None:
            event.decided_by, event.decided_at, event.decision_reason = decided_by, moment, decision_reason
        session.add(event)
        new_key = _total_key(event)
        quantity, count = deltas[new_key]
        deltas[new_key] = (quantity + event.quantity, count + 1)
        changed += 1
        if event.meter == LAUNCH and status == "billable" and event.user_pseudonym:
            active_users.append(_active_user_row(event.model_dump(exclude={"id"}), moment))
    session.flush()
    if active_users:
        _record_active_users(session, active_users, deltas)
    _add_to_totals(session, {key: value for key, value in deltas.items() if value != (0, 0)})
    return changed


def reconsider_app(
    session: Session,
    app_id: str,
    *,
    max_reported_units_per_launch: int,
    school_id: str | None = None,
    reasons: Sequence[str] = (REASON_UNKNOWN_APP, REASON_NO_PLAN, REASON_NOT_INSTALLED),
) -> int:
    """Re-check usage of an app that was not billable for want of an app, a plan or an installation.

    Called when the app store's facts arrive later than the usage they cover (a consumer that lagged, a replay):
    a publication re-checks the app's usage that lacked the app or a plan, an installation only the app's usage
    at that school that lacked an installation. Rows that change together move together.
    """
    query = select(UsageEvent).where(
        UsageEvent.app_id == app_id,
        NOT_BILLABLE,  # the partial index's own condition, so the planner uses it
        col(UsageEvent.status).in_(("unknown", "not_installed")),
        col(UsageEvent.reason).in_(list(reasons)),
        UsageEvent.source != "derived",
    )
    if school_id is not None:
        query = query.where(UsageEvent.school_id == school_id)
    stale = list(session.exec(query))
    if not stale:
        return 0
    inputs = [_as_input(event) for event in stale]
    context = _load_context(session, inputs)
    groups: dict[tuple[str, str | None, int, str | None], list[UsageEvent]] = defaultdict(list)
    for event, item in zip(stale, inputs, strict=True):
        plan = context.plan_at(item.app_id, item.occurred_at)
        status, reason = _status(item, context, plan, max_reported_units_per_launch)
        plan_id = plan.id if plan and plan.id else 0
        if status != event.status or reason != event.reason or plan_id != event.plan_id:
            app = context.apps.get(item.app_id)
            groups[(status, reason, plan_id, app.vendor_id if app else None)].append(event)
    changed = 0
    for (status, reason, plan_id, vendor_id), events in groups.items():
        changed += change_status(
            session, events, status=status, reason=reason, plan_id=plan_id, vendor_id=vendor_id
        )  # fmt: skip
    return changed


def _as_input(event: UsageEvent) -> UsageInput:
    return UsageInput(
        source=event.source, source_event_id=event.source_event_id, app_id=event.app_id,
        school_id=event.school_id or None, meter=event.meter, quantity=event.quantity,
        occurred_at=_aware(event.occurred_at), user_pseudonym=event.user_pseudonym, role=event.role,
        launch_id=event.launch_id,
    )  # fmt: skip


def launches_with_waiting_reports(session: Session, launch_ids: Sequence[str]) -> list[str]:
    """Of these launches, those a vendor reported units for before the platform's launch event arrived."""
    if not launch_ids:
        return []
    statement = select(UsageEvent.launch_id).where(
        col(UsageEvent.launch_id).in_(list(launch_ids)),
        UsageEvent.source == "vendor",
        UsageEvent.status == "held",
        UsageEvent.reason == REASON_LAUNCH_NOT_SEEN,
    )
    return sorted({launch_id for launch_id in session.exec(statement) if launch_id is not None})


def match_reports_to_launch(session: Session, launch_id: str, *, max_reported_units_per_launch: int) -> int:
    """A launch the platform observed after the vendor reported units for it: release the reports it matches."""
    waiting = list(
        session.exec(
            select(UsageEvent)
            .where(UsageEvent.launch_id == launch_id, UsageEvent.source == "vendor", UsageEvent.status == "held",
                   UsageEvent.reason == REASON_LAUNCH_NOT_SEEN)
            .order_by(col(UsageEvent.id))
        )
    )  # fmt: skip
    if not waiting:
        return 0
    launch = session.exec(
        select(UsageEvent).where(UsageEvent.source == "appstore", UsageEvent.source_event_id == launch_id)
    ).first()
    totals = reported_units_by_launch(session, [launch_id])
    # Units already matched count first; the waiting ones are added as if they had arrived now, in order.
    totals[launch_id] = totals.get(launch_id, 0) - sum(event.quantity for event in waiting)
    changed = 0
    for event in waiting:
        status, reason = reconcile(_as_input(event), launch, totals, max_reported_units_per_launch)
        changed += change_status(session, [event], status=status, reason=reason)
    return changed
