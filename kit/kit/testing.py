"""Pytest fixtures shared by every service's tests: a real nats-server and a real database.

The database is a fresh SQLite file per test, or a fresh PostgreSQL database per test when
``TEST_DATABASE_URL`` points at a PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from kit.db import Database, normalise_url
from kit.natsserver import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream on a free port; tests may stop and start it."""
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_admin_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if url and url.startswith(("postgres://", "postgresql")):
        return normalise_url(url)
    return None


@contextlib.contextmanager
def scratch_postgres_database(admin_url: str, prefix: str = "t") -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url``, dropped afterwards (tests, benches)."""
    admin_url = normalise_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database that exists only for this test."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with scratch_postgres_database(admin_url) as url:
        yield url


def database_with_tables(url: str, *models: type[SQLModel]) -> Database:
    """A Database at ``url`` holding just the tables of ``models`` (kit's own tests have no migrations)."""
    database = Database(url)
    SQLModel.metadata.create_all(database.engine, tables=[model.__table__ for model in models])  # type: ignore[attr-defined]
    return database
