"""The migrations build exactly the schema the models describe (on SQLite, and on PostgreSQL in CI)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from identity.config import IdentitySettings
from identity.models import metadata
from kit.db import make_engine


def test_migrated_schema_matches_the_models(settings: IdentitySettings) -> None:
    engine = make_engine(settings.database_url)  # the fixture has applied every migration
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
