"""The tool's own RSA key: LTI Advantage services (NRPS) are called with a client assertion signed by it,
and the platform verifies the assertion with the public half published at ``/lti/jwks``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pylti1p3.registration import Registration


@dataclass(frozen=True)
class ToolKey:
    private_pem: str
    public_pem: str

    @property
    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK, with the key id PyLTI1p3 puts into its client assertions."""
        return dict(Registration.get_jwk(self.public_pem))

    @property
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [self.jwk]}


def _from_private_pem(pem: bytes) -> ToolKey:
    key = serialization.load_pem_private_key(pem, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ToolKey(private_pem=pem.decode(), public_pem=public.decode())


def load_or_create(path: Path) -> ToolKey:
    """The key in ``path``; a new 2048-bit key is written there (mode 0600) when the file does not exist."""
    if path.exists():
        return _from_private_pem(path.read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return _from_private_pem(pem)
