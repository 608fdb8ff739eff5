"""Keeps the directory projection current from identity's events; each handler is idempotent by construction."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from contracts.envelope import EventEnvelope
from contracts.events import identity as events
from enrollment.academics import enrolment
from enrollment.changes import service as changes
from enrollment.directory.models import (
    DirectoryGuardianLink,
    DirectoryOrganisation,
    DirectoryPerson,
    DirectoryRole,
)
from kit.crypto import FieldCipher
from kit.outbox import utcnow

SUBJECTS = [
    events.OrganisationCreatedV1.subject(),
    events.OrganisationUpdatedV1.subject(),
    events.PersonCreatedV1.subject(),
    events.PersonUpdatedV1.subject(),
    events.PersonDeactivatedV1.subject(),
    events.RoleGrantedV1.subject(),
    events.RoleRevokedV1.subject(),
    events.GuardianLinkedV1.subject(),
]


def _school_of(session: Session, org_id: str | None) -> str | None:
    if org_id is None:
        return None
    organisation = session.get(DirectoryOrganisation, org_id)
    return org_id if organisation is not None and organisation.kind == "school" else None


def identity_event_handler(cipher: FieldCipher) -> Callable[[Session, EventEnvelope], None]:
    """The consumer's handler: apply one identity event to the projection and note the roster change it makes."""

    def apply(session: Session, envelope: EventEnvelope) -> None:
        handler = _HANDLERS.get(envelope.type)
        if handler is not None:
            handler(session, envelope.data or {})
        if envelope.type == events.PersonCreatedV1.event_type():
            person = events.PersonCreatedV1.model_validate(envelope.data)
            if person.kind == "student":
                enrolment.on_student_created(session, cipher, person)

    return apply


def _organisation_created(session: Session, data: dict[str, object]) -> None:
    event = events.OrganisationCreatedV1.model_validate(data)
    session.merge(
        DirectoryOrganisation(
            id=event.org_id, parent_id=event.parent_id, kind=event.kind, name=event.name, path=event.path,
            school_code=event.school_code, school_type=event.school_type, updated_at=utcnow(),
        )
    )  # fmt: skip
    changes.record(session, entity="orgs", entity_id=event.org_id, school_id=_org_scope(event.kind, event.org_id))


def _org_scope(kind: str, org_id: str) -> str | None:
    # A school's own record belongs to it; districts and the city are visible to every school.
    return org_id if kind == "school" else None


def _organisation_updated(session: Session, data: dict[str, object]) -> None:
    event = events.OrganisationUpdatedV1.model_validate(data)
    organisation = session.get(DirectoryOrganisation, event.org_id)
    if organisation is None:
        return  # created before this projection started and never announced: nothing to update
    organisation.name = event.name
    organisation.school_type = event.school_type
    organisation.active = event.active
    organisation.updated_at = utcnow()
    session.add(organisation)
    changes.record(
        session, entity="orgs", entity_id=event.org_id, school_id=_org_scope(organisation.kind, event.org_id),
        operation="upsert" if event.active else "delete",
    )  # fmt: skip


def _person_created(session: Session, data: dict[str, object]) -> None:
    event = events.PersonCreatedV1.model_validate(data)
    session.merge(
        DirectoryPerson(
            id=event.person_id, kind=event.kind, name=event.name, org_id=event.org_id,
            student_number=event.student_number, sex=event.sex, updated_at=utcnow(),
        )
    )  # fmt: skip
    changes.record(session, entity="users", entity_id=event.person_id, school_id=_school_of(session, event.org_id))


def _person_updated(session: Session, data: dict[str, object]) -> None:
    event = events.PersonUpdatedV1.model_validate(data)
    person = session.get(DirectoryPerson, event.person_id)
    if person is None:
        return
    person.name = event.name
    person.org_id = event.org_id
    person.updated_at = utcnow()
    session.add(person)
    changes.record(session, entity="users", entity_id=event.person_id, school_id=_school_of(session, event.org_id))


def _person_deactivated(session: Session, data: dict[str, object]) -> None:
    event = events.PersonDeactivatedV1.model_validate(data)
    person = session.get(DirectoryPerson, event.person_id)
    if person is None:
        return
    person.active = False
    person.updated_at = utcnow()
    session.add(person)
    changes.record(
        session, entity="users", entity_id=event.person_id, school_id=_school_of(session, person.org_id),
        operation="delete",
    )  # fmt: skip


def _role_granted(session: Session, data: dict[str, object]) -> None:
    event = events.RoleGrantedV1.model_validate(data)
    session.merge(
        DirectoryRole(
            id=event.grant_id, person_id=event.person_id, role=event.role, org_id=event.org_id,
            org_path=event.org_path, active=True,
        )
    )  # fmt: skip
    changes.record(session, entity="users", entity_id=event.person_id, school_id=_school_of(session, event.org_id))


def _role_revoked(session: Session, data: dict[str, object]) -> None:
    event = events.RoleRevokedV1.model_validate(data)
    role = session.get(DirectoryRole, event.grant_id)
    if role is None:
        return
    role.active = False
    session.add(role)
    changes.record(session, entity="users", entity_id=event.person_id, school_id=_school_of(session, event.org_id))


def _guardian_linked(session: Session, data: dict[str, object]) -> None:
    event = events.GuardianLinkedV1.model_validate(data)
    session.merge(
        DirectoryGuardianLink(
            id=event.link_id, guardian_id=event.guardian_id, student_id=event.student_id,
            relationship=event.relationship,
        )
    )  # fmt: skip
    student = session.get(DirectoryPerson, event.student_id)
    school_id = _school_of(session, student.org_id) if student is not None else None
    changes.record(session, entity="users", entity_id=event.guardian_id, school_id=school_id)


_HANDLERS = {
    events.OrganisationCreatedV1.event_type(): _organisation_created,
    events.OrganisationUpdatedV1.event_type(): _organisation_updated,
    events.PersonCreatedV1.event_type(): _person_created,
    events.PersonUpdatedV1.event_type(): _person_updated,
    events.PersonDeactivatedV1.event_type(): _person_deactivated,
    events.RoleGrantedV1.event_type(): _role_granted,
    events.RoleRevokedV1.event_type(): _role_revoked,
    events.GuardianLinkedV1.event_type(): _guardian_linked,
}
