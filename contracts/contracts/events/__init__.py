"""Event payloads of every service, registered by type."""

from contracts.events import appstore, enrollment, gateway, identity, metering
from contracts.events.base import EventPayload, EventRegistry, StreamSpec, registry

__all__ = [
    "EventPayload",
    "EventRegistry",
    "StreamSpec",
    "appstore",
    "enrollment",
    "gateway",
    "identity",
    "metering",
    "registry",
]
