"""Protection of personal identifiers at rest: AES-256-GCM encryption plus a keyed lookup hash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"v1"


def derive_key(secret: str) -> bytes:
    """A 32-byte key from the configured secret (base64url of 32 bytes, or any passphrase)."""
    try:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    return hashlib.sha256(secret.encode()).digest()


class FieldCipher:
    """Encrypts one field value; the field name is bound as associated data so values can't be swapped."""

    def __init__(self, encryption_secret: str, hash_secret: str) -> None:
        self._aead = AESGCM(derive_key(encryption_secret))
        self._hash_key = derive_key(hash_secret)

    def encrypt(self, field: str, value: str) -> str:
        nonce = os.urandom(12)
        ciphertext = self._aead.encrypt(nonce, value.encode(), field.encode())
        return (_VERSION + b":" + base64.urlsafe_b64encode(nonce + ciphertext)).decode()

    def decrypt(self, field: str, token: str) -> str:
        version, _, body = token.encode().partition(b":")
        if version != _VERSION:
            raise ValueError(f"unknown ciphertext version {version!r}")
        raw = base64.urlsafe_b64decode(body)
        return self._aead.decrypt(raw[:12], raw[12:], field.encode()).decode()

    def lookup_hash(self, field: str, value: str) -> str:
        """Deterministic keyed hash for equality search; useless without the key."""
        return hmac.new(self._hash_key, f"{field}:{value}".encode(), hashlib.sha256).hexdigest()
