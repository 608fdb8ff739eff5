"""The organisation tree: plain functions over a session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from contracts.events.identity import OrganisationCreatedV1, OrganisationUpdatedV1
from identity.errors import DuplicateSchoolCode, InvalidOrganisationPlacement, OrganisationNotFound
from identity.organisations.models import Organisation, new_id
from identity.organisations.schemas import OrganisationCreate, OrganisationUpdate
from kit.errors import FieldError
from kit.identifiers import validate_school_code
from kit.outbox import emit
from kit.pagination import fetch_page

_PARENT_KIND = {"district": "city", "school": "district"}


def get(session: Session, org_id: str) -> Organisation:
    organisation = session.get(Organisation, org_id)
    if organisation is None:
        raise OrganisationNotFound(f"No organisation has id {org_id!r}.")
    return organisation


def within(path: str, scope_paths: Sequence[str]) -> bool:
    """Whether ``path`` lies in one of the subtrees (whole path segments, not string prefixes)."""
    return any(path == scope or path.startswith(scope.rstrip("/") + "/") for scope in scope_paths)


def subtree_filter(column: sa.ColumnElement[str] | object, scope_paths: Sequence[str]) -> sa.ColumnElement[bool]:
    clauses = []
    for scope in scope_paths:
        clauses.append(column == scope)
        clauses.append(col(column).startswith(scope.rstrip("/") + "/"))
    return or_(*clauses) if clauses else sa.false()


def create_root(session: Session, *, name: str) -> Organisation:
    """The city itself; created once by bootstrap, never through the API."""
    org_id = new_id()
    organisation = Organisation(id=org_id, kind="city", name=name, path=f"/{org_id}")
    session.add(organisation)
    session.flush()
    _emit_created(session, organisation)
    return organisation


def create(session: Session, data: OrganisationCreate) -> Organisation:
    parent = get(session, data.parent_id)
    if _PARENT_KIND.get(data.kind) != parent.kind:
        expected = _PARENT_KIND.get(data.kind, "none")
        raise InvalidOrganisationPlacement(
            f"A {data.kind} must be created under a {expected}, but {parent.name} is a {parent.kind}.",
            errors=[FieldError(field="parent_id", message=f"must be a {expected}")],
        )
    if not parent.active:
        raise InvalidOrganisationPlacement(
            f"{parent.name} is deactivated; nothing can be added under it.",
            errors=[FieldError(field="parent_id", message="parent is deactivated")],
        )
    school_code: str | None = None
    if data.kind == "school":
        problems = []
        if data.school_code is None:
            problems.append(
                FieldError(field="school_code", message="学校必须填写10位学校标识码 / required for schools")
            )
        if data.school_type is None:
            problems.append(FieldError(field="school_type", message="学校必须填写办学类型 / required for schools"))
        if problems:
            raise InvalidOrganisationPlacement("A school needs its school code and school type.", errors=problems)
        try:
            school_code = validate_school_code(data.school_code or "")
        except ValueError as error:
            raise InvalidOrganisationPlacement(
                str(error), errors=[FieldError(field="school_code", message=str(error))]
            ) from None
        if session.exec(select(Organisation.id).where(Organisation.school_code == school_code)).first():
            raise DuplicateSchoolCode(
                f"School code {school_code} is already registered.",
                errors=[FieldError(field="school_code", message="already in use")],
            )
    elif data.school_code or data.school_type:
        raise InvalidOrganisationPlacement(
            "Only schools have a school code and school type.",
            errors=[FieldError(field="school_code", message="only for schools")],
        )
    org_id = new_id()
    organisation = Organisation(
        id=org_id,
        parent_id=parent.id,
        kind=data.kind,
        name=data.name.strip(),
        path=f"{parent.path}/{org_id}",
        school_code=school_code,
        school_type=data.school_type if data.kind == "school" else None,
    )
    session.add(organisation)
    try:
        session.flush()
    except IntegrityError:
        raise DuplicateSchoolCode(f"School code {school_code} is already registered.") from None
    _emit_created(session, organisation)
    return organisation


def _emit_created(session: Session, organisation: Organisation) -> None:
    emit(
        session,
        OrganisationCreatedV1(
            org_id=organisation.id,
            parent_id=organisation.parent_id,
            kind=organisation.kind,
            name=organisation.name,
            path=organisation.path,
            school_code=organisation.school_code,
            school_type=organisation.school_type,
        ),
        subject_id=organisation.id,
        org_id=organisation.id,
    )


def update(session: Session, organisation: Organisation, data: OrganisationUpdate) -> Organisation:
    changed: list[str] = []
    if data.name is not None and data.name.strip() != organisation.name:
        organisation.name = data.name.strip()
        changed.append("name")
    if data.school_type is not None and data.school_type != organisation.school_type:
        if organisation.kind != "school":
            raise InvalidOrganisationPlacement(
                "Only schools have a school type.",
                errors=[FieldError(field="school_type", message="only for schools")],
            )
        organisation.school_type = data.school_type
        changed.append("school_type")
    if changed:
        _save_and_emit_update(session, organisation, changed)
    return organisation


def deactivate(session: Session, organisation: Organisation) -> Organisation:
    if organisation.active:
        organisation.active = False
        _save_and_emit_update(session, organisation, ["active"])
    return organisation


def _save_and_emit_update(session: Session, organisation: Organisation, changed: list[str]) -> None:
    organisation.updated_at = datetime.now(UTC)
    session.add(organisation)
    session.flush()
    emit(
        session,
        OrganisationUpdatedV1(
            org_id=organisation.id,
            name=organisation.name,
            school_type=organisation.school_type,
            active=organisation.active,
            changed=changed,
        ),
        subject_id=organisation.id,
        org_id=organisation.id,
    )


def list_within(
    session: Session,
    scope_paths: Sequence[str],
    *,
    kind: str | None = None,
    parent_id: str | None = None,
    name_contains: str | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Organisation], int]:
    query = select(Organisation).where(subtree_filter(Organisation.path, scope_paths))
    if kind:
        query = query.where(Organisation.kind == kind)
    if parent_id:
        query = query.where(Organisation.parent_id == parent_id)
    if name_contains:
        query = query.where(col(Organisation.name).contains(name_contains))
    if active is not None:
        query = query.where(Organisation.active == active)
    return fetch_page(session, query, order_by=[col(Organisation.path)], limit=limit, offset=offset)
