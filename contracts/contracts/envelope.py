"""The CloudEvents 1.0 structured-mode envelope every platform event travels in.

https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md
Extension attributes follow the CloudEvents naming rule (lower-case letters and digits only):
``orgid`` names the organisation that owns the fact, and ``traceparent``/``tracestate`` carry the
W3C trace context (CloudEvents distributed-tracing extension).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE_CLOUDEVENTS_JSON = "application/cloudevents+json"


class EventEnvelope(BaseModel):
    """A CloudEvents 1.0 structured event with the platform's extension attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1, description="URI reference of the producing service, e.g. /edu/identity")
    type: str = Field(min_length=1, description="Versioned event type, e.g. edu.identity.person.created.v1")
    subject: str | None = Field(default=None, description="Id of the entity the event is about")
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, description="URI of the JSON Schema of `data`")
    orgid: str | None = Field(default=None, description="Extension: id of the organisation owning the fact")
    traceparent: str | None = Field(default=None, description="Extension: W3C traceparent of the cause")
    tracestate: str | None = Field(default=None, description="Extension: W3C tracestate of the cause")
    data: dict[str, Any]

    def to_json_bytes(self) -> bytes:
        """Serialise as a structured-mode CloudEvent (``application/cloudevents+json``)."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes | str) -> EventEnvelope:
        return cls.model_validate_json(raw)
