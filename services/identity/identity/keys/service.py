"""Signing keys and access-token issue.

Rotation: a new key is published (in the JWKS) ``key_publish_ahead_seconds`` before it starts
signing, so verifiers that cache the JWKS already know it; the old key stops signing at that moment
and stays published until every token it signed has expired.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlmodel import Session, col, select

from contracts.auth import ACCESS_TOKEN_TYPE, AccessTokenClaims, RoleClaim
from identity.config import IdentitySettings
from identity.keys.models import SigningKey
from kit.crypto import FieldCipher

ALGORITHM = "RS256"
# Verifiers accept this much clock skew, so keys stay published that much longer.
CLOCK_LEEWAY_SECONDS = 60


def _cipher(settings: IdentitySettings) -> FieldCipher:
    secret = settings.key_encryption_key.get_secret_value()
    return FieldCipher(secret, secret)


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _new_key(settings: IdentitySettings, signs_from: datetime) -> SigningKey:
    kid = f"{signs_from:%Y%m%d}-{uuid.uuid4().hex[:12]}"
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True)
    return SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        public_jwk=json.dumps(key.as_dict(private=False), sort_keys=True),
        private_jwk_cipher=_cipher(settings).encrypt("signing_key", json.dumps(key.as_dict(private=True))),
        signs_from=signs_from,
    )


def ensure_signing_key(session: Session, settings: IdentitySettings) -> SigningKey:
    """Create the first key if there is none (a fresh installation)."""
    existing = session.exec(select(SigningKey).order_by(col(SigningKey.signs_from).desc())).first()
    if existing is not None:
        return existing
    key = _new_key(settings, datetime.now(UTC))
    session.add(key)
    session.flush()
    return key


def rotate(session: Session, settings: IdentitySettings, *, now: datetime | None = None) -> SigningKey:
    """Publish a new key now; it signs after the publish-ahead period, when the current key retires."""
    now = now or datetime.now(UTC)
    signs_from = now + timedelta(seconds=settings.key_publish_ahead_seconds)
    token_lifetime = timedelta(seconds=settings.access_token_ttl_seconds + CLOCK_LEEWAY_SECONDS)
    for key in session.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None))).all():
        key.retired_at = signs_from
        key.unpublish_at = signs_from + token_lifetime
        session.add(key)
    new_key = _new_key(settings, signs_from)
    session.add(new_key)
    session.flush()
    return new_key


def signing_key(session: Session, *, now: datetime | None = None) -> SigningKey:
    """The key that signs at ``now``: the newest one whose signing period has begun and not ended."""
    now = now or datetime.now(UTC)
    for key in session.exec(select(SigningKey).order_by(col(SigningKey.signs_from).desc())).all():
        signs_from = _as_utc(key.signs_from)
        retired_at = _as_utc(key.retired_at)
        if signs_from is not None and signs_from <= now and (retired_at is None or retired_at > now):
            return key
    raise LookupError("no signing key is active; start the identity service once to create one")


def published_jwks(session: Session, *, now: datetime | None = None) -> dict[str, Any]:
    """The JWKS: keys about to sign, signing, and retired ones whose tokens may still be valid."""
    now = now or datetime.now(UTC)
    keys = []
    for key in session.exec(select(SigningKey).order_by(col(SigningKey.signs_from))).all():
        unpublish_at = _as_utc(key.unpublish_at)
        if unpublish_at is None or unpublish_at > now:
            keys.append(json.loads(key.public_jwk))
    return {"keys": keys}


# Imported keys by kid: a kid's key material never changes, and importing an RSA key (decrypting it,
# checking its CRT parameters) costs more than signing with it.
_private_keys: dict[str, RSAKey] = {}
_public_keys: dict[str, RSAKey] = {}


def _private_key(settings: IdentitySettings, key_row: SigningKey) -> RSAKey:
    key = _private_keys.get(key_row.kid)
    if key is None:
        key = RSAKey.import_key(json.loads(_cipher(settings).decrypt("signing_key", key_row.private_jwk_cipher)))
        _private_keys[key_row.kid] = key
    return key


def private_key(session: Session, settings: IdentitySettings) -> tuple[str, RSAKey]:
    """The current signing key (kid and key), for signing ID tokens too."""
    key_row = signing_key(session)
    return key_row.kid, _private_key(settings, key_row)


def public_key(session: Session, kid: str) -> RSAKey | None:
    """The published verification key ``kid``, or None when no such key is published."""
    key = _public_keys.get(kid)
    if key is not None:
        return key
    row = session.get(SigningKey, kid)
    if row is None:
        return None
    unpublish_at = _as_utc(row.unpublish_at)
    if unpublish_at is not None and unpublish_at <= datetime.now(UTC):
        return None
    key = RSAKey.import_key(json.loads(row.public_jwk))
    if unpublish_at is None:
        _public_keys[kid] = key  # cache only keys with no end date; rotation sets one
    return key


def issue_access_token(
    session: Session,
    settings: IdentitySettings,
    *,
    subject: str,
    client_id: str,
    scopes: list[str],
    roles: list[RoleClaim],
    audience: str | None = None,
    ttl_seconds: int | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign an RFC 9068 JWT access token with the current key."""
    key_row = signing_key(session)
    private_key = _private_key(settings, key_row)
    issued_at = int(time.time())
    claims = AccessTokenClaims(
        iss=settings.token_issuer,
        sub=subject,
        aud=audience or settings.token_audience,
        exp=issued_at + (ttl_seconds or settings.access_token_ttl_seconds),
        iat=issued_at,
        jti=str(uuid.uuid4()),
        client_id=client_id,
        scope=" ".join(scopes),
        roles=roles,
    )
    payload = claims.model_dump(mode="json")
    payload.update(extra_claims or {})
    header = {"alg": key_row.algorithm, "kid": key_row.kid, "typ": ACCESS_TOKEN_TYPE}
    return jwt.encode(header, payload, private_key)
