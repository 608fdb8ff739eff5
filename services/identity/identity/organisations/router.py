"""Admin API for the organisation tree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from contracts.events.identity import OrganisationKind
from identity import access
from identity.audit import service as audit
from identity.deps import ActorDep
from identity.organisations import service
from identity.organisations.schemas import OrganisationCreate, OrganisationRead, OrganisationUpdate
from identity.roles import DIRECTORY_READERS, ORG_MANAGERS, SCOPE_ORG_READ, SCOPE_ORG_WRITE
from kit.db import ReadSessionDep, SessionDep
from kit.pagination import Page, PageDep

router = APIRouter(prefix="/organisations", tags=["organisations"])


@router.get("", response_model=Page[OrganisationRead])
def list_organisations(
    session: ReadSessionDep,
    actor: ActorDep,
    page: PageDep,
    kind: OrganisationKind | None = None,
    parent_id: str | None = None,
    q: Annotated[str | None, Query(max_length=50, description="Part of the name")] = None,
    active: bool | None = None,
) -> Page[OrganisationRead]:
    """List the organisations within the caller's own subtree."""
    access.require_scope(actor, SCOPE_ORG_READ)
    paths = access.scope_paths(actor, DIRECTORY_READERS)
    rows, total = service.list_within(
        session, paths, kind=kind, parent_id=parent_id, name_contains=q, active=active,
        limit=page.limit, offset=page.offset,
    )  # fmt: skip
    return Page(items=[OrganisationRead.model_validate(row) for row in rows], total=total, **page.model_dump())


@router.post("", response_model=OrganisationRead, status_code=status.HTTP_201_CREATED)
def create_organisation(session: SessionDep, actor: ActorDep, data: OrganisationCreate) -> OrganisationRead:
    """Add a district under the city, or a school under a district."""
    parent = service.get(session, data.parent_id)
    access.require(actor, roles=ORG_MANAGERS, org_path=parent.path, scope=SCOPE_ORG_WRITE)
    organisation = service.create(session, data)
    audit.record(
        session, action="organisation.create", actor=actor, target_type="organisation",
        target_id=organisation.id, org_id=organisation.id, detail={"name": organisation.name},
    )  # fmt: skip
    return OrganisationRead.model_validate(organisation)


@router.get("/{org_id}", response_model=OrganisationRead)
def read_organisation(session: ReadSessionDep, actor: ActorDep, org_id: str) -> OrganisationRead:
    """One organisation within the caller's subtree."""
    organisation = service.get(session, org_id)
    access.require(actor, roles=DIRECTORY_READERS, org_path=organisation.path, scope=SCOPE_ORG_READ)
    return OrganisationRead.model_validate(organisation)


@router.patch("/{org_id}", response_model=OrganisationRead)
def update_organisation(
    session: SessionDep, actor: ActorDep, org_id: str, data: OrganisationUpdate
) -> OrganisationRead:
    """Rename an organisation or change a school's type."""
    organisation = service.get(session, org_id)
    access.require(actor, roles=ORG_MANAGERS, org_path=organisation.path, scope=SCOPE_ORG_WRITE)
    service.update(session, organisation, data)
    audit.record(
        session, action="organisation.update", actor=actor, target_type="organisation",
        target_id=organisation.id, org_id=organisation.id, detail=data.model_dump(exclude_none=True),
    )  # fmt: skip
    return OrganisationRead.model_validate(organisation)


@router.post("/{org_id}/deactivate", response_model=OrganisationRead)
def deactivate_organisation(session: SessionDep, actor: ActorDep, org_id: str) -> OrganisationRead:
    """Deactivate an organisation (never deleted; its history stays)."""
    organisation = service.get(session, org_id)
    access.require(actor, roles=ORG_MANAGERS, org_path=organisation.path, scope=SCOPE_ORG_WRITE)
    service.deactivate(session, organisation)
    audit.record(
        session, action="organisation.deactivate", actor=actor, target_type="organisation",
        target_id=organisation.id, org_id=organisation.id,
    )  # fmt: skip
    return OrganisationRead.model_validate(organisation)
