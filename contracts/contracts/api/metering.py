"""Metering routes (served at /api/metering) and the usage-report format vendors' apps send.

* A vendor's app reports units of use it counts itself (``reported_unit`` plans) as a batch of CloudEvents
  (``application/cloudevents-batch+json``), with its own client-credentials token (``metering.report``).
* People read usage, costs, statements and the benefit ranking within their reach (``metering.read``): the
  city everything, a district its schools, a school itself, a vendor's developers their vendor.
* City finance (``city_admin`` with ``metering.approve``) closes periods, decides usage held for review,
  resolves disputes and approves statements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.api.routes import RouteSpec, ServiceApi, TenantLocator

#: The CloudEvents ``type`` of one vendor-reported usage event.
USAGE_REPORT_EVENT_TYPE = "edu.metering.unit.reported.v1"
#: The media type of a batch (CloudEvents JSON batch format); plain ``application/json`` arrays are taken too.
CLOUDEVENTS_BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
MAX_REPORT_BATCH = 1000


class UsageReportData(BaseModel):
    """The ``data`` of one vendor-reported usage event."""

    model_config = ConfigDict(extra="forbid")

    school_id: str = Field(min_length=1, max_length=64, description="The school where the units were used")
    quantity: int = Field(gt=0, le=1_000_000, description="Whole units of the app's reported unit")
    unit: str | None = Field(
        default=None, max_length=60, description="The unit's name, checked against the app's plan when given"
    )
    launch_id: str | None = Field(
        default=None,
        max_length=64,
        description="The platform launch the units belong to (the LTI custom claim `launch_id`, or the OIDC "
        "`login_hint`); reports without one are held for the city's review",
    )
    app_id: str | None = Field(
        default=None, max_length=64, description="The app; defaults to the app whose token sends the report"
    )


ReportOutcome = Literal["accepted", "held", "duplicate", "rejected"]


class ReportProblem(BaseModel):
    """Why one event of a batch was rejected (RFC 9457 members, per event)."""

    type: str
    title: str
    detail: str
    pointer: str | None = Field(default=None, description="JSON pointer into the event that is wrong")


class ReportResult(BaseModel):
    index: int = Field(description="Position of the event in the batch")
    id: str | None = Field(description="The event's CloudEvents id (the vendor's idempotency id), when readable")
    outcome: ReportOutcome = Field(
        description="accepted: counted; held: counted but paid only after the city's review; duplicate: this id "
        "was received before and counts once; rejected: not counted, see problem"
    )
    usage_period: str | None = Field(default=None, description="The month the units are billed in (YYYY-MM)")
    reason: str | None = Field(
        default=None,
        description="Why held units are not paid automatically, e.g. no_launch_given, launch_not_observed, "
        "above_observed_activity, not_installed_at_time",
    )
    problem: ReportProblem | None = None


class ReportBatchResult(BaseModel):
    accepted: int
    held: int
    duplicates: int
    rejected: int
    results: list[ReportResult]
    received_at: datetime


class UsageReportEvent(BaseModel):
    """One CloudEvents 1.0 event of a usage-report batch (structured JSON)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=100, description="The vendor's idempotency id, unique per app")
    source: str = Field(min_length=1, max_length=200, description="E.g. /apps/<client id>")
    type: Literal["edu.metering.unit.reported.v1"]
    time: AwareDatetime = Field(description="When the units were used")
    subject: str | None = None
    datacontenttype: Literal["application/json"] | None = None
    data: UsageReportData


_READ = ("metering.read",)
_APPROVE = ("metering.approve",)
_SCHOOL = TenantLocator(source="path", name="school_id")
_STATEMENT = "/statements/{statement_id}"

# fmt: off
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(method="POST", path="/usage-reports", summary="Report units of use the app counted (a CloudEvents batch)",
              scopes=("metering.report",), app_access="open", rate_limit="600/minute", max_body_bytes=2_097_152),
    RouteSpec(method="GET", path="/usage", summary="Usage and cost over time, by app, school, district or vendor",
              scopes=_READ),
    RouteSpec(method="GET", path="/schools/{school_id}/usage", summary="A school's usage of its apps over time",
              scopes=_READ, tenant=_SCHOOL),
    RouteSpec(method="GET", path="/usage/held", summary="Usage held for review or not billable, with the reason",
              scopes=_READ),
    RouteSpec(method="POST", path="/usage/held/{usage_id}/decision",
              summary="Accept or reject usage held for review", scopes=_APPROVE),
    RouteSpec(method="GET", path="/periods", summary="Billing periods and their state", scopes=_READ),
    RouteSpec(method="POST", path="/periods/{period}/close",
              summary="Close a billing period now (after its month) and issue its statements", scopes=_APPROVE),
    RouteSpec(method="GET", path="/vendors/{vendor_id}/statement-preview",
              summary="A vendor's statement for an open period, as it stands now", scopes=_READ),
    RouteSpec(method="GET", path="/statements", summary="Issued statements", scopes=_READ),
    RouteSpec(method="GET", path=_STATEMENT, summary="A statement with its totals", scopes=_READ),
    RouteSpec(method="GET", path=f"{_STATEMENT}/lines", summary="A statement's lines", scopes=_READ),
    RouteSpec(method="GET", path=f"{_STATEMENT}/export.csv", summary="A statement as CSV", scopes=_READ,
              timeout_seconds=60),
    RouteSpec(method="GET", path=f"{_STATEMENT}/export.xlsx", summary="A statement as an Excel workbook",
              scopes=_READ, timeout_seconds=60),
    RouteSpec(method="POST", path=f"{_STATEMENT}/lines/{{line_id}}/disputes",
              summary="Dispute a statement line (the vendor)", scopes=_READ, rate_limit="60/minute"),
    RouteSpec(method="GET", path=f"{_STATEMENT}/disputes", summary="A statement's disputes", scopes=_READ),
    RouteSpec(method="POST", path=f"{_STATEMENT}/disputes/{{dispute_id}}/resolution",
              summary="Resolve a dispute: adjust the line or keep it, with a reason", scopes=_APPROVE),
    RouteSpec(method="POST", path=f"{_STATEMENT}/adjustments", summary="Adjust a line with a recorded reason",
              scopes=_APPROVE),
    RouteSpec(method="POST", path=f"{_STATEMENT}/approve", summary="Approve a statement: final and immutable",
              scopes=_APPROVE),
    RouteSpec(method="GET", path="/benefit", summary="Benefit ranking of apps for a period (绩效)", scopes=_READ),
    RouteSpec(method="GET", path="/benefit/flags", summary="Apps proposed for retirement review", scopes=_READ),
)
# fmt: on

METERING_API = ServiceApi(service="metering", title="Metering and statements (计量与结算)", routes=ROUTES)
