"""Tunables of webhook delivery (environment prefix ``APPSTORE_WEBHOOK_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPSTORE_WEBHOOK_", extra="ignore")

    # Seconds to wait before each retry; after the last one fails the delivery is dead-lettered. Attempts in all:
    # one more than the retries (10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h: eight attempts over about 21 hours).
    retry_delays: list[float] = Field(default=[10, 60, 300, 1800, 7200, 21600, 43200], min_length=0)
    # Each wait is stretched or shrunk by up to this fraction at random, so retries of many deliveries spread out.
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # At most this many attempts in flight in one process, and at most per_endpoint_concurrency to one endpoint
    # (scheme, host and port): a hanging endpoint holds a few slots, never the pool.
    pool_size: int = Field(default=32, ge=1, le=512)
    per_endpoint_concurrency: int = Field(default=4, ge=1, le=64)
    # A claimed delivery is leased this long; a crashed worker's lease runs out and another attempt is made.
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # After a rotation the previous secret still signs (a second signature) this long.
    rotation_window_seconds: float = Field(default=24 * 3600, ge=0)
    max_replay: int = Field(default=1000, ge=1, description="Most deliveries one replay request re-queues")
