"""Fixtures of the gateway's tests: a real gateway (uvicorn, real NATS, real database) before a stand-in service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from gateway.config import GatewaySettings
from gateway.main import MIGRATIONS, create_app
from gateway.proxy import GatewayProxy
from kit.natsserver import NatsServer
from kit.testing import TEST_FETCH_TIMEOUT, live_server

from .stand_in import ISSUER, STAND_IN_API, StandIn, mint


@pytest.fixture(scope="session")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "gateway-test-key"})


@pytest.fixture
def stand_in(signing_key: RSAKey) -> Iterator[tuple[StandIn, str]]:
    service = StandIn(signing_key)
    with live_server(service.app, websockets=True) as url:
        yield service, url


@dataclass
class RunningGateway:
    url: str
    proxy: GatewayProxy
    settings: GatewaySettings
    stand_in: StandIn
    key: RSAKey

    def token(self, **claims: Any) -> str:
        return mint(self.key, **claims)

    def bearer(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**claims)}"}

    @property
    def state(self) -> Any:
        return self.proxy.app.state  # type: ignore[attr-defined]


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gateway_settings(
    tmp_path: Path,
    migrated_database: Callable[[Path], str],
    nats_server: NatsServer,
    stand_in: tuple[StandIn, str],
) -> Callable[..., GatewaySettings]:
    _service, stand_in_url = stand_in
    database_url = migrated_database(MIGRATIONS)

    def make(**overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "consumer_fetch_timeout_seconds": TEST_FETCH_TIMEOUT,
            "nats_url": nats_server.url,
            "upstreams": {"standin": stand_in_url, "identity": stand_in_url},
            "token_issuer": ISSUER,
            "jwks_url": f"{stand_in_url}/.well-known/jwks.json",
            "usage_spool_dir": tmp_path / "spool",
            "usage_flush_interval_seconds": 0.1,
            "installation_refresh_seconds": 0.2,
            "breaker_reset_seconds": 1.0,
            "log_json": False,
        }
        values.update(overrides)
        return GatewaySettings(**values)

    return make


@pytest.fixture
def gateway(
    gateway_settings: Callable[..., GatewaySettings], stand_in: tuple[StandIn, str], signing_key: RSAKey
) -> Iterator[GatewayFactory]:
    """Start a gateway (settings overridable); stopped at the end of the test."""
    stack: list[Any] = []

    def start(**overrides: Any) -> RunningGateway:
        settings = gateway_settings(**overrides)
        proxy = create_app(settings, apis=[STAND_IN_API])
        server = live_server(proxy, websockets=True)
        url = server.__enter__()
        stack.append(server)
        return RunningGateway(url=url, proxy=proxy, settings=settings, stand_in=stand_in[0], key=signing_key)

    yield start
    for server in reversed(stack):
        server.__exit__(None, None, None)
