"""Internal client-registration API (RFC 7591 field names) for the app store and platform operators.

Not public: the gateway does not route it. Callers need the ``clients.manage`` scope, which only
first-party platform clients (the app store's back end) and city administrators can hold.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import Session, col, select

from identity import access
from identity.audit import service as audit
from identity.deps import Actor, ActorDep, SettingsDep
from identity.oauth import clients, tokens
from identity.oauth.models import OAuthClient
from identity.oauth.schemas import ClientRead, ClientRegistered, ClientRegistration, ClientSecretRotated, ClientUpdate
from identity.organisations.models import Organisation
from kit.db import ReadSessionDep, SessionDep
from kit.errors import Forbidden

SCOPE_CLIENTS_MANAGE = "clients.manage"

router = APIRouter(prefix="/oauth/clients", tags=["OAuth clients (internal)"])


def _require_manager(session: Session, actor: Actor) -> None:
    access.require_scope(actor, SCOPE_CLIENTS_MANAGE)
    if not actor.principal.roles and actor.principal.subject == actor.principal.client_id:
        return  # a platform service acting for itself (client credentials)
    city = session.exec(select(Organisation).where(col(Organisation.parent_id).is_(None))).first()
    if city is None:
        raise Forbidden("No city is set up yet.")
    access.require(actor, roles=("city_admin",), org_path=city.path, scope=SCOPE_CLIENTS_MANAGE)


def _read(row: OAuthClient) -> ClientRead:
    return ClientRead(
        client_id=row.client_id,
        client_name=row.client_name,
        client_type=row.client_type,
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        grant_types=clients.json_list(row.grant_types),
        redirect_uris=clients.json_list(row.redirect_uris),
        post_logout_redirect_uris=clients.json_list(row.post_logout_redirect_uris),
        scope=row.scope,
        subject_type=row.subject_type,
        first_party=row.first_party,
        app_id=row.app_id,
        active=row.active,
        created_at=row.created_at,
    )


@router.post("", response_model=ClientRegistered, status_code=status.HTTP_201_CREATED)
def register_client(
    registration: ClientRegistration, session: SessionDep, actor: ActorDep, settings: SettingsDep
) -> ClientRegistered:
    """Register a client; a generated secret is returned once and stored only as a hash."""
    _require_manager(session, actor)
    row, secret = clients.register(
        session, registration, registered_by=actor.person_id, production=settings.environment == "production"
    )
    audit.record(
        session,
        action="oauth.client_registered",
        actor=actor,
        target_type="oauth_client",
        target_id=row.client_id,
        detail={"scope": row.scope, "first_party": row.first_party},
    )
    return ClientRegistered(**_read(row).model_dump(), client_secret=secret)


@router.get("/{client_id}", response_model=ClientRead)
def get_client(client_id: str, session: ReadSessionDep, actor: ActorDep) -> ClientRead:
    """A registered client's metadata (never its secret)."""
    _require_manager(session, actor)
    return _read(clients.get(session, client_id))


@router.patch("/{client_id}", response_model=ClientRead)
def update_client(
    client_id: str, changes: ClientUpdate, session: SessionDep, actor: ActorDep, settings: SettingsDep
) -> ClientRead:
    """Change redirect URIs, scopes, name or keys."""
    _require_manager(session, actor)
    row = clients.update(
        session, clients.get(session, client_id), changes, production=settings.environment == "production"
    )
    audit.record(
        session,
        action="oauth.client_updated",
        actor=actor,
        target_type="oauth_client",
        target_id=row.client_id,
        detail=changes.model_dump(exclude_none=True, exclude={"jwks"}),
    )
    return _read(row)


@router.post("/{client_id}/secret", response_model=ClientSecretRotated)
def rotate_client_secret(client_id: str, session: SessionDep, actor: ActorDep) -> ClientSecretRotated:
    """Issue a new client secret; the old one stops working at once."""
    _require_manager(session, actor)
    row = clients.get(session, client_id)
    secret = clients.rotate_secret(session, row)
    audit.record(
        session, action="oauth.client_secret_rotated", actor=actor, target_type="oauth_client", target_id=row.client_id
    )
    return ClientSecretRotated(client_id=row.client_id, client_secret=secret)


@router.post("/{client_id}/disable", response_model=ClientRead)
def disable_client(client_id: str, session: SessionDep, actor: ActorDep) -> ClientRead:
    """Disable a client and revoke every token it holds (announced to the gateway)."""
    _require_manager(session, actor)
    row = clients.get(session, client_id)
    row.active = False
    session.add(row)
    revoked = tokens.revoke_client_tokens(session, row.client_id, reason="client_disabled")
    audit.record(
        session,
        action="oauth.client_disabled",
        actor=actor,
        target_type="oauth_client",
        target_id=row.client_id,
        detail={"tokens_revoked": revoked},
    )
    return _read(row)
