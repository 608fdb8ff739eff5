"""The OAuth 2.0 / OpenID Connect authorization server: authlib's grants over our tables.

authlib's server side is synchronous. Each request is turned into an :class:`Exchange` (the
database session, settings, who is signed in) and handled in a worker thread; the grant classes
below reach the exchange through a context variable, since authlib's callbacks do not pass it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, InvalidScopeError, OAuth2Payload, grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet
from sqlmodel import Session

from identity.audit import service as audit
from identity.config import IdentitySettings
from identity.deps import Origin
from identity.keys import service as keys
from identity.oauth import clients as client_store
from identity.oauth import consent as consents
from identity.oauth import tokens
from identity.oauth.claims import person_claims
from identity.oauth.models import AuthorizationCode, OAuthClient, RefreshToken, UsedClientAssertion
from identity.people.models import Person
from kit.crypto import FieldCipher

SCOPE_INTROSPECT_ANY = "tokens.introspect"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ALL_AUTH_METHODS = [*CLIENT_AUTH_METHODS, "none"]


@dataclass
class ResourceOwner:
    """A person as a grant sees them, with how and when they authenticated."""

    person: Person
    auth_time: int
    amr: list[str]
    grant_id: str | None = None
    browser_session_id: str | None = None

    def get_user_id(self) -> str:
        return self.person.id


@dataclass
class Exchange:
    """Everything one OAuth request needs, for the callbacks authlib makes in the worker thread."""

    session: Session
    settings: IdentitySettings
    cipher: FieldCipher
    origin: Origin
    released_scope: str | None = None  # set by the consent step: what the code will carry
    # When set, the exchange ran in a read session and its few writes (token record, audit entry) are
    # queued here and applied in one short write transaction after it: signing a client-credentials
    # token then holds no write lock.
    deferred_writes: list[Callable[[Session], object]] | None = None

    def write(self, change: Callable[[Session], object]) -> None:
        if self.deferred_writes is not None:
            self.deferred_writes.append(change)
        else:
            change(self.session)


_exchange: ContextVar[Exchange] = ContextVar("oauth_exchange")


def current() -> Exchange:
    return _exchange.get()


@contextmanager
def exchange(value: Exchange) -> Iterator[Exchange]:
    token = _exchange.set(value)
    try:
        yield value
    finally:
        _exchange.reset(token)


def _audit(action: str, *, result: str = "success", person: Person | None = None, **detail: Any) -> None:
    ex = current()
    ex.write(
        lambda session: audit.record(
            session,
            action=action,
            actor=ex.origin,
            result=result,
            target_type="person" if person else None,
            target_id=person.id if person else None,
            org_id=person.org_id if person else None,
            detail=detail,
        )
    )


# ------------------------------------------------------------------------------------------ requests


class _Payload(OAuth2Payload):
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class PlatformRequest(OAuth2Request):
    """An HTTP request as authlib wants it, built from what the async route already read."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]],
        form: Sequence[tuple[str, str]],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)  # case-insensitive, as HTTP headers are
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(list(query) + list(form))

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


# ------------------------------------------------------------------------------------------- clients


class Client(ClientMixin):
    """authlib's view of a registered client."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.redirect_uris = client_store.json_list(row.redirect_uris)
        self.grant_types = client_store.json_list(row.grant_types)
        self.allowed_scopes = row.scope.split()

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Never guess: the request must name one of the registered URIs (RFC 9700 §4.1.1).
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in self.allowed_scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match, no prefix or pattern

    def check_client_secret(self, client_secret: str) -> bool:
        return client_store.secret_matches(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.row.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def is_public(self) -> bool:
        return self.row.client_type == "public"


def _require_allowed_scope(grant: grants.BaseGrant) -> None:
    """A scope the client is not registered for is an error, not silently dropped (RFC 6749 §5.2)."""
    requested = (grant.request.payload.scope or "").split()
    client: Client | None = grant.request.client
    if client is None:
        return
    refused = [s for s in requested if s not in client.allowed_scopes]
    if refused:
        raise InvalidScopeError(description=f"The client is not allowed the scope(s): {' '.join(refused)}")


# -------------------------------------------------------------------------------- authorization code


@dataclass
class CodeView:
    row: AuthorizationCode

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str]:
        return list(json.loads(self.row.amr))

    @property
    def code_challenge(self) -> str | None:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.row.code_challenge_method


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()
        _require_allowed_scope(self)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ex = current()
        owner: ResourceOwner = request.user
        data = request.payload.data
        ex.session.add(
            AuthorizationCode(
                code_hash=tokens.digest(code),
                client_id=request.client.get_client_id(),
                person_id=owner.person.id,
                redirect_uri=request.payload.redirect_uri,
                scope=ex.released_scope if ex.released_scope is not None else (request.payload.scope or ""),
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method") if data.get("code_challenge") else None,
                auth_time=owner.auth_time,
                amr=json.dumps(owner.amr),
                browser_session_id=owner.browser_session_id,
                expires_at=datetime.now(UTC) + timedelta(seconds=ex.settings.authorization_code_ttl_seconds),
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> CodeView | None:
        ex = current()
        row = ex.session.get(AuthorizationCode, tokens.digest(code), with_for_update=True)
        if row is None or row.client_id != client.get_client_id():
            return None
        if row.used_at is not None:
            # A replayed code: whoever holds it may be an attacker, so what it bought is withdrawn.
            revoked = tokens.revoke_grant(ex.session, row.grant_id, reason="authorization_code_reuse")
            person = ex.session.get(Person, row.person_id)
            _audit("oauth.code_reused", result="denied", person=person, client_id=row.client_id, tokens_revoked=revoked)
            return None
        if tokens.as_utc(row.expires_at) <= datetime.now(UTC):
            return None
        return CodeView(row)

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        authorization_code.row.used_at = datetime.now(UTC)
        current().session.add(authorization_code.row)

    def authenticate_user(self, authorization_code: CodeView) -> ResourceOwner | None:
        row = authorization_code.row
        person = current().session.get(Person, row.person_id)
        if person is None or not person.active:
            return None
        return ResourceOwner(
            person=person, auth_time=row.auth_time, amr=authorization_code.get_amr(), grant_id=row.grant_id
        )


class S256Only(CodeChallenge):
    """PKCE with S256 only ('plain' protects nothing against a stolen code); mandatory for public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        from authlib.oauth2.rfc6749 import InvalidRequestError

        data = grant.request.payload.data
        if grant.request.client.is_public() and not data.get("code_challenge"):
            raise InvalidRequestError(
                "Public clients must use PKCE: send code_challenge with code_challenge_method=S256.",
                redirect_uri=redirect_uri,
            )
        if data.get("code_challenge") and data.get("code_challenge_method", "S256") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge_method(self, authorization_code: CodeView) -> str | None:
        return authorization_code.code_challenge_method


class OpenIDConnect(OpenIDCode):
    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # codes are single-use; a nonce only binds the ID token to the client's session

    def resolve_client_private_key(self, client: Client) -> Any:
        ex = current()
        return keys.private_key(ex.session, ex.settings)[1]

    def get_client_algorithm(self, client: Client) -> str:
        return keys.ALGORITHM

    def get_encode_header(self, client: Client) -> dict[str, str]:
        ex = current()
        kid, _ = keys.private_key(ex.session, ex.settings)
        return {"alg": keys.ALGORITHM, "kid": kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        ex = current()
        now = int(time.time())
        return {
            "iss": ex.settings.token_issuer,
            "aud": [client.get_client_id()],
            "iat": now,
            "exp": now + ex.settings.id_token_ttl_seconds,
            "azp": client.get_client_id(),
        }

    def generate_user_info(self, user: ResourceOwner, scope: str) -> UserInfo:
        ex = current()
        client: Client = ex_client()
        subject = consents.subject_for(
            ex.session, client.row, user.person.id, salt=ex.settings.pairwise_salt.get_secret_value()
        )
        claims = person_claims(
            ex.session, ex.cipher, user.person, set(scope.split()), for_app=client.row.app_id is not None
        )
        return UserInfo(sub=subject, **claims)


def ex_client() -> Client:
    request = _current_request.get()
    client: Client = request.client
    return client


_current_request: ContextVar[OAuth2Request] = ContextVar("oauth_request")


# ------------------------------------------------------------------------------ refresh and clients


@dataclass
class RefreshView:
    row: RefreshToken

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int((tokens.as_utc(self.row.expires_at) - datetime.now(UTC)).total_seconds()))

    def is_expired(self) -> bool:
        return tokens.as_utc(self.row.expires_at) <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None or self.row.rotated_at is not None


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshView | None:
        ex = current()
        row = ex.session.get(RefreshToken, tokens.digest(refresh_token), with_for_update=True)
        if row is None:
            return None
        if row.rotated_at is not None and row.revoked_at is None:
            # Presented after it was exchanged: two parties hold the family; end it for both.
            revoked = tokens.revoke_grant(ex.session, row.grant_id, reason="refresh_token_reuse")
            person = ex.session.get(Person, row.person_id)
            _audit(
                "oauth.refresh_reused", result="denied", person=person, client_id=row.client_id, tokens_revoked=revoked
            )
            return None
        if row.revoked_at is not None or tokens.as_utc(row.expires_at) <= datetime.now(UTC):
            return None
        person = ex.session.get(Person, row.person_id)
        if person is None or not person.active:
            return None  # invalid_grant, as for a revoked token
        return RefreshView(row)

    def authenticate_user(self, refresh_token: RefreshView) -> ResourceOwner | None:
        row = refresh_token.row
        person = current().session.get(Person, row.person_id)
        if person is None or not person.active:
            return None
        return ResourceOwner(
            person=person, auth_time=row.auth_time, amr=list(json.loads(row.amr)), grant_id=row.grant_id
        )

    def revoke_old_credential(self, refresh_token: RefreshView) -> None:
        refresh_token.row.rotated_at = datetime.now(UTC)
        current().session.add(refresh_token.row)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()
        _require_allowed_scope(self)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client authentication with the client's registered public keys."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str]) -> None:
        super().__init__(validate_jti=True)
        self._audiences = audiences

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: Client) -> Any:
        return KeySet.import_key_set(json.loads(client.row.jwks or '{"keys": []}'))

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        ex = current()
        key = hashlib.sha256(f"{claims['sub']}|{jti}".encode()).hexdigest()
        if ex.session.get(UsedClientAssertion, key) is not None:
            return False
        expires = datetime.fromtimestamp(int(claims.get("exp", time.time() + 300)), UTC)
        ex.session.add(UsedClientAssertion(key=key, expires_at=expires))
        ex.session.flush()
        return True


# ------------------------------------------------------------------------- introspection/revocation


def _lookup(token: str, hint: str | None) -> tokens.PresentedToken | None:
    ex = current()
    if hint == "refresh_token":
        return tokens.read_refresh_token(ex.session, token) or tokens.read_access_token(ex.session, ex.settings, token)
    return tokens.read_access_token(ex.session, ex.settings, token) or tokens.read_refresh_token(ex.session, token)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token: str, token_type_hint: str | None) -> tokens.PresentedToken | None:
        return _lookup(token, token_type_hint)

    def check_permission(self, token: tokens.PresentedToken, client: Client, request: OAuth2Request) -> bool:
        # Resource servers holding tokens.introspect may ask about any token; a client, about its own.
        return SCOPE_INTROSPECT_ANY in client.allowed_scopes or token.check_client(client)

    def introspect_token(self, token: tokens.PresentedToken) -> dict[str, Any]:
        body: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "scope": token.scope,
            "exp": token.expires_at,
        }
        if token.kind == "access_token":
            claims = token.claims
            body.update(
                token_type="Bearer",
                sub=claims.get("sub"),
                aud=claims.get("aud"),
                iss=claims.get("iss"),
                iat=claims.get("iat"),
                jti=claims.get("jti"),
                roles=claims.get("roles", []),
            )
        else:
            body["token_type"] = "refresh_token"  # noqa: S105 - a token type name
        return body


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_token(self, token: str, token_type_hint: str | None) -> tokens.PresentedToken | None:
        return _lookup(token, token_type_hint)

    def revoke_token(self, token: tokens.PresentedToken, request: OAuth2Request) -> None:
        ex = current()
        if token.refresh_row is not None:
            revoked = tokens.revoke_grant(ex.session, token.refresh_row.grant_id, reason="client_request")
        elif token.access_row is not None:
            revoked = tokens.revoke_access_token(ex.session, token.access_row, reason="client_request")
        else:
            return
        _audit("oauth.token_revoked", client_id=token.client_id, kind=token.kind, tokens_revoked=revoked)


# -------------------------------------------------------------------------------------------- server


class AuthorizationServer(_AuthorizationServer):
    def __init__(self, settings: IdentitySettings) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method(
            PrivateKeyJwt.CLIENT_AUTH_METHOD,
            PrivateKeyJwt([settings.token_issuer, settings.token_issuer.rstrip("/") + "/oauth/token"]),
        )
        self.register_grant(AuthorizationCodeGrant, [S256Only(required=True), OpenIDConnect()])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)

    def query_client(self, client_id: str) -> Client | None:
        row = client_store.find_active(current().session, client_id) if client_id else None
        return Client(row) if row else None

    def create_oauth2_request(self, request: PlatformRequest) -> PlatformRequest:
        _current_request.set(request)
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, dict[str, str]]:
        return status, body, dict(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        return None  # recorded as it is generated (``_generate_token``)

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: ResourceOwner | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        ex = current()
        scope = scope or ""
        if user is None:
            issued = tokens.issue_access_token(
                ex.session,
                ex.settings,
                client=client.row,
                subject=client.get_client_id(),
                person_id=None,
                scope=scope,
                grant_id=None,
                store=lambda row: ex.write(lambda session: session.add(row)),
            )
            _audit(
                "oauth.token_issued",
                client_id=client.get_client_id(),
                grant_type=grant_type,
                scope=scope,
                jti=issued.jti,
            )
            return {
                "token_type": "Bearer",
                "access_token": issued.access_token,
                "expires_in": issued.expires_in,
                "scope": scope,
            }
        subject = consents.subject_for(
            ex.session, client.row, user.person.id, salt=ex.settings.pairwise_salt.get_secret_value()
        )
        issued = tokens.issue_access_token(
            ex.session,
            ex.settings,
            client=client.row,
            subject=subject,
            person_id=user.person.id,
            scope=scope,
            grant_id=user.grant_id,
            auth_time=user.auth_time,
            amr=user.amr,
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": issued.access_token,
            "expires_in": issued.expires_in,
            "scope": scope,
        }
        if include_refresh_token and client.check_grant_type("refresh_token") and user.grant_id:
            body["refresh_token"] = tokens.new_refresh_token(
                ex.session,
                ex.settings,
                client_id=client.get_client_id(),
                person_id=user.person.id,
                scope=scope,
                grant_id=user.grant_id,
                auth_time=user.auth_time,
                amr=user.amr,
            )
        _audit(
            "oauth.token_issued" if grant_type != "refresh_token" else "oauth.token_refreshed",
            person=user.person,
            client_id=client.get_client_id(),
            grant_type=grant_type,
            scope=scope,
            jti=issued.jti,
        )
        return body
