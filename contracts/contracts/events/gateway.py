"""Events published by the gateway (stream EDU_GATEWAY).

Usage records describe apps' calls through the gateway; the metering service turns them into usage
per app and school. They carry ids, the route template and sizes, never request or response bodies.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from contracts.api.routes import HttpMethod
from contracts.events.base import EventPayload, registry


class _GatewayEvent(EventPayload):
    service = "gateway"


class ApiCallRecord(BaseModel):
    """One call an app made through the gateway, as the gateway saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        min_length=1,
        max_length=64,
        description="Unique id of this record (a UUID). A record may arrive more than once, in the same or "
        "another batch; consumers count each id once, forever.",
    )
    client_id: str = Field(min_length=1, description="The OAuth client whose access token made the call")
    app_id: str = Field(
        min_length=1,
        description="The app the client belongs to (the token's `app_id` claim); usage is billed per app",
    )
    school_id: str | None = Field(
        description="Organisation id of the school the call concerned, when the route names one; null for "
        "calls that serve no single school's data",
    )
    service: str = Field(min_length=1, description="The service the call was routed to, e.g. `identity`")
    route: str = Field(
        min_length=1,
        description="The public route template that matched, never the concrete path, e.g. "
        "`/api/identity/organisations/{org_id}`",
    )
    method: HttpMethod = Field(description="HTTP method of the call")
    status: int = Field(
        ge=100,
        le=599,
        description="HTTP status returned to the app, including the gateway's own refusals (401, 403, 429) "
        "and upstream failures (502, 503, 504)",
    )
    latency_ms: float = Field(
        ge=0,
        description="Milliseconds from the gateway receiving the request to it sending the last byte of the response",
    )
    request_bytes: int = Field(ge=0, description="Size of the request body in bytes")
    response_bytes: int = Field(ge=0, description="Size of the response body in bytes")
    at: AwareDatetime = Field(description="When the gateway received the request (UTC)")
    request_id: str = Field(
        min_length=1,
        description="The call's `X-Request-Id`, as returned to the app and logged by the services",
    )

    @field_validator("at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # One time zone on the wire, so consumers can bucket by hour or day without converting.
        return value.astimezone(UTC)


@registry.register
class ApiUsageRecordedV1(_GatewayEvent):
    """A batch of usage records of apps' API calls."""

    entity = "api_usage"
    event = "recorded"
    summary = (
        "A batch of records of apps' API calls through the gateway (app, school, route, status, latency, sizes). "
        "Batches and records can be delivered more than once: deduplicate records by `id`."
    )

    batch_id: str = Field(
        min_length=1,
        description="Id of the batch, equal to the CloudEvents `id` and the `Nats-Msg-Id` header; a batch "
        "re-sent after a lost acknowledgement keeps it",
    )
    records: list[ApiCallRecord] = Field(min_length=1, description="The calls, oldest first")
