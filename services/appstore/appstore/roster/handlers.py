"""Keeps the roster projection current from identity's and enrollment's events; every handler is idempotent."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlmodel import Session

from appstore.roster.models import RosterClass, RosterMembership, RosterOrganisation, RosterPerson
from contracts.envelope import EventEnvelope
from contracts.events import enrollment as roster_events
from contracts.events import identity as identity_events
from kit.outbox import utcnow

IDENTITY_SUBJECTS = [
    identity_events.OrganisationCreatedV1.subject(),
    identity_events.OrganisationUpdatedV1.subject(),
    identity_events.PersonCreatedV1.subject(),
    identity_events.PersonUpdatedV1.subject(),
    identity_events.PersonDeactivatedV1.subject(),
]
ENROLLMENT_SUBJECTS = [
    roster_events.ClassChangedV1.subject(),
    roster_events.ClassDeletedV1.subject(),
    roster_events.ClassMembershipChangedV1.subject(),
]


def _organisation_created(session: Session, data: dict[str, object]) -> None:
    event = identity_events.OrganisationCreatedV1.model_validate(data)
    session.merge(
        RosterOrganisation(
            id=event.org_id, parent_id=event.parent_id, kind=event.kind, name=event.name, path=event.path,
            updated_at=utcnow(),
        )
    )  # fmt: skip


def _organisation_updated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.OrganisationUpdatedV1.model_validate(data)
    organisation = session.get(RosterOrganisation, event.org_id)
    if organisation is None:
        return
    organisation.name = event.name
    organisation.active = event.active
    organisation.updated_at = utcnow()
    session.add(organisation)


def _person_created(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonCreatedV1.model_validate(data)
    session.merge(
        RosterPerson(id=event.person_id, kind=event.kind, name=event.name, org_id=event.org_id, updated_at=utcnow())
    )


def _person_updated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonUpdatedV1.model_validate(data)
    person = session.get(RosterPerson, event.person_id)
    if person is None:
        return
    person.name = event.name
    person.org_id = event.org_id
    person.updated_at = utcnow()
    session.add(person)


def _person_deactivated(session: Session, data: dict[str, object]) -> None:
    event = identity_events.PersonDeactivatedV1.model_validate(data)
    person = session.get(RosterPerson, event.person_id)
    if person is None:
        return
    person.active = False
    person.updated_at = utcnow()
    session.add(person)


def _class_changed(session: Session, data: dict[str, object]) -> None:
    event = roster_events.ClassChangedV1.model_validate(data)
    session.merge(
        RosterClass(
            id=event.class_id, school_id=event.school_id, grade=event.grade, name=event.name,
            head_teacher_id=event.head_teacher_id, teacher_ids=json.dumps(sorted(event.teacher_ids)), active=True,
            updated_at=utcnow(),
        )
    )  # fmt: skip


def _class_deleted(session: Session, data: dict[str, object]) -> None:
    event = roster_events.ClassDeletedV1.model_validate(data)
    row = session.get(RosterClass, event.class_id)
    if row is not None:
        row.active = False
        row.updated_at = utcnow()
        session.add(row)


def _membership_changed(session: Session, data: dict[str, object]) -> None:
    event = roster_events.ClassMembershipChangedV1.model_validate(data)
    row = session.get(RosterMembership, event.student_id)
    if row is not None and row.effective_on > event.effective_on:
        return  # an older change arriving late does not undo a newer one
    session.merge(
        RosterMembership(
            student_id=event.student_id, school_id=event.school_id, class_id=event.to_class_id,
            effective_on=event.effective_on, updated_at=utcnow(),
        )
    )  # fmt: skip


_HANDLERS: dict[str, Callable[[Session, dict[str, object]], None]] = {
    identity_events.OrganisationCreatedV1.event_type(): _organisation_created,
    identity_events.OrganisationUpdatedV1.event_type(): _organisation_updated,
    identity_events.PersonCreatedV1.event_type(): _person_created,
    identity_events.PersonUpdatedV1.event_type(): _person_updated,
    identity_events.PersonDeactivatedV1.event_type(): _person_deactivated,
    roster_events.ClassChangedV1.event_type(): _class_changed,
    roster_events.ClassDeletedV1.event_type(): _class_deleted,
    roster_events.ClassMembershipChangedV1.event_type(): _membership_changed,
}


def apply_roster_event(session: Session, envelope: EventEnvelope) -> None:
    """The consumers' handler: apply one identity or enrollment event to the projection."""
    handler = _HANDLERS.get(envelope.type)
    if handler is not None:
        handler(session, envelope.data or {})
