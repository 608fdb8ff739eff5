"""Admin API for people, their roles and their guardians; every read of personal data is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlmodel import Session

from contracts.events.identity import PersonKind
from identity import access
from identity.accounts import passwords
from identity.accounts import service as accounts
from identity.accounts import sessions as browser_sessions
from identity.audit import service as audit
from identity.deps import Actor, ActorDep, CipherDep, SettingsDep
from identity.errors import InactiveRecord, NoLoginName, PersonNotFound
from identity.oauth import tokens
from identity.organisations import service as organisations
from identity.people import service
from identity.people.models import Person, RoleGrant
from identity.people.schemas import (
    GuardianLinkCreate,
    GuardianLinkRead,
    InitialPassword,
    PersonCreate,
    PersonDeactivate,
    PersonRead,
    PersonUpdate,
    ResidentIdReveal,
    RoleGrantCreate,
    RoleGrantRead,
)
from identity.roles import (
    ADMIN_ROLES,
    DIRECTORY_READERS,
    SCOPE_IDENTITY_REVEAL,
    SCOPE_PEOPLE_READ,
    SCOPE_PEOPLE_WRITE,
)
from kit.db import SessionDep
from kit.pagination import Page, PageDep

router = APIRouter(prefix="/people", tags=["people"])


@router.get("", response_model=Page[PersonRead])
def list_people(
    session: SessionDep,
    actor: ActorDep,
    cipher: CipherDep,
    page: PageDep,
    kind: PersonKind | None = None,
    org_id: str | None = None,
    q: Annotated[str | None, Query(max_length=32, description="Part of the name")] = None,
    student_number: Annotated[str | None, Query(max_length=19)] = None,
    resident_id_number: Annotated[str | None, Query(max_length=18, description="Exact match only")] = None,
    active: bool | None = None,
) -> Page[PersonRead]:
    """People within the caller's organisations, identifiers masked."""
    access.require_scope(actor, SCOPE_PEOPLE_READ)
    paths = access.scope_paths(actor, DIRECTORY_READERS)
    rows, total = service.list_within(
        session, paths, cipher=cipher, kind=kind, org_id=org_id, name_contains=q,
        student_number=student_number, resident_id_number=resident_id_number, active=active,
        limit=page.limit, offset=page.offset,
    )  # fmt: skip
    if rows:
        audit.record(
            session, action="person.list", actor=actor, target_type="person",
            detail={"person_ids": [row.id for row in rows], "filters": {"kind": kind, "org_id": org_id, "q": q}},
        )  # fmt: skip
    return Page(items=[PersonRead.model_validate(row) for row in rows], total=total, **page.model_dump())


@router.post("", response_model=PersonRead, status_code=status.HTTP_201_CREATED)
def create_person(session: SessionDep, actor: ActorDep, cipher: CipherDep, data: PersonCreate) -> PersonRead:
    """Create a staff member, student or guardian in an organisation the caller manages."""
    organisation = session.get(organisations.Organisation, data.org_id)
    if organisation is not None:
        access.require(actor, roles=ADMIN_ROLES, org_path=organisation.path, scope=SCOPE_PEOPLE_WRITE)
    cleaned = service.clean(data, organisation)
    person = service.create(session, cleaned, cipher, created_by=actor.person_id)
    audit.record(
        session, action="person.create", actor=actor, target_type="person", target_id=person.id,
        org_id=person.org_id, detail={"kind": person.kind},
    )  # fmt: skip
    return PersonRead.model_validate(person)


def _load_visible(session: Session, actor: Actor, person_id: str, *, roles: tuple[str, ...], scope: str) -> Person:
    person = service.get(session, person_id)
    path = service.org_path_of(session, person)
    if not organisations.within(path, access.scope_paths(actor, DIRECTORY_READERS)):
        # Don't reveal that a person exists in another school.
        raise PersonNotFound(f"No person has id {person_id!r}.")
    access.require(actor, roles=roles, org_path=path, scope=scope)
    return person


@router.get("/{person_id}", response_model=PersonRead)
def read_person(session: SessionDep, actor: ActorDep, person_id: str) -> PersonRead:
    """One person, identifiers masked; the read is audited."""
    person = _load_visible(session, actor, person_id, roles=DIRECTORY_READERS, scope=SCOPE_PEOPLE_READ)
    audit.record(
        session,
        action="person.read",
        actor=actor,
        target_type="person",
        target_id=person.id,
        org_id=person.org_id,
    )
    return PersonRead.model_validate(person)


@router.get("/{person_id}/resident-id", response_model=ResidentIdReveal)
def reveal_resident_id(session: SessionDep, actor: ActorDep, cipher: CipherDep, person_id: str) -> ResidentIdReveal:
    """The full resident ID number, for an admin of the person's organisation; always audited."""
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_IDENTITY_REVEAL)
    number = service.reveal_resident_id(person, cipher)
    if number is None:
        raise PersonNotFound("This person has no resident ID number on record.")
    audit.record(
        session, action="person.reveal_resident_id", actor=actor, target_type="person", target_id=person.id,
        org_id=person.org_id,
    )  # fmt: skip
    return ResidentIdReveal(person_id=person.id, resident_id_number=number)


@router.patch("/{person_id}", response_model=PersonRead)
def update_person(
    session: SessionDep, actor: ActorDep, cipher: CipherDep, person_id: str, data: PersonUpdate
) -> PersonRead:
    """Correct a person's directory record; moving to another organisation needs rights over both."""
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    if data.org_id and data.org_id != person.org_id:
        target = organisations.get(session, data.org_id)
        access.require(actor, roles=ADMIN_ROLES, org_path=target.path, scope=SCOPE_PEOPLE_WRITE)
    changed = service.update(session, person, data, cipher)
    audit.record(
        session, action="person.update", actor=actor, target_type="person", target_id=person.id,
        org_id=person.org_id, detail={"changed": changed},
    )  # fmt: skip
    return PersonRead.model_validate(person)


@router.post("/{person_id}/deactivate", response_model=PersonRead)
def deactivate_person(session: SessionDep, actor: ActorDep, person_id: str, data: PersonDeactivate) -> PersonRead:
    """Deactivate an account; people are never hard-deleted."""
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    service.deactivate(session, person, reason=data.reason)
    # A deactivated account stops at once: its browser sessions end and every app's tokens are revoked.
    signed_out = browser_sessions.end_all_for(session, person.id, reason="deactivated", origin=None,
                                              org_id=person.org_id)  # fmt: skip
    revoked = tokens.revoke_person_tokens(session, person.id, reason="account_deactivated")
    audit.record(
        session, action="person.deactivate", actor=actor, target_type="person", target_id=person.id,
        org_id=person.org_id, detail={"reason": data.reason, "sessions_ended": signed_out, "tokens_revoked": revoked},
    )  # fmt: skip
    return PersonRead.model_validate(person)


@router.post("/{person_id}/initial-password", response_model=InitialPassword)
def issue_initial_password(
    session: SessionDep, actor: ActorDep, settings: SettingsDep, cipher: CipherDep, person_id: str, response: Response
) -> InitialPassword:
    """Give an account (an imported one, or one whose owner forgot the password) a one-time initial password.

    The person must choose their own at the next login; their browser sessions end and a lockout is lifted.
    """
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    if not person.active:
        raise InactiveRecord("A deactivated account cannot be given a password; reactivate it first.")
    if not person.username:
        raise NoLoginName("This person has no login name yet; set a username first.")
    password = passwords.generate_initial_password()
    accounts.set_password(session, settings, person, password, must_change=True, actor=actor)
    accounts.lift_lockout(session, accounts.account_key(cipher, person.username))
    browser_sessions.end_all_for(session, person.id, reason="password_reset", origin=None, org_id=person.org_id)
    response.headers["Cache-Control"] = "no-store"
    return InitialPassword(person_id=person.id, username=person.username, initial_password=password)


@router.get("/{person_id}/roles", response_model=list[RoleGrantRead])
def list_roles(session: SessionDep, actor: ActorDep, person_id: str) -> list[RoleGrantRead]:
    """Every role the person holds or held."""
    person = _load_visible(session, actor, person_id, roles=DIRECTORY_READERS, scope=SCOPE_PEOPLE_READ)
    return [RoleGrantRead.model_validate(grant) for grant in service.roles_of(session, person.id)]


@router.post("/{person_id}/roles", response_model=RoleGrantRead, status_code=status.HTTP_201_CREATED)
def grant_role(session: SessionDep, actor: ActorDep, person_id: str, data: RoleGrantCreate) -> RoleGrantRead:
    """Give the person a role within an organisation the caller manages."""
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    target = organisations.get(session, data.org_id)
    held = [(claim.role, claim.org_path) for claim in actor.principal.roles]
    service.check_grantable(held, role=data.role, target=target)
    grant = service.grant_role(session, person, role=data.role, org_id=target.id, granted_by=actor.person_id)
    audit.record(
        session, action="role.grant", actor=actor, target_type="person", target_id=person.id, org_id=target.id,
        detail={"role": data.role, "grant_id": grant.id},
    )  # fmt: skip
    return RoleGrantRead.model_validate(grant)


@router.post("/{person_id}/roles/{grant_id}/revoke", response_model=RoleGrantRead)
def revoke_role(session: SessionDep, actor: ActorDep, person_id: str, grant_id: str) -> RoleGrantRead:
    """Withdraw a role grant (kept in history)."""
    person = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    grant = session.get(RoleGrant, grant_id)
    if grant is None or grant.person_id != person.id:
        raise PersonNotFound(f"Person {person_id} has no role grant {grant_id!r}.")
    target = organisations.get(session, grant.org_id)
    held = [(claim.role, claim.org_path) for claim in actor.principal.roles]
    service.check_grantable(held, role=grant.role, target=target)
    service.revoke_role(session, grant)
    audit.record(
        session, action="role.revoke", actor=actor, target_type="person", target_id=person.id, org_id=target.id,
        detail={"role": grant.role, "grant_id": grant.id},
    )  # fmt: skip
    return RoleGrantRead.model_validate(grant)


@router.get("/{person_id}/guardians", response_model=list[GuardianLinkRead])
def list_guardians(session: SessionDep, actor: ActorDep, person_id: str) -> list[GuardianLinkRead]:
    """A student's guardians; audited like any read of a minor's personal data."""
    student = _load_visible(session, actor, person_id, roles=DIRECTORY_READERS, scope=SCOPE_PEOPLE_READ)
    links = service.guardians_of(session, student.id)
    audit.record(
        session, action="guardian.list", actor=actor, target_type="person", target_id=student.id,
        org_id=student.org_id,
    )  # fmt: skip
    return [GuardianLinkRead.model_validate(link) for link in links]


@router.post("/{person_id}/guardians", response_model=GuardianLinkRead, status_code=status.HTTP_201_CREATED)
def link_guardian(session: SessionDep, actor: ActorDep, person_id: str, data: GuardianLinkCreate) -> GuardianLinkRead:
    """Link a guardian to a student of a school the caller manages."""
    student = _load_visible(session, actor, person_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    guardian = _load_visible(session, actor, data.guardian_id, roles=ADMIN_ROLES, scope=SCOPE_PEOPLE_WRITE)
    link = service.link_guardian(session, student, guardian, relationship=data.relationship, linked_by=actor.person_id)
    audit.record(
        session, action="guardian.link", actor=actor, target_type="person", target_id=student.id,
        org_id=student.org_id, detail={"guardian_id": guardian.id, "relationship": data.relationship},
    )  # fmt: skip
    return GuardianLinkRead.model_validate(link)
