"""Audit log queries for auditors."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from identity import access
from identity.audit import service
from identity.deps import ActorDep
from identity.roles import AUDIT_READERS, SCOPE_AUDIT_READ
from kit.db import SessionDep
from kit.errors import Forbidden
from kit.pagination import Page, PageDep

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntryRead(BaseModel):
    id: int
    at: datetime
    actor_id: str | None
    actor_client: str | None
    action: str
    target_type: str | None
    target_id: str | None
    org_id: str | None
    source_ip: str | None
    request_id: str | None
    result: str
    detail: dict[str, Any]
    hash: str


class ChainCheck(BaseModel):
    checked: int
    intact: bool
    first_broken_id: int | None
    reason: str | None


def _require_city_auditor(actor: ActorDep) -> None:
    access.require_scope(actor, SCOPE_AUDIT_READ)
    roots = [claim for claim in actor.principal.roles if claim.role in AUDIT_READERS and claim.org_path.count("/") == 1]
    if not roots:
        raise Forbidden("The audit log is read by the city's auditors (role auditor at the city).")


@router.get("/entries", response_model=Page[AuditEntryRead])
def search_entries(
    session: SessionDep, actor: ActorDep, page: PageDep, filters: Annotated[service.AuditFilter, Query()]
) -> Page[AuditEntryRead]:
    """Search the audit log, newest first; the search itself is audited."""
    _require_city_auditor(actor)
    rows, total = service.search(session, filters, limit=page.limit, offset=page.offset)
    items = [
        AuditEntryRead(**{**row.model_dump(exclude={"detail", "prev_hash"}), "detail": json.loads(row.detail)})
        for row in rows
    ]
    service.record(
        session, action="audit.search", actor=actor, detail=filters.model_dump(mode="json", exclude_none=True)
    )
    return Page(items=items, total=total, **page.model_dump())


@router.get("/verify", response_model=ChainCheck)
def verify(session: SessionDep, actor: ActorDep) -> ChainCheck:
    """Recompute the hash chain and report the first entry that was altered or removed, if any."""
    _require_city_auditor(actor)
    report = service.verify_chain(session)
    return ChainCheck(**report.__dict__)
