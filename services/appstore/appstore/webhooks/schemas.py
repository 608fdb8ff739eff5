"""API shapes of the webhooks sub-domain: deliveries, their attempts, replay, and the shown-once secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DeliveryStatus = Literal["pending", "delivered", "dead", "cancelled"]
ReplayableStatus = Literal["delivered", "dead"]


class WebhookSecretRead(BaseModel):
    """The app's new webhook secret, shown once."""

    secret: str = Field(description="Verify deliveries with it (Standard Webhooks, 'whsec_' + base64 key)")
    previous_secret_signs_until: datetime | None = Field(
        description="Until then deliveries also carry a signature by the previous secret (none if there was none)"
    )


class WebhookAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    trigger: str = Field(description="scheduled, replay or redeliver")
    started_at: datetime
    duration_ms: int
    outcome: str = Field(description="delivered, http_error, timeout, network_error or unsafe_url")
    status_code: int | None
    error: str | None


class WebhookDeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Sent as webhook-id on every attempt, retry and replay")
    sequence: int = Field(description="Increasing per app: the cursor for listing and replay")
    event_type: str
    installation_id: str
    school_id: str
    status: DeliveryStatus
    attempts: int = Field(description="Attempts in the current run (a replay starts a new run)")
    total_attempts: int
    replays: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    cancelled_reason: str | None


class WebhookDeliveryDetail(WebhookDeliveryRead):
    payload: dict[str, Any] = Field(description="The JSON body every attempt sends")
    attempt_history: list[WebhookAttemptRead]


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryRead]
    next_cursor: int = Field(description="Pass as cursor for the deliveries after these")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_cursor: int = Field(ge=0, description="First sequence number to send again (inclusive)")
    to_cursor: int | None = Field(default=None, ge=0, description="Last sequence number (inclusive); none: the latest")
    status: list[ReplayableStatus] | None = Field(
        default=None, min_length=1, description="Only deliveries in these states (default: delivered and dead)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplayRequest:
        if self.to_cursor is not None and self.to_cursor < self.from_cursor:
            raise ValueError("to_cursor must not be smaller than from_cursor")
        return self


class ReplayResult(BaseModel):
    requeued: int = Field(description="Deliveries queued again (cancelled and still-queued ones are left alone)")
    next_cursor: int | None = Field(description="More matched than one replay takes: replay again from here")
