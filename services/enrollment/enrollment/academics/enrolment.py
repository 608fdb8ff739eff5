"""Pupils become enrolled students: every student identity announces, and admitted children matched on arrival.

Identity never puts a child's resident ID number on the bus, but a national student number (学籍号) is ``G``
followed by it. When a school registers an admitted child in identity, the student number identity announces is
matched, by keyed hash, against the accepted offers at that school, so the enrolment carries its admission.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from contracts.events import enrollment as events
from contracts.events import identity as identity_events
from enrollment.academics.models import StudentEnrollment
from enrollment.academics.service import school_today
from enrollment.admission.models import AdmissionSeason, Application
from enrollment.admission.service import RESIDENT_ID
from enrollment.changes import service as changes
from enrollment.directory.models import DirectoryOrganisation
from kit.crypto import FieldCipher
from kit.outbox import emit


def _admission_of(
    session: Session, cipher: FieldCipher, student_number: str | None, school_id: str
) -> Application | None:
    if not student_number or not student_number.startswith("G") or len(student_number) != 19:
        return None
    child_hash = cipher.lookup_hash(RESIDENT_ID, student_number[1:])
    return session.exec(
        select(Application).where(
            Application.child_id_hash == child_hash,
            Application.placed_school_id == school_id,
            Application.offer == "accepted",
        )
    ).first()


def on_student_created(session: Session, cipher: FieldCipher, event: identity_events.PersonCreatedV1) -> None:
    """A student appeared in identity at a school: enrol them there (once), linked to their admission if any."""
    school = session.get(DirectoryOrganisation, event.org_id) if event.org_id else None
    if school is None or school.kind != "school":
        return
    existing = session.exec(
        select(StudentEnrollment).where(
            StudentEnrollment.student_id == event.person_id,
            StudentEnrollment.school_id == school.id,
            col(StudentEnrollment.status) == "active",
        )
    ).first()
    if existing is not None:
        return
    application = _admission_of(session, cipher, event.student_number, school.id)
    season = session.get(AdmissionSeason, application.season_id) if application else None
    enrolment = StudentEnrollment(
        student_id=event.person_id, school_id=school.id, grade=season.grade if season else None,
        source="admission" if application else "directory",
        admission_application_id=application.id if application else None,
        start_date=date(season.school_year, 9, 1) if season else school_today(),
    )  # fmt: skip
    session.add(enrolment)
    session.flush()
    changes.record(session, entity="users", entity_id=event.person_id, school_id=school.id)
    emit(
        session,
        events.StudentEnrolledV1(
            enrollment_id=enrolment.id, student_id=event.person_id, school_id=school.id, grade=enrolment.grade,
            source="admission" if application else "directory", start_date=enrolment.start_date,
            admission_application_id=enrolment.admission_application_id,
        ),
        subject_id=event.person_id, org_id=school.id,
    )  # fmt: skip
