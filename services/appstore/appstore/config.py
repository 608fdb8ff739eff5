"""App store service settings (environment prefix ``APPSTORE_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from kit.settings import LOCAL_SECRET_PREFIX, ServiceSettings


class AppStoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="APPSTORE_", extra="ignore")

    service_name: str = "appstore"
    database_url: str = "sqlite:///var/data/appstore.db"
    http_port: int = 8103
    public_base_url: str = "http://127.0.0.1:8103"
    # Where users and vendors reach the platform (the gateway): launch links, the LTI issuer and its endpoints.
    platform_base_url: str = "http://127.0.0.1:8100"

    # Webhook secrets and the LTI platform's private keys are stored AES-GCM encrypted.
    secrets_encryption_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "appstore-secrets-encryption-key")
    secrets_hash_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "appstore-secrets-hash-key")

    # The identity provider's internal client-registration API, called with the app store's own platform client.
    identity_internal_url: str = "http://127.0.0.1:8101"
    identity_client_id: str = "appstore"
    identity_client_secret: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "appstore-client-secret")
    identity_timeout_seconds: float = Field(default=5.0, gt=0)
    # Identity's salt for pairwise subject identifiers: LTI launches name a user by the same pseudonym as OIDC.
    pairwise_salt: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "pairwise-subject-salt")

    # The web pages (应用超市门户) sign people in as a public first-party OIDC client of identity (code + PKCE).
    portal_client_id: str = "appstore-portal"
    # What the portal asks for; identity grants what the person may have and the pages show only that.
    portal_scopes: str = "openid profile apps.read apps.install apps.develop apps.review"
    # Where browsers reach the pages; None: <platform_base_url>/api/appstore/portal (through the gateway).
    portal_base_url: str | None = None
    # A portal session ends after this long, or earlier when its access token expires.
    portal_session_hours: int = Field(default=8, ge=1, le=24)

    catalog_max_limit: int = Field(default=100, ge=1)
    attachment_max_bytes: int = 10 * 1024 * 1024


@lru_cache
def get_settings() -> AppStoreSettings:
    return AppStoreSettings()
