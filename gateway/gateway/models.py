"""Every table of the gateway, for migrations."""

from gateway.installations.models import AppInstallation, AppOrigin
from kit.db import service_metadata
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

metadata = service_metadata(AppInstallation, AppOrigin, OutboxEvent, ProcessedEvent)

__all__ = ["AppInstallation", "AppOrigin", "metadata"]
