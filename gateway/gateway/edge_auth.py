"""Who is calling: the access token verified locally, cached, and checked against revocations.

Verification uses the kit's :class:`~kit.auth.TokenVerifier` over the cached JWKS (a new ``kid``
triggers one refresh), so no request calls the identity service. A verified token is cached until
it expires, or for ``recheck_seconds`` at most, so a key withdrawn from the JWKS stops being trusted
soon after; revocation is checked on every request, cached or not.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.revocations import RevocationList
from kit.auth import REALM, Principal, TokenVerifier
from kit.errors import Unauthenticated


def _unauthenticated(detail: str, error: str | None = "invalid_token") -> Unauthenticated:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return Unauthenticated(detail, headers={"WWW-Authenticate": challenge})


class EdgeAuthenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        revocations: RevocationList,
        *,
        cache_size: int = 10_000,
        recheck_seconds: float = 300.0,
        max_token_bytes: int = 8192,
    ) -> None:
        self.verifier = verifier
        self.revocations = revocations
        self.cache_size = cache_size
        self.recheck_seconds = recheck_seconds
        self.max_token_bytes = max_token_bytes
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an ``Authorization: Bearer`` header; :class:`Unauthenticated` says what is wrong."""
        if not authorization:
            raise _unauthenticated("This API needs an access token: send 'Authorization: Bearer <token>'.", error=None)
        if len(authorization) > self.max_token_bytes:
            raise _unauthenticated(f"The Authorization header is longer than {self.max_token_bytes} bytes.")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise _unauthenticated(
                "The Authorization header must use the Bearer scheme: 'Authorization: Bearer <token>'.",
                error="invalid_request",
            )
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            principal = cached[0]
            self._cache.move_to_end(token)
        else:
            principal = await self.verifier.verify(token)
            valid_until = min(float(principal.claims.exp), now + self.recheck_seconds)
            self._cache[token] = (principal, valid_until)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if self.revocations.is_revoked(principal.token_id):
            raise _unauthenticated("The token has been revoked; obtain a new one.")
        return principal
