"""Settings: one env prefix per service; built-in development secrets refused outside local and test."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from kit.settings import LOCAL_SECRET_PREFIX, ServiceSettings


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore")

    service_name: str = "example"
    signing_secret: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "signing")


def test_reads_its_own_prefix_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_DATABASE_URL", "postgresql://db/example")
    monkeypatch.setenv("OTHER_DATABASE_URL", "postgresql://db/other")
    assert ExampleSettings().database_url == "postgresql://db/example"


def test_production_refuses_the_built_in_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="EXAMPLE_SIGNING_SECRET still has its built-in development value"):
        ExampleSettings()


def test_production_accepts_a_real_secret_and_local_accepts_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ExampleSettings().signing_secret.get_secret_value().startswith(LOCAL_SECRET_PREFIX)
    monkeypatch.setenv("EXAMPLE_ENVIRONMENT", "production")
    monkeypatch.setenv("EXAMPLE_SIGNING_SECRET", "b3Jk0Lq1ZP2x")
    assert ExampleSettings().signing_secret.get_secret_value() == "b3Jk0Lq1ZP2x"
