"""Base class and registry of versioned event payloads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

SUBJECT_ROOT = "edu"
SCHEMA_BASE_URI = "https://schemas.edu-platform.cn/events"


class EventPayload(BaseModel):
    """The `data` of one event type at one version.

    A subclass names its service, entity, event and version; from them follow the CloudEvents
    ``type`` (``edu.<service>.<entity>.<event>.v<N>``) and the NATS subject
    (``edu.<service>.<entity>.<event>``). A breaking change is a new class with the next version.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ClassVar[str]
    entity: ClassVar[str]
    event: ClassVar[str]
    version: ClassVar[int] = 1
    summary: ClassVar[str] = ""

    @classmethod
    def subject(cls) -> str:
        return f"{SUBJECT_ROOT}.{cls.service}.{cls.entity}.{cls.event}"

    @classmethod
    def event_type(cls) -> str:
        return f"{cls.subject()}.v{cls.version}"

    @classmethod
    def schema_uri(cls) -> str:
        return f"{SCHEMA_BASE_URI}/{cls.event_type()}.json"


@dataclass(frozen=True)
class StreamSpec:
    """One JetStream stream per service, holding every subject the service publishes."""

    service: str

    @property
    def name(self) -> str:
        return f"EDU_{self.service.upper()}"

    @property
    def subjects(self) -> list[str]:
        return [f"{SUBJECT_ROOT}.{self.service}.>"]


class EventRegistry:
    """Maps CloudEvents types to their payload models."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[EventPayload]] = {}

    def register(self, model: type[EventPayload]) -> type[EventPayload]:
        event_type = model.event_type()
        if event_type in self._by_type and self._by_type[event_type] is not model:
            raise ValueError(f"event type {event_type} registered twice")
        self._by_type[event_type] = model
        return model

    def model_for(self, event_type: str) -> type[EventPayload]:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise LookupError(f"unknown event type {event_type!r}") from None

    def all(self) -> list[type[EventPayload]]:
        return [self._by_type[key] for key in sorted(self._by_type)]

    def services(self) -> list[str]:
        return sorted({model.service for model in self._by_type.values()})

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec(service) for service in self.services()]


registry = EventRegistry()
