"""Event payloads of every service, registered by type."""

from contracts.events import gateway, identity
from contracts.events.base import EventPayload, EventRegistry, StreamSpec, registry

__all__ = ["EventPayload", "EventRegistry", "StreamSpec", "gateway", "identity", "registry"]
