"""Units of work: commit on success, roll back on error, readers not blocked by a long write."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Field, SQLModel, select

from kit.db import Database, add_to_counters, after_commit, insert_new_rows, insert_rows
from kit.testing import database_with_tables


class Counter(SQLModel, table=True):
    __tablename__ = "kit_test_counter"
    id: int | None = Field(default=None, primary_key=True)
    value: int


class Stamp(SQLModel, table=True):
    __tablename__ = "kit_test_stamp"
    id: int | None = Field(default=None, primary_key=True)
    label: str
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    day: date
    note: str | None = None


class Entry(SQLModel, table=True):
    __tablename__ = "kit_test_entry"
    __table_args__ = (sa.UniqueConstraint("source", "ref", name="uq_kit_test_entry_source_ref"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    ref: str = Field(max_length=64)
    amount: int = Field(sa_type=sa.BigInteger)
    at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    note: str | None = Field(default=None, max_length=100)


class Tally(SQLModel, table=True):
    __tablename__ = "kit_test_tally"
    app: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    launches: int = Field(sa_type=sa.BigInteger)
    minutes: int = Field(sa_type=sa.BigInteger)


ENTRIES: sa.Table = Entry.__table__  # type: ignore[attr-defined]
TALLIES: sa.Table = Tally.__table__  # type: ignore[attr-defined]
ENTRY_COLUMNS = ("source", "ref", "amount", "at", "note")
ENTRY_KEY = ("source", "ref")


def make_database(url: str) -> Database:
    return database_with_tables(url, Counter, Stamp, Entry, Tally)


def test_only_rows_with_a_new_key_are_inserted_and_their_keys_returned(database_url: str) -> None:
    database = make_database(database_url)
    moment = datetime(2026, 11, 30, 23, 59, 59, 5, tzinfo=UTC)
    with database.session() as session:
        first = insert_new_rows(
            session, ENTRIES, ENTRY_COLUMNS,
            [("gateway", "a", 1, moment, None), ("gateway", "b", 2, moment, None), ("vendor", "a", 3, moment, "备注")],
            ENTRY_KEY,
        )  # fmt: skip
    assert first == {("gateway", "a"), ("gateway", "b"), ("vendor", "a")}
    with database.session() as session:
        second = insert_new_rows(
            session, ENTRIES, ENTRY_COLUMNS,
            [("gateway", "b", 20, moment, "again"), ("vendor", "b", 4, moment, None), ("vendor", "a", 3, moment, None)],
            ENTRY_KEY,
        )  # fmt: skip
    assert second == {("vendor", "b")}
    with database.read_session() as session:
        stored = {(row.source, row.ref): (row.amount, row.note) for row in session.exec(select(Entry))}
        at_moment = session.exec(select(sa.func.count()).select_from(Entry).where(Entry.at == moment)).one()
    # The first row of a key stands: a repeat changes nothing.
    assert stored == {
        ("gateway", "a"): (1, None),
        ("gateway", "b"): (2, None),
        ("vendor", "a"): (3, "备注"),
        ("vendor", "b"): (4, None),
    }
    assert at_moment == 4


def test_several_writes_in_one_transaction_each_insert_only_their_own_rows(database_url: str) -> None:
    database = make_database(database_url)
    moment = datetime(2026, 11, 2, tzinfo=UTC)
    with database.session() as session:
        first = insert_new_rows(session, ENTRIES, ENTRY_COLUMNS, [("gateway", "a", 1, moment, None)], ENTRY_KEY)
        second = insert_new_rows(
            session, ENTRIES, ENTRY_COLUMNS, [("gateway", "a", 1, moment, None), ("gateway", "b", 2, moment, None)],
            ENTRY_KEY,
        )  # fmt: skip
    assert (first, second) == ({("gateway", "a")}, {("gateway", "b")})
    with database.read_session() as session:
        assert session.exec(select(sa.func.count()).select_from(Entry)).one() == 2


def test_counters_add_to_existing_rows_and_create_missing_ones(database_url: str) -> None:
    database = make_database(database_url)
    monday, tuesday = date(2026, 11, 2), date(2026, 11, 3)
    columns = ("app", "day"), ("launches", "minutes")
    with database.session() as session:
        add_to_counters(session, TALLIES, *columns, [("homework", monday, 1, 40), ("reading", monday, 2, 0)])
    with database.session() as session:
        # A key may repeat within one call, and a second call in the same transaction adds again.
        add_to_counters(
            session, TALLIES, *columns,
            [("homework", monday, 3, 5), ("homework", monday, 1, 0), ("homework", tuesday, 1, 10)],
        )  # fmt: skip
        add_to_counters(session, TALLIES, *columns, [("reading", monday, 1, 1)])
    with database.read_session() as session:
        stored = {(row.app, row.day): (row.launches, row.minutes) for row in session.exec(select(Tally))}
    assert stored == {
        ("homework", monday): (5, 45),
        ("homework", tuesday): (1, 10),
        ("reading", monday): (3, 1),
    }


def test_a_writer_of_the_same_key_is_waited_for_then_skipped(database_url: str) -> None:
    database = make_database(database_url)
    moment = datetime(2026, 11, 2, tzinfo=UTC)
    inserted: list[set[tuple[object, ...]]] = []
    started = threading.Event()

    launch = [("appstore", "launch-1", 1, moment, None)]

    def second_writer() -> None:
        started.set()
        with database.session() as session:
            inserted.append(insert_new_rows(session, ENTRIES, ENTRY_COLUMNS, launch, ENTRY_KEY))

    with database.session() as session:
        assert insert_new_rows(session, ENTRIES, ENTRY_COLUMNS, launch, ENTRY_KEY) == {("appstore", "launch-1")}
        thread = threading.Thread(target=second_writer)
        thread.start()
        started.wait(5)
        thread.join(0.5)
        assert thread.is_alive(), "the second writer must wait for the first one's transaction"
    thread.join(10)
    assert inserted == [set()]
    with database.read_session() as session:
        assert session.exec(select(sa.func.count()).select_from(Entry)).one() == 1


def test_rows_inserted_through_the_driver_read_back_like_rows_the_orm_wrote(database_url: str) -> None:
    database = make_database(database_url)
    moment = datetime(2026, 10, 31, 16, 30, 5, 120, tzinfo=UTC)
    with database.session() as session:
        session.add(Stamp(label="orm", at=moment, day=date(2026, 11, 1)))
        insert_rows(
            session, Stamp.__table__, ("label", "at", "day", "note"),  # type: ignore[attr-defined]
            [("driver", moment, date(2026, 11, 1), None), ("driver-2", moment, date(2026, 11, 1), "备注")],
        )  # fmt: skip
    with database.read_session() as session:
        rows = {row.label: (row.at, row.day, row.note) for row in session.exec(select(Stamp))}
        # Stored the same way, so comparisons in SQL treat both alike.
        later = session.exec(select(Stamp.label).where(Stamp.at >= moment).order_by(Stamp.label)).all()
    assert later == ["driver", "driver-2", "orm"]
    for label in ("orm", "driver", "driver-2"):
        at, day, _note = rows[label]
        assert (at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)) == moment
        assert day == date(2026, 11, 1)
    assert rows["driver-2"][2] == "备注"


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
