"""Registering and authenticating OAuth clients (the app store's internal registration API uses these)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel import Session

from contracts.scopes import SCOPES_BY_ID
from identity.oauth.errors import ClientNotFound, InvalidClientMetadata
from identity.oauth.models import OAuthClient
from identity.oauth.schemas import ClientRegistration, ClientUpdate
from kit.errors import FieldError

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(client: OAuthClient, secret: str) -> bool:
    if not client.client_secret_hash:
        return False
    return hmac.compare_digest(client.client_secret_hash, hash_secret(secret))


def json_list(value: str) -> list[str]:
    loaded = json.loads(value or "[]")
    return [str(item) for item in loaded]


def get(session: Session, client_id: str) -> OAuthClient:
    client = session.get(OAuthClient, client_id)
    if client is None:
        raise ClientNotFound(f"There is no OAuth client {client_id!r}.")
    return client


def find_active(session: Session, client_id: str) -> OAuthClient | None:
    client = session.get(OAuthClient, client_id)
    return client if client is not None and client.active else None


def _check_redirect_uri(uri: str, *, field: str, production: bool) -> FieldError | None:
    parts = urlsplit(uri)
    if parts.fragment:
        return FieldError(field=field, message="A redirect URI must not contain a fragment (#...).")
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and parts.hostname is not None:
        if parts.hostname in _LOOPBACK_HOSTS or parts.hostname == "localhost" or not production:
            return None
        return FieldError(field=field, message="Use an https:// redirect URI (http is allowed for loopback only).")
    return FieldError(field=field, message="A redirect URI must be an absolute https:// URL.")


def _check_scopes(scope: str, *, first_party: bool) -> list[FieldError]:
    audience = "platform" if first_party else "app"
    errors = []
    for scope_id in scope.split():
        known = SCOPES_BY_ID.get(scope_id)
        if known is None:
            errors.append(FieldError(field="scope", message=f"Unknown scope {scope_id!r}; see the scope catalogue."))
        elif not known.requestable_by(audience):
            errors.append(
                FieldError(field="scope", message=f"The scope {scope_id!r} is not available to {audience} clients.")
            )
    return errors


def _check_jwks(jwks: dict[str, Any] | None) -> tuple[str | None, list[FieldError]]:
    if jwks is None:
        return None, []
    try:
        key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as error:
        return None, [FieldError(field="jwks", message=f"Not a valid JWK set: {error}")]
    if any(key.is_private for key in key_set.keys):
        return None, [FieldError(field="jwks", message="Register public keys only; never send a private key.")]
    return json.dumps(jwks, sort_keys=True), []


def register(
    session: Session, registration: ClientRegistration, *, registered_by: str | None, production: bool
) -> tuple[OAuthClient, str | None]:
    """Create a client; returns it and, for ``client_secret_*`` clients, the secret (shown once only)."""
    errors: list[FieldError] = []
    method = registration.token_endpoint_auth_method
    public = method == "none"
    grant_types = list(dict.fromkeys(registration.grant_types))
    for uri in registration.redirect_uris:
        if problem := _check_redirect_uri(uri, field="redirect_uris", production=production):
            errors.append(problem)
    for uri in registration.post_logout_redirect_uris:
        if problem := _check_redirect_uri(uri, field="post_logout_redirect_uris", production=production):
            errors.append(problem)
    if "authorization_code" in grant_types and not registration.redirect_uris:
        errors.append(FieldError(field="redirect_uris", message="The authorization_code grant needs a redirect URI."))
    if public and "client_credentials" in grant_types:
        errors.append(
            FieldError(
                field="grant_types", message="A public client (auth method 'none') cannot use client_credentials."
            )
        )
    errors.extend(_check_scopes(registration.scope, first_party=registration.first_party))
    jwks_json, jwks_errors = _check_jwks(registration.jwks)
    errors.extend(jwks_errors)
    if method == "private_key_jwt" and jwks_json is None and not jwks_errors:
        errors.append(FieldError(field="jwks", message="private_key_jwt needs the client's public keys in 'jwks'."))
    hosts = {urlsplit(uri).hostname for uri in registration.redirect_uris}
    if registration.subject_type == "pairwise" and len(hosts) > 1 and not registration.sector_identifier:
        errors.append(
            FieldError(
                field="sector_identifier",
                message="Redirect URIs on several hosts need a sector_identifier for pairwise subject identifiers.",
            )
        )
    if errors:
        raise InvalidClientMetadata("The client registration is not valid; fix the listed fields.", errors=errors)
    if registration.client_id and session.get(OAuthClient, registration.client_id) is not None:
        raise InvalidClientMetadata(
            "The client id is taken.",
            errors=[FieldError(field="client_id", message=f"{registration.client_id!r} is already registered.")],
        )

    secret = secrets.token_urlsafe(32) if method in ("client_secret_basic", "client_secret_post") else None
    sector = registration.sector_identifier or (sorted(h for h in hosts if h)[0] if hosts else "")
    client = OAuthClient(
        client_id=registration.client_id or f"app_{secrets.token_hex(12)}",
        client_name=registration.client_name,
        client_type="public" if public else "confidential",
        token_endpoint_auth_method=method,
        client_secret_hash=hash_secret(secret) if secret else None,
        jwks=jwks_json,
        redirect_uris=json.dumps(registration.redirect_uris),
        post_logout_redirect_uris=json.dumps(registration.post_logout_redirect_uris),
        grant_types=json.dumps(grant_types),
        scope=" ".join(dict.fromkeys(registration.scope.split())),
        subject_type=registration.subject_type,
        sector_identifier=sector or (registration.client_id or "client"),
        first_party=registration.first_party,
        app_id=registration.app_id,
        owner_org_id=registration.owner_org_id,
        registered_by=registered_by,
    )
    if not client.sector_identifier:
        client.sector_identifier = client.client_id
    session.add(client)
    session.flush()
    return client, secret


def update(session: Session, client: OAuthClient, changes: ClientUpdate, *, production: bool) -> OAuthClient:
    """Change redirect URIs, allowed scopes, name or keys; scope reductions take effect for new tokens."""
    errors: list[FieldError] = []
    if changes.redirect_uris is not None:
        for uri in changes.redirect_uris:
            if problem := _check_redirect_uri(uri, field="redirect_uris", production=production):
                errors.append(problem)
    if changes.scope is not None:
        errors.extend(_check_scopes(changes.scope, first_party=client.first_party))
    jwks_json, jwks_errors = _check_jwks(changes.jwks)
    errors.extend(jwks_errors)
    grant_types = list(dict.fromkeys(changes.grant_types)) if changes.grant_types is not None else None
    if grant_types is not None:
        redirect_uris = changes.redirect_uris if changes.redirect_uris is not None else json_list(client.redirect_uris)
        if "authorization_code" in grant_types and not redirect_uris:
            errors.append(
                FieldError(field="redirect_uris", message="The authorization_code grant needs a redirect URI.")
            )
        if client.token_endpoint_auth_method == "none" and "client_credentials" in grant_types:  # noqa: S105
            errors.append(
                FieldError(
                    field="grant_types", message="A public client (auth method 'none') cannot use client_credentials."
                )
            )
    if errors:
        raise InvalidClientMetadata("The client change is not valid; fix the listed fields.", errors=errors)
    if grant_types is not None:
        client.grant_types = json.dumps(grant_types)
    if changes.client_name is not None:
        client.client_name = changes.client_name
    if changes.redirect_uris is not None:
        client.redirect_uris = json.dumps(changes.redirect_uris)
    if changes.post_logout_redirect_uris is not None:
        client.post_logout_redirect_uris = json.dumps(changes.post_logout_redirect_uris)
    if changes.scope is not None:
        client.scope = " ".join(dict.fromkeys(changes.scope.split()))
    if jwks_json is not None:
        client.jwks = jwks_json
    client.updated_at = datetime.now(UTC)
    session.add(client)
    session.flush()
    return client


def rotate_secret(session: Session, client: OAuthClient) -> str:
    if client.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise InvalidClientMetadata(
            "This client does not authenticate with a secret.",
            errors=[FieldError(field="token_endpoint_auth_method", message="Only client_secret_* clients have one.")],
        )
    secret = secrets.token_urlsafe(32)
    client.client_secret_hash = hash_secret(secret)
    client.updated_at = datetime.now(UTC)
    session.add(client)
    session.flush()
    return secret


def ensure_platform_client(
    session: Session,
    *,
    client_id: str,
    scope: str,
    secret: str | None = None,
    name: str | None = None,
    redirect_uris: list[str] | None = None,
    public: bool = False,
    production: bool = False,
) -> tuple[OAuthClient, bool]:
    """Create or update a first-party client of the platform (idempotent); returns it and whether it was created.

    By default a confidential client for the client-credentials grant, with this ``secret``. With ``public=True``
    a public client of the authorization-code flow (PKCE required, no secret: a portal whose sign-in runs in the
    user's browser); ``redirect_uris`` are then required. A confidential client given ``redirect_uris`` may also
    use the authorization-code grant. Deployments run it at every start (the secret comes from their secret
    store), so it converges rather than failing when the client exists.
    """
    uris = list(dict.fromkeys(redirect_uris or []))
    if public and secret is not None:
        raise InvalidClientMetadata(
            "A public client has no secret.",
            errors=[FieldError(field="secret", message="Leave the secret out for a public client.")],
        )
    if not public and not secret:
        raise InvalidClientMetadata(
            "A confidential client needs a secret.",
            errors=[FieldError(field="secret", message="Give the client's secret.")],
        )
    if public and not uris:
        raise InvalidClientMetadata(
            "A public client signs people in and needs a redirect URI.",
            errors=[FieldError(field="redirect_uris", message="Give at least one redirect URI.")],
        )
    if public:
        grant_types = ["authorization_code"]
    else:
        grant_types = ["client_credentials", "authorization_code"] if uris else ["client_credentials"]
    method = "none" if public else "client_secret_basic"
    row = session.get(OAuthClient, client_id)
    created = row is None
    if row is None:
        registration = ClientRegistration(
            client_id=client_id, client_name=name or client_id, grant_types=grant_types, scope=scope,
            subject_type="public", first_party=True, redirect_uris=uris, token_endpoint_auth_method=method,
        )  # fmt: skip
        row, _ = register(session, registration, registered_by=None, production=production)
    else:
        update(session, row, ClientUpdate(scope=scope, client_name=name, redirect_uris=uris), production=production)
        row.grant_types = json.dumps(grant_types)
        row.token_endpoint_auth_method = method
        row.client_type = "public" if public else "confidential"
        row.first_party = True
        row.active = True
    row.client_secret_hash = hash_secret(secret) if secret is not None else None
    row.updated_at = datetime.now(UTC)
    session.add(row)
    session.flush()
    return row, created
