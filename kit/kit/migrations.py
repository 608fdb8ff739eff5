"""Alembic, once for every service: each service keeps its own migration scripts and its own database."""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from kit.db import is_sqlite, make_engine, normalise_url


def alembic_config(database_url: str, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, script_location: Path, revision: str = "head") -> None:
    """Apply the service's migrations (``make run``, the test fixtures and the deploy job call this)."""
    command.upgrade(alembic_config(database_url, script_location), revision)


def run_migrations(target_metadata: MetaData) -> None:
    """Body of a service's ``env.py``: run online against the configured URL."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not configured"
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=is_sqlite(url),  # SQLite alters tables by copying them
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()  # also when a revision fails: no connection left for the garbage collector
