"""People, role grants and guardian links: plain functions over a session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from contracts.events.identity import (
    GuardianLinkedV1,
    PersonCreatedV1,
    PersonDeactivatedV1,
    PersonUpdatedV1,
    RoleGrantedV1,
    RoleRevokedV1,
)
from identity.errors import (
    DuplicateResidentId,
    DuplicateStudentNumber,
    DuplicateUsername,
    InactiveRecord,
    InvalidPersonData,
    PersonNotFound,
)
from identity.organisations import service as organisations
from identity.organisations.models import Organisation, new_id
from identity.people.models import GuardianLink, Person, RoleGrant
from identity.people.schemas import PersonCreate, PersonUpdate
from kit.crypto import FieldCipher
from kit.errors import FieldError, Forbidden
from kit.identifiers import (
    mask_phone,
    mask_resident_id,
    mask_student_number,
    parse_resident_id,
    validate_phone,
    validate_student_number,
)
from kit.outbox import PendingEvent, emit, emit_many
from kit.pagination import fetch_page

# Which organisation kinds each role can be held at.
ROLE_ORG_KINDS = {
    "city_admin": {"city"},
    "district_admin": {"district"},
    "school_admin": {"school"},
    "teacher": {"school"},
    "student": {"school"},
    "parent": {"school"},
    "auditor": {"city", "district"},
    "vendor_developer": {"city"},
}
# Roles a grantor may hand out: never more than they hold themselves.
GRANTABLE_BY = {
    "city_admin": set(ROLE_ORG_KINDS),
    "district_admin": {"district_admin", "school_admin", "teacher", "student", "parent"},
    "school_admin": {"school_admin", "teacher", "student", "parent"},
}
PERSON_ORG_KINDS = {"student": {"school"}, "guardian": {"school"}, "staff": {"city", "district", "school"}}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CleanPerson:
    """Validated, normalised person fields ready to store."""

    kind: str
    name: str
    org_id: str
    sex: str | None
    birth_date: date | None
    resident_id_number: str | None
    student_number: str | None
    staff_number: str | None
    phone: str | None
    username: str | None


def clean(
    data: PersonCreate,
    organisation: Organisation | None,
    *,
    today: date | None = None,
    phone_required: bool = True,
) -> CleanPerson:
    """Validate one person; raises InvalidPersonData listing every wrong field at once."""
    errors: list[FieldError] = []
    name = " ".join(data.name.split())
    if not name:
        errors.append(FieldError(field="name", message="姓名不能为空 / name must not be blank"))
    if organisation is None:
        errors.append(FieldError(field="org_id", message="机构不存在 / unknown organisation"))
    elif organisation.kind not in PERSON_ORG_KINDS[data.kind]:
        errors.append(
            FieldError(field="org_id", message=f"a {data.kind} belongs to a school, not a {organisation.kind}")
        )
    elif not organisation.active:
        errors.append(FieldError(field="org_id", message="机构已停用 / organisation is deactivated"))
    sex, birth_date, resident_id = data.sex, data.birth_date, None
    if data.resident_id_number:
        try:
            parsed = parse_resident_id(data.resident_id_number, today=today)
        except ValueError as error:
            errors.append(FieldError(field="resident_id_number", message=str(error), code=getattr(error, "code", None)))
        else:
            resident_id = parsed.number
            if sex is not None and sex != parsed.sex:
                errors.append(
                    FieldError(field="sex", message="性别与身份证号不一致 / sex does not match the ID number")
                )
            if birth_date is not None and birth_date != parsed.birth_date:
                errors.append(
                    FieldError(field="birth_date", message="出生日期与身份证号不一致 / does not match the ID number")
                )
            sex, birth_date = parsed.sex, parsed.birth_date
    student_number = None
    if data.kind == "student":
        if not data.student_number:
            errors.append(FieldError(field="student_number", message="学生必须填写学籍号 / required for students"))
        else:
            try:
                student_number = validate_student_number(data.student_number, resident_id=resident_id)
            except ValueError as error:
                errors.append(FieldError(field="student_number", message=str(error)))
        if sex is None:
            errors.append(FieldError(field="sex", message="学生必须填写性别 / required for students"))
        if birth_date is None:
            errors.append(FieldError(field="birth_date", message="学生必须填写出生日期 / required for students"))
    elif data.student_number:
        errors.append(FieldError(field="student_number", message="仅学生有学籍号 / only students have one"))
    if birth_date is not None and birth_date > (today or date.today()):
        errors.append(FieldError(field="birth_date", message="出生日期不能晚于今天 / must not be in the future"))
    phone = None
    if data.phone:
        try:
            phone = validate_phone(data.phone)
        except ValueError as error:
            errors.append(FieldError(field="phone", message=str(error)))
    elif data.kind == "guardian" and phone_required:
        errors.append(FieldError(field="phone", message="监护人必须填写手机号 / required for guardians"))
    if errors:
        raise InvalidPersonData("Some fields of the person are wrong; see errors[].", errors=errors)
    username = data.username or (student_number if data.kind == "student" else phone)
    assert organisation is not None
    return CleanPerson(
        kind=data.kind, name=name, org_id=organisation.id, sex=sex, birth_date=birth_date,
        resident_id_number=resident_id, student_number=student_number,
        staff_number=data.staff_number.strip() if data.staff_number else None, phone=phone, username=username,
    )  # fmt: skip


def find_duplicates(
    session: Session, person: CleanPerson, cipher: FieldCipher, *, exclude_id: str | None = None
) -> None:
    """Raise the matching Conflict if a unique identifier is already taken by someone else."""

    def taken(condition: sa.ColumnElement[bool]) -> bool:
        query = select(Person.id).where(condition)
        if exclude_id:
            query = query.where(Person.id != exclude_id)
        return session.exec(query).first() is not None

    if person.student_number and taken(col(Person.student_number) == person.student_number):
        raise DuplicateStudentNumber(
            f"Student number {person.student_number} belongs to another student.",
            errors=[FieldError(field="student_number", message="already in use")],
        )
    if person.resident_id_number and taken(
        col(Person.resident_id_hash) == cipher.lookup_hash("resident_id", person.resident_id_number)
    ):
        raise DuplicateResidentId(
            "This resident ID number is already registered to another person.",
            errors=[FieldError(field="resident_id_number", message="already registered")],
        )
    if person.username and taken(col(Person.username) == person.username):
        raise DuplicateUsername(
            f"Username {person.username} is taken.",
            errors=[FieldError(field="username", message="already in use")],
        )


def get(session: Session, person_id: str) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise PersonNotFound(f"No person has id {person_id!r}.")
    return person


def org_path_of(session: Session, person: Person) -> str:
    return organisations.get(session, person.org_id).path


def create(session: Session, person: CleanPerson, cipher: FieldCipher, *, created_by: str | None) -> Person:
    """Store a new person (students also get the student role at their school)."""
    find_duplicates(session, person, cipher)
    row = Person(**_person_columns(person, cipher))
    session.add(row)
    session.flush()
    emit(session, _created_event(row.id, person).payload, subject_id=row.id, org_id=row.org_id)
    if row.kind == "student":
        grant_role(session, row, role="student", org_id=row.org_id, granted_by=created_by)
    return row


def create_many(
    session: Session, persons: list[CleanPerson], cipher: FieldCipher, *, organisation: Organisation, role: str | None
) -> list[str]:
    """Insert many new people of one organisation with multi-row inserts (bulk import).

    The caller has checked uniqueness for the whole batch; the database's unique constraints still
    stand behind that. Students get the student role, others ``role`` if given; every person and
    grant publishes the same events as :func:`create` and :func:`grant_role`.
    """
    if not persons:
        return []
    now = utcnow()
    person_rows: list[dict[str, object]] = []
    grant_rows: list[dict[str, object]] = []
    events: list[PendingEvent] = []
    for person in persons:
        person_id = new_id()
        person_rows.append({"id": person_id, **_person_columns(person, cipher), "created_at": now, "updated_at": now})
        events.append(_created_event(person_id, person))
        granted = "student" if person.kind == "student" else role
        if granted is not None:
            grant_id = new_id()
            grant_rows.append(
                {"id": grant_id, "person_id": person_id, "role": granted, "org_id": organisation.id, "active": True,
                 "granted_at": now}
            )  # fmt: skip
            events.append(_granted_event(grant_id, person_id, granted, organisation))
    session.execute(sa.insert(Person.__table__), person_rows)
    if grant_rows:
        session.execute(sa.insert(RoleGrant.__table__), grant_rows)
    emit_many(session, events)
    return [str(row["id"]) for row in person_rows]


def _person_columns(person: CleanPerson, cipher: FieldCipher) -> dict[str, object]:
    columns: dict[str, object] = {
        "kind": person.kind,
        "name": person.name,
        "sex": person.sex,
        "birth_date": person.birth_date,
        "org_id": person.org_id,
        "username": person.username,
        "student_number": person.student_number,
        "staff_number": person.staff_number,
        "must_change_password": True,
        "active": True,
    }
    columns.update(_identifier_columns(person, cipher))
    return columns


def _identifier_columns(person: CleanPerson, cipher: FieldCipher) -> dict[str, object]:
    columns: dict[str, object] = {}
    if person.resident_id_number:
        columns["resident_id_cipher"] = cipher.encrypt("resident_id", person.resident_id_number)
        columns["resident_id_hash"] = cipher.lookup_hash("resident_id", person.resident_id_number)
        columns["resident_id_masked"] = mask_resident_id(person.resident_id_number)
    if person.phone:
        columns["phone_cipher"] = cipher.encrypt("phone", person.phone)
        columns["phone_hash"] = cipher.lookup_hash("phone", person.phone)
        columns["phone_masked"] = mask_phone(person.phone)
    return columns


def _created_event(person_id: str, person: CleanPerson) -> PendingEvent:
    # Every student number embeds the birth date, and a G number the whole resident ID number:
    # neither may travel on the bus, so the event carries the masked form.
    return PendingEvent(
        PersonCreatedV1(
            person_id=person_id, kind=person.kind, name=person.name, org_id=person.org_id,
            student_number=mask_student_number(person.student_number) if person.student_number else None,
            sex=person.sex,
        ),
        subject_id=person_id,
        org_id=person.org_id,
    )  # fmt: skip


def _granted_event(grant_id: str, person_id: str, role: str, organisation: Organisation) -> PendingEvent:
    return PendingEvent(
        RoleGrantedV1(
            grant_id=grant_id, person_id=person_id, role=role, org_id=organisation.id,
            org_path=organisation.path,
        ),
        subject_id=person_id,
        org_id=organisation.id,
    )  # fmt: skip


def _set_identifiers(row: Person, person: CleanPerson, cipher: FieldCipher) -> None:
    for column, value in _identifier_columns(person, cipher).items():
        setattr(row, column, value)


def apply_changes(session: Session, row: Person, person: CleanPerson, cipher: FieldCipher) -> list[str]:
    """Bring ``row`` in line with ``person``; returns the names of fields that changed (import uses this)."""
    changed: list[str] = []
    for field_name in ("name", "sex", "birth_date", "org_id", "staff_number"):
        new_value = getattr(person, field_name)
        if new_value is not None and getattr(row, field_name) != new_value:
            setattr(row, field_name, new_value)
            changed.append(field_name)
    if person.resident_id_number and row.resident_id_hash != cipher.lookup_hash(
        "resident_id", person.resident_id_number
    ):
        find_duplicates(
            session, CleanPerson(**{**person.__dict__, "student_number": None, "username": None}), cipher,
            exclude_id=row.id,
        )  # fmt: skip
        changed.append("resident_id_number")
    elif person.resident_id_number:
        person = CleanPerson(**{**person.__dict__, "resident_id_number": None})
    if person.phone and row.phone_hash != cipher.lookup_hash("phone", person.phone):
        changed.append("phone")
    elif person.phone:
        person = CleanPerson(**{**person.__dict__, "phone": None})
    _set_identifiers(row, person, cipher)
    if changed:
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        emit(
            session,
            PersonUpdatedV1(person_id=row.id, name=row.name, org_id=row.org_id, changed=changed),
            subject_id=row.id,
            org_id=row.org_id,
        )
    return changed


def update(session: Session, row: Person, data: PersonUpdate, cipher: FieldCipher) -> list[str]:
    if not row.active:
        raise InactiveRecord("The person is deactivated; reactivate before editing.")
    organisation = organisations.get(session, data.org_id or row.org_id)
    merged = PersonCreate(
        kind=row.kind,
        name=data.name or row.name,
        org_id=organisation.id,
        sex=data.sex or row.sex,
        birth_date=data.birth_date or row.birth_date,
        # Checked again, so that sex and birth date can't be edited out of line with the ID number.
        resident_id_number=reveal_resident_id(row, cipher),
        student_number=row.student_number,
        staff_number=data.staff_number,
        phone=data.phone,
    )
    # The stored phone number stays unless a new one is sent.
    cleaned = clean(merged, organisation, phone_required=False)
    return apply_changes(session, row, cleaned, cipher)


def deactivate(session: Session, row: Person, *, reason: str) -> Person:
    if row.active:
        row.active = False
        row.deactivated_at = utcnow()
        row.deactivation_reason = reason
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        emit(
            session,
            PersonDeactivatedV1(person_id=row.id, reason=reason),
            subject_id=row.id,
            org_id=row.org_id,
        )
    return row


def list_within(
    session: Session,
    scope_paths: Sequence[str],
    *,
    cipher: FieldCipher,
    kind: str | None = None,
    org_id: str | None = None,
    name_contains: str | None = None,
    student_number: str | None = None,
    resident_id_number: str | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Person], int]:
    query = (
        select(Person)
        .join(Organisation, col(Organisation.id) == col(Person.org_id))
        .where(organisations.subtree_filter(Organisation.path, scope_paths))
    )
    if kind:
        query = query.where(Person.kind == kind)
    if org_id:
        query = query.where(Person.org_id == org_id)
    if name_contains:
        query = query.where(col(Person.name).contains(name_contains))
    if student_number:
        query = query.where(Person.student_number == student_number.strip().upper())
    if resident_id_number:
        number = resident_id_number.strip().upper()
        query = query.where(Person.resident_id_hash == cipher.lookup_hash("resident_id", number))
    if active is not None:
        query = query.where(Person.active == active)
    return fetch_page(session, query, order_by=[col(Person.created_at), col(Person.id)], limit=limit, offset=offset)


def reveal_resident_id(row: Person, cipher: FieldCipher) -> str | None:
    return cipher.decrypt("resident_id", row.resident_id_cipher) if row.resident_id_cipher else None


def check_grantable(grantor_roles: Sequence[tuple[str, str]], *, role: str, target: Organisation) -> None:
    """``grantor_roles`` are (role, org_path); the grantor needs a role above ``role`` over the target org."""
    for held_role, held_path in grantor_roles:
        if role in GRANTABLE_BY.get(held_role, set()) and organisations.within(target.path, [held_path]):
            return
    raise Forbidden(f"You may not grant the role {role} at {target.name}.")


def grant_role(session: Session, person: Person, *, role: str, org_id: str, granted_by: str | None) -> RoleGrant:
    """Grant a role, or re-activate an earlier grant of it."""
    organisation = organisations.get(session, org_id)
    if organisation.kind not in ROLE_ORG_KINDS[role]:
        allowed = "/".join(sorted(ROLE_ORG_KINDS[role]))
        raise InvalidPersonData(
            f"The role {role} is held at a {allowed}, not at a {organisation.kind}.",
            errors=[FieldError(field="org_id", message=f"must be a {allowed}")],
        )
    if not person.active:
        raise InactiveRecord("The person is deactivated; roles can't be granted.")
    grant = session.exec(
        select(RoleGrant).where(RoleGrant.person_id == person.id, RoleGrant.role == role, RoleGrant.org_id == org_id)
    ).first()
    if grant is not None and grant.active:
        return grant
    if grant is None:
        grant = RoleGrant(person_id=person.id, role=role, org_id=org_id, granted_by=granted_by)
    else:
        grant.active, grant.revoked_at, grant.granted_at, grant.granted_by = True, None, utcnow(), granted_by
    session.add(grant)
    session.flush()
    event = _granted_event(grant.id, person.id, role, organisation)
    emit(session, event.payload, subject_id=event.subject_id, org_id=event.org_id)
    return grant


def revoke_role(session: Session, grant: RoleGrant) -> RoleGrant:
    if grant.active:
        grant.active = False
        grant.revoked_at = utcnow()
        session.add(grant)
        session.flush()
        emit(
            session,
            RoleRevokedV1(grant_id=grant.id, person_id=grant.person_id, role=grant.role, org_id=grant.org_id),
            subject_id=grant.person_id,
            org_id=grant.org_id,
        )
    return grant


def roles_of(session: Session, person_id: str) -> list[RoleGrant]:
    return list(
        session.exec(select(RoleGrant).where(RoleGrant.person_id == person_id).order_by(col(RoleGrant.granted_at)))
    )


def link_guardian(
    session: Session, student: Person, guardian: Person, *, relationship: str, linked_by: str | None
) -> GuardianLink:
    if student.kind != "student":
        raise InvalidPersonData(
            "Guardians are linked to students.",
            errors=[FieldError(field="student_id", message="not a student")],
        )
    if guardian.kind != "guardian":
        raise InvalidPersonData(
            "Only a person of kind guardian can be linked as a guardian.",
            errors=[FieldError(field="guardian_id", message="not a guardian")],
        )
    if not (student.active and guardian.active):
        raise InactiveRecord("Both the student and the guardian must be active.")
    link = session.exec(
        select(GuardianLink).where(GuardianLink.guardian_id == guardian.id, GuardianLink.student_id == student.id)
    ).first()
    if link is not None and link.active and link.relationship == relationship:
        return link
    if link is None:
        link = GuardianLink(guardian_id=guardian.id, student_id=student.id, relationship=relationship)
    else:
        link.active, link.relationship = True, relationship
    session.add(link)
    session.flush()
    emit(
        session,
        GuardianLinkedV1(
            link_id=link.id,
            guardian_id=guardian.id,
            student_id=student.id,
            relationship=relationship,
        ),
        subject_id=student.id,
        org_id=student.org_id,
    )
    grant_role(session, guardian, role="parent", org_id=student.org_id, granted_by=linked_by)
    return link


def guardians_of(session: Session, student_id: str) -> list[GuardianLink]:
    return list(session.exec(select(GuardianLink).where(GuardianLink.student_id == student_id)))
