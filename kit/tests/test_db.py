"""Units of work: commit on success, roll back on error, readers not blocked by a long write."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import Field, SQLModel, select

from kit.db import Database, after_commit
from kit.testing import database_with_tables


class Counter(SQLModel, table=True):
    __tablename__ = "kit_test_counter"
    id: int | None = Field(default=None, primary_key=True)
    value: int


def make_database(url: str) -> Database:
    return database_with_tables(url, Counter)


def test_error_rolls_back_everything_and_skips_after_commit(database_url: str) -> None:
    database = make_database(database_url)
    called: list[str] = []
    with pytest.raises(ValueError), database.session() as session:
        session.add(Counter(value=1))
        session.flush()
        after_commit(session, lambda: called.append("committed"))
        raise ValueError("boom")
    with database.read_session() as session:
        assert session.exec(select(Counter)).all() == []
    assert called == []
    with database.session() as session:
        session.add(Counter(value=2))
        after_commit(session, lambda: called.append("committed"))
    assert called == ["committed"]


def test_a_reader_sees_the_last_commit_while_a_long_write_is_open(database_url: str) -> None:
    database = make_database(database_url)
    with database.session() as session:
        session.add(Counter(value=1))
    writing, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with database.session() as session:
            session.add(Counter(value=2))
            session.flush()
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=long_write)
    writer.start()
    assert writing.wait(10)
    try:
        with database.read_session() as session:
            assert [row.value for row in session.exec(select(Counter))] == [1]
    finally:
        release.set()
        writer.join()
    with database.read_session() as session:
        assert sorted(row.value for row in session.exec(select(Counter))) == [1, 2]
