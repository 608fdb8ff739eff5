"""Settings of the gateway (environment prefix ``GATEWAY_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    database_url: str = "sqlite:///var/data/gateway.db"
    http_port: int = 8100
    public_base_url: str = "http://127.0.0.1:8100"

    # Where each service answers. In Kubernetes these are the services' cluster names; `make run` and
    # the tests set them (JSON, e.g. GATEWAY_UPSTREAMS='{"identity": "http://127.0.0.1:8101"}').
    upstreams: dict[str, str] = Field(default_factory=lambda: {"identity": "http://identity:8000"})
    # The service whose root paths (OpenID Connect endpoints, sign-in pages) are served at the root.
    identity_service: str = "identity"

    # Upstream calls.
    upstream_connect_timeout_seconds: float = 2.0
    upstream_max_connections: int = 256
    upstream_keepalive_connections: int = 64
    upstream_pool_shards: int = Field(default=8, ge=1, description="Connection pools per service, used in turn")
    retries: int = Field(default=2, ge=0, le=5, description="Extra attempts for idempotent requests")
    retry_backoff_seconds: float = 0.05
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=10.0, gt=0)
    # Addresses whose X-Forwarded-For names the real caller (the ingress controller), as uvicorn's
    # forwarded_allow_ips: "" trusts nobody, so a client can never choose the address services see.
    trusted_proxies: str = ""
    # Clients: a body must keep arriving; the longest wait between two chunks.
    client_body_timeout_seconds: float = 30.0
    max_authorization_bytes: int = 8192

    # Rate limits (limits notation); storage is memory unless a Redis URL is configured.
    rate_limit_storage_url: str = "memory://"
    app_rate_limit: str = "200/second"
    route_rate_limit: str = "100/second"

    # Usage records of apps' calls, published in batches to NATS; spilled to disk while NATS is away.
    usage_batch_size: int = Field(default=500, ge=1)
    usage_flush_interval_seconds: float = Field(default=1.0, gt=0)
    usage_memory_limit: int = Field(default=50_000, ge=1, description="Records held in memory before spilling")
    usage_spool_dir: Path = Path("var/spool/gateway-usage")

    # Caches.
    installation_refresh_seconds: float = 5.0
    openapi_refresh_seconds: float = 300.0
    token_cache_size: int = 10_000
    # Revocations are replayed from the stream this far back on start: at least the longest access-token life.
    revocation_lookback_seconds: int = 3600

    # Browsers: extra origins always allowed for CORS besides the registered apps' (the platform's own UIs).
    cors_extra_origins: list[str] = Field(default_factory=list)

    @field_validator("upstreams")
    @classmethod
    def _upstream_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for service, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream of {service!r} must be an http(s) URL, got {url!r}")
        return {service: url.rstrip("/") for service, url in value.items()}


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
