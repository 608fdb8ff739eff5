"""The LTI platform's signing keys: generated on first use, the private half stored encrypted, all keys that
are not retired published at ``/lti/jwks``; the newest signs."""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi import Request
from joserfc.jwk import RSAKey
from sqlmodel import Session, col, select

from appstore.launch.models import PlatformKey
from kit.crypto import FieldCipher
from kit.db import Database

ALGORITHM = "RS256"
_CIPHER_FIELD = "lti_platform_key"


class PlatformKeys:
    """The signing key, decrypted once per process: a launch signs without a key lookup or an RSA import."""

    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher
        self._lock = threading.Lock()
        self._signing: tuple[str, RSAKey] | None = None

    def signing_key(self, database: Database) -> tuple[str, RSAKey]:
        """The kid and key that sign ID tokens; a first key is generated when there is none.

        It is read (or generated) in a unit of work of its own, so a key is published before anything is
        signed with it, whatever becomes of the request that needed it.
        """
        cached = self._signing
        if cached is not None:
            return cached
        with self._lock:
            if self._signing is None:
                with database.session() as session:
                    row = _newest(session) or _generate(session, self._cipher)
                    pem = self._cipher.decrypt(_CIPHER_FIELD, row.private_key_cipher)
                    self._signing = (row.kid, RSAKey.import_key(pem))
            return self._signing

    def forget(self) -> None:
        """Drop the cached key (after a rotation)."""
        with self._lock:
            self._signing = None


def _newest(session: Session) -> PlatformKey | None:
    statement = select(PlatformKey).where(col(PlatformKey.retired_at).is_(None))
    return session.exec(statement.order_by(col(PlatformKey.created_at).desc())).first()


def _generate(session: Session, cipher: FieldCipher) -> PlatformKey:
    key = RSAKey.generate_key(2048)
    kid = key.thumbprint()
    public = key.as_dict(private=False, alg=ALGORITHM, use="sig")
    public["kid"] = kid
    row = PlatformKey(
        kid=kid,
        private_key_cipher=cipher.encrypt(_CIPHER_FIELD, key.as_pem(private=True).decode()),
        public_jwk=json.dumps(public),
    )
    session.add(row)
    session.flush()
    return row


def published_keys(session: Session) -> dict[str, Any]:
    """The JWK set tools verify our ID tokens with."""
    rows = session.exec(select(PlatformKey).where(col(PlatformKey.retired_at).is_(None))).all()
    return {"keys": [json.loads(row.public_jwk) for row in rows]}


def platform_keys(request: Request) -> PlatformKeys:
    """The process's key holder, kept on the app."""
    state = request.app.state
    keys: PlatformKeys | None = getattr(state, "lti_platform_keys", None)
    if keys is None:
        keys = PlatformKeys(state.cipher)
        state.lti_platform_keys = keys
    return keys
