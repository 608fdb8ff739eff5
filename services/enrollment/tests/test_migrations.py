"""The migrations build exactly the schema the models describe (on SQLite, and on PostgreSQL in CI)."""

from __future__ import annotations

from enrollment.config import EnrollmentSettings
from enrollment.models import metadata
from kit.testing import schema_drift


def test_migrated_schema_matches_the_models(settings: EnrollmentSettings) -> None:
    assert schema_drift(settings.database_url, metadata) == []  # the fixture has applied every migration
