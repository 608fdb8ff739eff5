"""Identity's use of the kit's audit log: entries name the acting person or client and where they acted from."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from identity.deps import Actor, Origin
from kit.audit import AuditEntry, AuditFilter, ChainReport, append, search, verify_chain

__all__ = ["AuditEntry", "AuditFilter", "ChainReport", "record", "search", "verify_chain"]


def record(
    session: Session,
    *,
    action: str,
    actor: Actor | Origin | None,
    result: str = "success",
    target_type: str | None = None,
    target_id: str | None = None,
    org_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it stands or falls with the action it records)."""
    return append(
        session, action=action, actor_id=actor.person_id if actor else None,
        actor_client=actor.client_id if actor else None, source_ip=actor.source_ip if actor else None,
        request_id=actor.request_id if actor else None, result=result, target_type=target_type,
        target_id=target_id, org_id=org_id, detail=detail,
    )  # fmt: skip
