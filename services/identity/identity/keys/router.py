"""The JWKS, and signing-key rotation for the city's administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlmodel import col, select

from identity import access
from identity.audit import service as audit
from identity.deps import ActorDep, SettingsDep
from identity.keys import service
from identity.organisations.models import Organisation
from identity.roles import KEY_MANAGERS, SCOPE_KEYS_MANAGE
from kit.db import ReadSessionDep, SessionDep
from kit.errors import Forbidden

router = APIRouter(tags=["keys"])


class RotatedKey(BaseModel):
    kid: str
    signs_from: datetime


@router.get("/.well-known/jwks.json")
def jwks(session: ReadSessionDep, response: Response) -> dict[str, Any]:
    """Public keys that verify the platform's tokens (RFC 7517)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return service.published_jwks(session)


@router.post("/keys/rotate", response_model=RotatedKey)
def rotate_key(session: SessionDep, actor: ActorDep, settings: SettingsDep) -> RotatedKey:
    """Publish a new signing key now; it starts signing after the publish-ahead period."""
    city = session.exec(select(Organisation).where(col(Organisation.parent_id).is_(None))).first()
    if city is None:
        raise Forbidden("No city is set up yet.")
    access.require(actor, roles=KEY_MANAGERS, org_path=city.path, scope=SCOPE_KEYS_MANAGE)
    key = service.rotate(session, settings)
    audit.record(session, action="keys.rotate", actor=actor, target_type="signing_key", target_id=key.kid)
    return RotatedKey(kid=key.kid, signs_from=key.signs_from)
