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

    # --- Login and account security (MLPS 2.0 level 3) ---
    platform_name: str = "智慧教育平台"
    # Signs CSRF tokens and browser-session cookies.
    session_secret: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "browser-session-secret")
    session_idle_seconds: int = Field(default=1800, ge=60, description="A browser session ends after this idle time")
    session_absolute_seconds: int = Field(default=12 * 3600, ge=300)
    login_failure_window_seconds: int = 900
    login_failure_threshold: int = 5
    # Each successive lockout of the same account lasts the next of these (the last one repeats).
    lockout_seconds: list[int] = Field(default_factory=lambda: [900, 3600, 4 * 3600, 24 * 3600])
    ip_failure_limit: int = 50  # failed logins from one address ...
    ip_failure_window_seconds: int = 300  # ... within this window throttle that address
    # argon2id cost (RFC 9106 second recommended option by default); tests lower it.
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 64 * 1024
    password_hash_parallelism: int = 2

    # --- OAuth 2.0 / OpenID Connect provider ---
    authorization_code_ttl_seconds: int = Field(default=60, ge=10, le=600)
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    id_token_ttl_seconds: int = 900
    # Keys the pairwise subject identifiers (OIDC Core 8.1) given to third-party clients.
    pairwise_salt: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "pairwise-subject-salt")
    oauth_max_parameter_length: int = 2048
    # Threads that run the OAuth exchanges (authlib is synchronous); more only add GIL hand-offs.
    oauth_threads: int = Field(default=4, ge=1, le=64)
    oauth_purge_interval_seconds: float = Field(default=3600, gt=0)


@lru_cache
def get_settings() -> IdentitySettings:
    return IdentitySettings()
