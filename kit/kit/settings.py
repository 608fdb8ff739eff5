"""Settings base shared by every service (pydantic-settings, one env prefix per service)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "test", "production"]

# Secrets that ship with the code start with this marker; they are only acceptable on a laptop or in tests.
LOCAL_SECRET_PREFIX = "local-only-"  # noqa: S105 - the marker of non-secrets


class InsecureSettingsError(ValueError):
    """A default secret was left in place outside local development."""


class ServiceSettings(BaseSettings):
    """Common settings; a service subclasses this and sets its own ``env_prefix``."""

    model_config = SettingsConfigDict(env_prefix="EDU_", extra="ignore")

    service_name: str = "service"
    environment: Environment = "local"
    database_url: str = "sqlite:///var/data/service.db"
    database_echo: bool = False
    nats_url: str = "nats://127.0.0.1:4222"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_json: bool = True
    # Access tokens: who issues them, for which audience, and where their keys are published.
    token_issuer: str = "http://127.0.0.1:8101"  # noqa: S105 - a URL
    token_audience: str = "edu-platform"  # noqa: S105 - an audience name
    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    outbox_batch_size: int = 1000
    consumer_max_attempts: int = 5
    # How long a consumer's idle pull waits for messages before asking again; a stopping service waits for the
    # pull in flight (so a batch the broker is handing over is released, not stranded until ack_wait): at most this.
    consumer_fetch_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    run_background_workers: bool = True

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.environment in ("local", "test"):
            return self
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value().startswith(LOCAL_SECRET_PREFIX):
                prefix = self.model_config.get("env_prefix", "")
                raise InsecureSettingsError(
                    f"{prefix}{name.upper()} still has its built-in development value; "
                    f"set a real secret before running with environment={self.environment}"
                )
        return self
