"""The migrations build exactly the schema the models describe (on SQLite, and on PostgreSQL in CI)."""

from __future__ import annotations

from kit.testing import schema_drift
from metering.config import MeteringSettings
from metering.models import metadata


def test_migrated_schema_matches_the_models(settings: MeteringSettings) -> None:
    assert schema_drift(settings.database_url, metadata) == []  # the fixture has applied every migration
