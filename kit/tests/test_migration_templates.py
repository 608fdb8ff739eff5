"""Migrated databases for tests: each migration history runs once, then every test gets a copy of its own.

Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL points at it (then the copies are made with
``CREATE DATABASE … TEMPLATE``)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kit.db import make_engine
from kit.testing import MigrationTemplates, postgres_admin_url

ENV_PY = """
from kit.migrations import run_migrations
from sqlalchemy import MetaData

run_migrations(MetaData())
"""

REVISION_PY = '''
"""A table and a row of reference data, as a data migration would leave them."""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    grade = op.create_table(
        "grade", sa.Column("code", sa.String(8), primary_key=True), sa.Column("name", sa.String(32), nullable=False)
    )
    op.bulk_insert(grade, [{"code": "g1", "name": "一年级"}])
    with open(RUNS_FILE, "a") as runs:
        runs.write("ran\\n")


def downgrade() -> None:
    op.drop_table("grade")
'''


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    location = tmp_path / "migrations"
    (location / "versions").mkdir(parents=True)
    (location / "env.py").write_text(textwrap.dedent(ENV_PY))
    (location / "versions" / "0001_grade.py").write_text(
        REVISION_PY.replace("RUNS_FILE", repr(str(tmp_path / "runs.txt")))
    )
    return location


@pytest.fixture
def templates(tmp_path: Path) -> Iterator[MigrationTemplates]:
    directory = tmp_path / "templates"
    directory.mkdir()
    templates = MigrationTemplates(directory, postgres_admin_url())
    try:
        yield templates
    finally:
        templates.close()


def grades(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text("SELECT code, name FROM grade ORDER BY code"))]
    finally:
        engine.dispose()


def add_grade(url: str, code: str, name: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO grade (code, name) VALUES (:code, :name)"), {"code": code, "name": name}
            )
    finally:
        engine.dispose()


def test_each_copy_is_migrated_and_the_migrations_run_once(
    templates: MigrationTemplates, scripts: Path, tmp_path: Path
) -> None:
    with templates.copy(scripts, tmp_path) as first, templates.copy(scripts, tmp_path) as second:
        assert first != second
        assert grades(first) == [("g1", "一年级")]
        assert grades(second) == [("g1", "一年级")]
        engine = make_engine(first)
        try:
            with engine.connect() as connection:
                version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        finally:
            engine.dispose()
        assert version == "0001"  # a service starting on the copy finds it at head and migrates nothing
    assert (tmp_path / "runs.txt").read_text() == "ran\n"


def test_copies_do_not_share_writes(templates: MigrationTemplates, scripts: Path, tmp_path: Path) -> None:
    with templates.copy(scripts, tmp_path) as first:
        add_grade(first, "g2", "二年级")
        assert grades(first) == [("g1", "一年级"), ("g2", "二年级")]
    with templates.copy(scripts, tmp_path) as later:
        assert grades(later) == [("g1", "一年级")]


def test_a_failing_migration_fails_every_copy_and_leaves_no_template(
    templates: MigrationTemplates, scripts: Path, tmp_path: Path
) -> None:
    broken = scripts / "versions" / "0001_grade.py"
    broken.write_text(
        broken.read_text().replace(
            "    op.bulk_insert(", '    raise RuntimeError("broken revision")\n    op.bulk_insert('
        )
    )
    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken revision"), templates.copy(scripts, tmp_path):
            pass
    assert templates.templates == {}


@pytest.mark.skipif(postgres_admin_url() is None, reason="needs TEST_DATABASE_URL pointing at PostgreSQL")
def test_postgres_copies_and_templates_are_dropped(scripts: Path, tmp_path: Path) -> None:
    admin_url = postgres_admin_url()
    assert admin_url is not None
    templates = MigrationTemplates(tmp_path, admin_url)

    def databases() -> set[str]:
        engine = sa.create_engine(admin_url)
        try:
            with engine.connect() as connection:
                return set(connection.execute(sa.text("SELECT datname FROM pg_database")).scalars())
        finally:
            engine.dispose()

    before = databases()
    with templates.copy(scripts, tmp_path) as url:
        name = sa.make_url(url).database
        assert name in databases()
    assert name not in databases()
    templates.close()
    assert databases() == before
