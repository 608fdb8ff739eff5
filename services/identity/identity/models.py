"""Every table of the identity service, for migrations."""

from sqlmodel import SQLModel

from identity.audit.models import AuditEntry
from identity.imports.models import ImportJob, ImportUpload
from identity.keys.models import SigningKey
from identity.organisations.models import Organisation
from identity.people.models import GuardianLink, Person, RoleGrant
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

metadata = SQLModel.metadata

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
