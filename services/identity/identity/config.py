"""Identity service settings (environment prefix ``IDENTITY_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from kit.settings import LOCAL_SECRET_PREFIX, ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    service_name: str = "identity"
    database_url: str = "sqlite:///var/data/identity.db"
    http_port: int = 8101
    public_base_url: str = "http://127.0.0.1:8101"
    token_issuer: str = "http://127.0.0.1:8101"  # noqa: S105 - a URL, not a secret
    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"

    # Personal identifiers (resident ID numbers, phone numbers) are stored AES-GCM encrypted and
    # looked up by keyed hash; both keys are 32 bytes, base64url encoded.
    pii_encryption_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "pii-encryption-key")
    pii_hash_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "pii-hash-key")
    # Encrypts the private signing keys at rest.
    key_encryption_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "signing-key-encryption-key")

    access_token_ttl_seconds: int = 900
    # A new signing key is published this long before it signs, so every verifier has fetched it.
    key_publish_ahead_seconds: int = 600

    audit_retention_days: int = Field(default=180, ge=180, description="MLPS 2.0: logs kept ≥ 6 months")

    import_max_bytes: int = 20 * 1024 * 1024
    import_max_rows: int = 100_000


@lru_cache
def get_settings() -> IdentitySettings:
    return IdentitySettings()
