"""Every table of the identity service, for migrations."""

from identity.audit.models import AuditEntry
from identity.imports.models import ImportJob, ImportUpload
from identity.keys.models import SigningKey
from identity.organisations.models import Organisation
from identity.people.models import GuardianLink, Person, RoleGrant
from kit.db import service_metadata
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

metadata = service_metadata(
    Organisation, Person, RoleGrant, GuardianLink, AuditEntry, ImportJob, ImportUpload, SigningKey,
    OutboxEvent, ProcessedEvent,
)  # fmt: skip

__all__ = [
    "AuditEntry",
    "GuardianLink",
    "ImportJob",
    "ImportUpload",
    "Organisation",
    "OutboxEvent",
    "Person",
    "ProcessedEvent",
    "RoleGrant",
    "SigningKey",
    "metadata",
]
