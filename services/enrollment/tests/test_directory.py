"""The directory projection follows identity's events and feeds the change log."""

from __future__ import annotations

from sqlmodel import select

from enrollment.changes.models import ChangeRecord
from enrollment.directory.models import DirectoryOrganisation, DirectoryPerson
from enrollment.testing import City


def test_identity_events_build_the_local_directory(city: City) -> None:
    with city.database.read_session() as session:
        schools = session.exec(select(DirectoryOrganisation).where(DirectoryOrganisation.kind == "school")).all()
        assert {school.name for school in schools} == {"春晓第一小学", "春晓第二小学", "秋实小学"}
        teacher = session.get(DirectoryPerson, city.people["a1_teacher"].id)
        assert teacher is not None and teacher.org_id == city.school_a1
        changes = session.exec(select(ChangeRecord).where(ChangeRecord.entity_id == teacher.id)).all()
        assert changes and all(change.school_id == city.school_a1 for change in changes)
