"""Verifying the platform's RFC 9068 JWT access tokens, and deciding what their bearer may do.

* :class:`JwksCache` fetches the identity service's JWKS and keeps the keys by ``kid``.
* :class:`TokenVerifier` checks a token (type, algorithm, signature, issuer, audience, lifetime,
  required claims) and turns it into a :class:`Principal`.
* :func:`current_principal` / :data:`CurrentPrincipal` read ``Authorization: Bearer`` (RFC 6750).
* :func:`authorize` and :func:`require_scope` are the declarative checks a route makes.

There is no bypass: every environment, tests included, verifies real signatures.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import JWKRegistry, Key
from pydantic import ValidationError

from contracts.auth import ACCESS_TOKEN_TYPE, AccessTokenClaims, RoleClaim
from kit.errors import Forbidden, InsufficientScope, ServiceUnavailable, Unauthenticated

logger = logging.getLogger("kit.auth")

REALM = "edu-platform"
#: Asymmetric algorithms only: never ``none``, never HS* (an HMAC "signed" with the public key).
ALLOWED_ALGORITHMS = frozenset({"RS256", "PS256", "ES256"})
ACCEPTED_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, f"application/{ACCESS_TOKEN_TYPE}"})
_KEY_TYPES = frozenset({"RSA", "EC"})


def _invalid_token(detail: str) -> Unauthenticated:
    return Unauthenticated(detail, headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})


# ---------------------------------------------------------------------------------------------- JWKS


class JwksCache:
    """The identity service's signing keys, by ``kid``, fetched over HTTP and refreshed on demand.

    A token naming an unknown ``kid`` triggers a refresh (key rotation), but at most once per
    ``min_refresh_interval`` seconds, so a flood of bogus kids cannot hammer the identity service;
    after a failed fetch the next attempt waits ``failure_retry_interval``. Keys older than
    ``max_age`` are re-fetched on next use, so a key withdrawn from the JWKS stops being trusted.
    """

    def __init__(
        self,
        url: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        min_refresh_interval: float = 30.0,
        failure_retry_interval: float = 2.0,
        max_age: float = 600.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.min_refresh_interval = min_refresh_interval
        self.failure_retry_interval = failure_retry_interval
        self.max_age = max_age
        self._client = http_client
        self._owns_client = http_client is None
        self._timeout = timeout
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None  # last successful fetch (monotonic)
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._last_error: str | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0  # attempts made, for tests and diagnostics

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def get_key(self, kid: str) -> Key:
        """The verification key named ``kid``.

        :raises Unauthenticated: the JWKS (freshly fetched, or fetched too recently to ask again)
            has no such key.
        :raises ServiceUnavailable: the JWKS could not be fetched, so the token cannot be checked.
        """
        known = self._keys.get(kid)
        if known is not None and (not self._stale() or self._lock.locked()):
            return known  # fresh, or stale while another request is already refreshing
        async with self._lock:
            if self._may_fetch():
                await self._fetch()
            key = self._keys.get(kid)
            if key is not None:
                return key  # possibly stale, when the identity service is unreachable
            if self._last_error is not None:
                raise ServiceUnavailable(
                    f"The token's signing keys could not be fetched from {self.url} "
                    f"({self._last_error}); try again shortly."
                )
            raise _invalid_token(f"The token is signed with an unknown key (kid {kid[:64]!r}).")

    async def refresh(self) -> None:
        """Fetch the JWKS now, whatever the rate limit says."""
        async with self._lock:
            await self._fetch()

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.max_age

    def _may_fetch(self) -> bool:
        if self._attempted_at is None:
            return True
        interval = self.failure_retry_interval if self._last_error else self.min_refresh_interval
        return time.monotonic() - self._attempted_at >= interval

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        self.fetch_count += 1
        try:
            client = self._http_client()
            response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = self._parse(response.json())
        except (httpx.HTTPError, ValueError) as error:
            self._last_error = f"{type(error).__name__}: {error}"
            logger.warning("could not fetch the JWKS from %s: %s", self.url, self._last_error)
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._last_error = None
        logger.info("fetched %d signing key(s) from %s", len(keys), self.url)

    def _http_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    def _parse(self, document: Any) -> dict[str, Key]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("the response is not a JWK Set (no 'keys' array)")
        keys: dict[str, Key] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict):
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                continue  # tokens must name their key, so a key without kid can never be chosen
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in _KEY_TYPES:
                continue
            public = {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
            try:
                keys[kid] = JWKRegistry.import_key(public)
            except (JoseError, ValueError, TypeError) as error:
                logger.warning("ignoring unusable JWK %r from %s: %s", kid, self.url, error)
        if not keys:
            raise ValueError("the JWK Set holds no usable signing key")
        return keys

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None


# A JWKS must publish public keys only; private members are dropped if a misconfiguration leaks them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


# ------------------------------------------------------------------------------------------ Principal


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


@dataclass(frozen=True)
class Principal:
    """The verified bearer of an access token."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    roles: tuple[RoleClaim, ...]
    token_id: str
    claims: AccessTokenClaims = field(compare=False, repr=False)

    @classmethod
    def from_claims(cls, claims: AccessTokenClaims) -> Principal:
        return cls(
            subject=claims.sub,
            client_id=claims.client_id,
            scopes=frozenset(claims.scope.split()),
            roles=tuple(claims.roles),
            token_id=claims.jti,
            claims=claims,
        )

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def roles_named(self, *names: str) -> tuple[RoleClaim, ...]:
        wanted = set(names)
        return tuple(role for role in self.roles if role.role in wanted)

    def can_act(self, role_names: Iterable[str] | str, *, org_path: str) -> bool:
        """True when one of ``role_names`` is held at the target organisation or an ancestor.

        Paths compare on whole segments: a role at ``/c1/d1`` covers ``/c1/d1/s1`` but not
        ``/c1/d10``. A role claim whose path is empty or does not end with its org_id grants nothing.
        """
        names = (role_names,) if isinstance(role_names, str) else tuple(role_names)
        target = _segments(org_path)
        if not target:
            return False
        for role in self.roles_named(*names):
            scope = _segments(role.org_path)
            if not scope or scope[-1] != role.org_id:
                continue
            if target[: len(scope)] == scope:
                return True
        return False


# ---------------------------------------------------------------------------------------- verifying


_MISSING_CLAIM_HINTS = {"sub": "subject", "client_id": "client", "jti": "token id"}


class TokenVerifier:
    """Verifies access tokens signed by the identity service (RFC 9068 JWT profile)."""

    def __init__(self, jwks: JwksCache, *, issuer: str, audience: str, leeway: int = 30) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def verify(self, token: str) -> Principal:
        """The token's principal; any defect raises :class:`Unauthenticated` saying what it is."""
        header = self._header(token)
        kid = header["kid"]
        key = await self.jwks.get_key(kid)
        algorithm = header["alg"]
        try:
            decoded = jwt.decode(token, key, algorithms=[algorithm])
        except BadSignatureError:
            raise _invalid_token("The token's signature is not valid.") from None
        except JoseError as error:
            raise _invalid_token(
                f"The token could not be verified with key {kid[:64]!r} ({error.error}: {error.description})."
            ) from None
        claims = decoded.claims
        self._validate_claims(claims)
        try:
            parsed = AccessTokenClaims.model_validate(claims)
        except ValidationError as error:
            fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in error.errors())
            raise _invalid_token(f"The token's claims are malformed ({fields}).") from None
        return Principal.from_claims(parsed)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header: dict[str, Any] = dict(jws.extract_compact(token.encode("ascii")).headers())
        except (JoseError, ValueError, UnicodeError):
            raise _invalid_token("The token is not a well-formed signed JWT.") from None
        token_type = header.get("typ")
        if not isinstance(token_type, str) or token_type.lower() not in ACCEPTED_TOKEN_TYPES:
            raise _invalid_token(
                f"Wrong token type {token_type!r}: an access token with typ {ACCESS_TOKEN_TYPE!r} "
                "(RFC 9068) is required."
            )
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise _invalid_token(
                f"The token's algorithm {algorithm!r} is not accepted "
                f"(one of {', '.join(sorted(ALLOWED_ALGORITHMS))} is required)."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid_token("The token does not name its signing key (no kid header).")
        return header

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _invalid_token("The token has expired; obtain a new one.") from None
        except MissingClaimError as error:
            raise _invalid_token(f"The token lacks required claim(s): {error.claim}.") from None
        except InvalidClaimError as error:
            raise _invalid_token(self._claim_problem(error.claim, claims, error.description)) from None
        except JoseError as error:
            raise _invalid_token(f"The token's claims are invalid ({error.description}).") from None

    def _claim_problem(self, claim: str, claims: dict[str, Any], description: str | None) -> str:
        if claim == "iss":
            return f"The token was issued by {claims.get('iss')!r}, not by the trusted issuer."
        if claim == "aud":
            return f"The token is not meant for this audience (expected {self.audience!r})."
        if claim == "nbf":
            return "The token is not valid yet (nbf is in the future)."
        if claim == "iat":
            return "The token claims to be issued in the future (iat)."
        return f"The token's {claim!r} claim is invalid ({description})."


# ------------------------------------------------------------------------------- FastAPI dependencies

_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)


async def current_principal(request: Request) -> Principal:
    """The verified caller, from ``Authorization: Bearer <token>`` (RFC 6750 §2.1)."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise Unauthenticated(
            "This operation needs an access token: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    match = _BEARER.match(authorization)
    if match is None:
        raise Unauthenticated(
            "The Authorization header must use the Bearer scheme: 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_request"'},
        )
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not set; the app factory must install a TokenVerifier")
    return await verifier.verify(match.group(1))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _insufficient_scope(scope: str) -> InsufficientScope:
    return InsufficientScope(
        f"The access token lacks the scope {scope!r} this operation needs.",
        required_scope=scope,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'},
    )


def authorize(principal: Principal, *, roles: Iterable[str], org_path: str, scope: str | None = None) -> None:
    """Allow the call only with ``scope`` (if given) and one of ``roles`` at or above ``org_path``.

    :raises InsufficientScope: the token lacks ``scope`` (``required_scope`` names it).
    :raises Forbidden: no role among ``roles`` is held within the target organisation.
    """
    if scope is not None and not principal.has_scope(scope):
        raise _insufficient_scope(scope)
    needed = (roles,) if isinstance(roles, str) else tuple(roles)
    if not principal.can_act(needed, org_path=org_path):
        raise Forbidden(
            f"This needs one of the roles {', '.join(needed)} within organisation {org_path} "
            "(or one of its parent organisations).",
            required_roles=list(needed),
            org_path=org_path,
        )


@dataclass(frozen=True)
class Caller:
    """The verified caller of a request and where the call came from; services extend it with what they need."""

    principal: Principal
    source_ip: str | None
    request_id: str | None

    @property
    def person_id(self) -> str:
        return self.principal.subject

    @property
    def is_app(self) -> bool:
        """A vendor's app (its token carries ``app_id``), not a person or a platform service."""
        return self.principal.claims.app_id is not None

    def require_scope(self, scope: str) -> None:
        if not self.principal.has_scope(scope):
            raise _insufficient_scope(scope)

    def require(self, *, roles: Iterable[str], org_path: str, scope: str) -> None:
        """One of ``roles`` at or above ``org_path``, and the scope."""
        authorize(self.principal, roles=roles, org_path=org_path, scope=scope)


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency factory: the caller's principal, provided its token carries ``scope``.

    ``principal: Annotated[Principal, Depends(require_scope("people:read"))]`` or
    ``dependencies=[Depends(require_scope("people:read"))]``.
    """

    async def principal_with_scope(principal: CurrentPrincipal) -> Principal:
        if not principal.has_scope(scope):
            raise _insufficient_scope(scope)
        return principal

    principal_with_scope.__name__ = "require_scope_" + re.sub(r"\W", "_", scope)
    return principal_with_scope
