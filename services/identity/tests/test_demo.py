"""The demo city loads once, through the same service functions as the API, with valid identifiers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import select

from identity.config import IdentitySettings
from identity.demo import load
from identity.models import metadata
from identity.organisations.models import Organisation
from identity.people.models import GuardianLink, Person, RoleGrant
from kit.crypto import FieldCipher
from kit.db import Database
from kit.identifiers import parse_resident_id, validate_student_number
from kit.outbox import OutboxEvent


@pytest.fixture
def database(settings: IdentitySettings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def cipher(settings: IdentitySettings) -> FieldCipher:
    return FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())


def row_counts(database: Database) -> dict[str, int]:
    with database.engine.connect() as connection:
        return {
            table.name: int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in metadata.sorted_tables
            if table.name != "alembic_version"
        }


def test_demo_loads_a_whole_city_once(database: Database, cipher: FieldCipher) -> None:
    with database.session() as session:
        logins = load(session, cipher)
    assert logins is not None

    with database.session() as session:
        kinds = Counter(session.exec(select(Organisation.kind)).all())
        assert kinds == {"city": 1, "district": 2, "school": 4}
        roles = Counter(session.exec(select(RoleGrant.role).where(RoleGrant.active)).all())
        assert roles == {"city_admin": 1, "auditor": 1, "district_admin": 2, "school_admin": 4, "teacher": 8,
                         "student": 20, "parent": 20, "vendor_developer": 1}  # fmt: skip
        people_kinds = Counter(session.exec(select(Person.kind)).all())
        assert people_kinds == {"staff": 17, "student": 20, "guardian": 20}

        schools = {row.id: row for row in session.exec(select(Organisation).where(Organisation.kind == "school"))}
        students = session.exec(select(Person).where(Person.kind == "student")).all()
        assert Counter(student.org_id for student in students) == dict.fromkeys(schools, 5)
        for student in students:
            assert student.resident_id_cipher is not None
            number = cipher.decrypt("resident_id", student.resident_id_cipher)
            parsed = parse_resident_id(number)  # a valid GB 11643 number, check digit included
            assert (parsed.sex, parsed.birth_date) == (student.sex, student.birth_date)
            assert student.student_number == validate_student_number("G" + number, resident_id=number)
            assert student.resident_id_masked == number[:6] + "*" * 8 + number[-4:]
            assert student.resident_id_hash == cipher.lookup_hash("resident_id", number)

        links = session.exec(select(GuardianLink)).all()
        assert len(links) == 20
        assert {link.student_id for link in links} == {student.id for student in students}
        guardians = {row.id: row for row in session.exec(select(Person).where(Person.kind == "guardian"))}
        by_id = {student.id: student for student in students}
        for link in links:
            guardian, child = guardians[link.guardian_id], by_id[link.student_id]
            assert guardian.org_id == child.org_id
            assert link.relationship == {"male": "father", "female": "mother"}[child.sex or ""]
            assert guardian.phone_masked and guardian.phone_hash

        # Everyone's events are waiting in the outbox, as if set up through the API.
        event_types = Counter(session.exec(select(OutboxEvent.event_type)).all())
        assert event_types["edu.identity.organisation.created.v1"] == 7
        assert event_types["edu.identity.person.created.v1"] == 57
        assert event_types["edu.identity.guardian.linked.v1"] == 20

    usernames = [login.username for login in logins]
    assert len(usernames) == len(set(usernames)) and all(usernames)
    assert {login.role for login in logins} >= {"city_admin", "auditor", "district_admin", "school_admin",
                                                "teacher", "student", "parent"}  # fmt: skip


def test_loading_again_writes_nothing(database: Database, cipher: FieldCipher) -> None:
    with database.session() as session:
        assert load(session, cipher) is not None
    before = row_counts(database)
    with database.session() as session:
        assert load(session, cipher) is None
    assert row_counts(database) == before
    assert before["person"] == 57
