"""Database engine and sessions: SQLite (WAL, foreign keys) by default, PostgreSQL by URL.

Service functions only ``flush``; the request's session commits once on success and rolls back on
any error, so a request never leaves a half-written record.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, MetaData, Table, create_engine, event, insert, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, SQLModel

# Stable constraint names, so migrations can alter and drop them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def service_metadata(*models: type[SQLModel]) -> MetaData:
    """The tables of one service only, for its migrations.

    SQLModel keeps every table model of the process in one ``SQLModel.metadata``; a test run or a
    tool that imports several services (or test-only tables) would otherwise mix their schemas.
    """
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for model in models:
        model.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
    return metadata


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin (see _begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Checkpoint the WAL every ~40 MB instead of every 4 MB: a busy writer (usage ingest) pays the checkpoint in
    # its commits, and pages it rewrites again and again (aggregate rows) are copied once per checkpoint, not
    # ten times. Launches alone, in process: 9,356 / 9,702 -> 10,872 / 10,852 events/s.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # A deferred SQLite transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT)
    # if another connection committed in between; taking the write lock up front makes concurrent
    # read-check-write units of work queue behind each other instead, as they would on PostgreSQL.
    # Read-only sessions begin deferred, so they read a snapshot beside a long write (WAL).
    if connection.get_execution_options().get("read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus a session factory; one per service process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, echo=echo)
        self.session_factory = sessionmaker(bind=self.engine, class_=Session, expire_on_commit=False)
        self.read_session_factory = sessionmaker(
            bind=self.engine.execution_options(read_only=True), class_=Session, expire_on_commit=False
        )
        self._after_commit_hooks: list[Callable[[], None]] = []
        event.listen(self.session_factory, "after_commit", self._run_after_commit_hooks)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every commit that wrote outbox events (the relay's wake-up)."""
        self._after_commit_hooks.append(hook)

    def _run_after_commit_hooks(self, session: Session) -> None:
        if session.info.pop("outbox_written", False):
            for hook in self._after_commit_hooks:
                hook()
        for callback in session.info.pop("after_commit", []):
            callback()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any error."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            session.info.pop("after_commit", None)
            raise
        finally:
            session.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A unit of work that only reads: never blocks behind, or blocks, a writer on SQLite."""
        session = self.read_session_factory()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def ping(self) -> None:
        # Read-only: on SQLite a probe must not wait for the write lock behind a long batch.
        with self.engine.execution_options(read_only=True).connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(callback)


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: the request's unit of work."""
    with get_database(request).session() as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a read-only unit of work (nothing it changes is committed)."""
    with get_database(request).read_session() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a failed commit is the client's error.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _converted(
    table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]], dialect: Any
) -> Sequence[Sequence[Any]]:
    """Rows with each value converted by its column's type for the driver (only columns that need it, and a value
    repeated down a column, such as a batch's timestamp or day, converted once)."""
    processors = [
        (index, convert)
        for index, name in enumerate(columns)
        if (convert := _bind_processor(table.c[name].type.dialect_impl(dialect), dialect)) is not None
    ]
    if not processors:
        return rows
    converted: list[Sequence[Any]] = []
    last: dict[int, tuple[Any, Any]] = {}
    for row in rows:
        values = list(row)
        for index, convert in processors:
            value = values[index]
            if value is None:
                continue
            previous = last.get(index)
            if previous is not None and previous[0] == value:
                values[index] = previous[1]
            else:
                values[index] = result = convert(value)
                last[index] = (value, result)
        converted.append(tuple(values))
    return converted


_SQLITE_DATETIME_FORMAT = sqlite_dialect.DATETIME()._storage_format


def _bind_processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The type's conversion of a value for the driver; for SQLite's datetimes the same text as SQLAlchemy's own
    (its default storage format is ISO 8601 with a space and microseconds, the wall time without an offset) made by
    ``isoformat`` in C, a few times faster than formatting each field."""
    convert = type_.bind_processor(dialect)
    if convert is None or not (
        isinstance(type_, sqlite_dialect.DATETIME) and type_._storage_format == _SQLITE_DATETIME_FORMAT
    ):
        return convert
    fallback = convert

    def to_text(value: Any) -> Any:
        if type(value) is datetime:
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return fallback(value)

    return to_text


def driver_placeholder(session: Session) -> str | None:
    """The driver's positional placeholder (``?`` or ``%s``), for statements sent with ``exec_driver_sql``."""
    return _PLACEHOLDERS.get(session.connection().dialect.paramstyle)


def insert_rows(session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows through the driver's executemany, for high-volume writers (usage ingest).

    SQLAlchemy's own executemany processes every parameter of every row in Python, which costs more than the
    database's work at thousands of rows a second. On PostgreSQL the rows go through COPY; elsewhere each column's
    type converts its values (dates on SQLite, say) and the rows go to the driver's executemany as they are.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    if _is_psycopg(dialect):
        # COPY: about ten times psycopg's executemany (some 30,000 rows a second); psycopg adapts the values.
        names = ", ".join(quote(name) for name in columns)
        with (
            connection.connection.driver_connection.cursor() as cursor,  # type: ignore[union-attr]
            cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
    if placeholder is None:
        connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    rows = _converted(table, columns, rows, dialect)
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "  # noqa: S608 - names from the table
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )
    connection.exec_driver_sql(statement, list(rows))


def insert_new_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    key: Sequence[str],
) -> set[tuple[Any, ...]]:
    """Insert the rows whose ``key`` (a unique constraint's columns) is not in the table yet; returns the keys inserted.

    Rows repeating a key within ``rows`` must be removed by the caller. On PostgreSQL the rows are copied into a
    temporary table and one statement does the rest (``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``): the
    unique index decides, so the answer
    never depends on the planner's statistics of a table that grows fast (a look-up by key on a freshly filled table
    was planned as a scan of all its rows), and a concurrent writer of the same key is waited for, then skipped.
    Elsewhere the keys are looked up, then the new rows go through :func:`insert_rows` (SQLite's single writer
    makes the two steps safe).
    """
    if not rows:
        return set()
    positions = [list(columns).index(name) for name in key]
    key_of = operator.itemgetter(*positions) if len(positions) > 1 else (lambda row: (row[positions[0]],))
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    if _is_psycopg(dialect):
        names = ", ".join(quote(name) for name in columns)
        key_names = ", ".join(quote(name) for name in key)
        # No ORDER BY: the scan reads the staged rows back in the order COPY wrote them, so the table's sequence
        # numbers them in the callers' order.
        found = _insert_staged(
            connection, table, columns, rows,
            f"SELECT {names} FROM staged ON CONFLICT ({key_names}) DO NOTHING RETURNING {key_names}",  # noqa: S608
        )  # fmt: skip
        return {tuple(row) for row in found}
    keys = [key_of(row) for row in rows]
    existing = _existing_keys(session, table, key, keys)
    fresh = [row for row, row_key in zip(rows, keys, strict=True) if row_key not in existing]
    insert_rows(session, table, columns, fresh)
    return {row_key for row_key in keys if row_key not in existing}


def _is_psycopg(dialect: Any) -> bool:
    return bool(dialect.name == "postgresql" and dialect.driver == "psycopg")


def _insert_staged(
    connection: Any, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]], select_sql: str
) -> list[tuple[Any, ...]]:
    """``INSERT INTO table (columns) <select_sql>`` on PostgreSQL, where ``select_sql`` reads ``rows`` from
    ``staged``; returns what the statement returns (nothing without RETURNING).

    The rows are first copied into this session's temporary table of ``columns`` of ``table`` (created the first
    time, emptied at commit, and emptied by the statement itself, so a second call in the same transaction starts
    clean). COPY costs the client a fraction of binding the same values as arrays (psycopg dumps every element of an
    array in Python) or of one statement per row, and leaves the rest to the database."""
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    stage = quote(f"_stage_{table.name[:40]}_{zlib.crc32(names.encode()):08x}")
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "  # noqa: S608 - names from the table
            f"SELECT {names} FROM {quote(table.name)} WITH NO DATA"
        )
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"WITH staged AS (DELETE FROM {stage} RETURNING {names}) "  # noqa: S608 - names from the table
            f"INSERT INTO {quote(table.name)} ({names}) {select_sql}"
        )
        return list(cursor.fetchall()) if cursor.description else []


# Keys looked up per query; well under every database's limit on bound parameters.
_LOOKUP_CHUNK = 400


def _existing_keys(
    session: Session, table: Table, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Which of ``keys`` the table holds: grouped by all but the key's last column, the last one looked up by IN."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row_key in keys:
        groups.setdefault(row_key[:-1], []).append(row_key[-1])
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
    found: set[tuple[Any, ...]] = set()
    for prefix, lasts in groups.items():
        for start in range(0, len(lasts), _LOOKUP_CHUNK):
            chunk = lasts[start : start + _LOOKUP_CHUNK]
            if placeholder is None:
                condition = [table.c[name] == value for name, value in zip(key, prefix, strict=True)]
                statement = select(table.c[key[-1]]).where(*condition, table.c[key[-1]].in_(chunk))
                rows = connection.execute(statement)
            else:
                # Sent as written: compiling an expanding IN for each batch costs more than the look-up itself.
                condition_sql = "".join(f"{quote(name)} = {placeholder} AND " for name in key[:-1])
                marks = ", ".join([placeholder] * len(chunk))
                rows = connection.exec_driver_sql(
                    f"SELECT {quote(key[-1])} FROM {quote(table.name)} "  # noqa: S608 - names from the table
                    f"WHERE {condition_sql}{quote(key[-1])} IN ({marks})",
                    (*prefix, *chunk),
                )
            found.update((*prefix, last) for (last,) in rows)
    return found


def add_to_counters(
    session: Session, table: Table, keys: Sequence[str], counters: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Add to counter columns of rows found by their key, creating the rows that are missing.

    Each row gives the key columns' values, then the amounts to add to ``counters``; a key may repeat. On
    PostgreSQL the rows are copied into a temporary table and added in one statement, in key order, so two
    transactions adding to the same rows lock them in the same order (no deadlock); elsewhere one executemany,
    in the callers' order (they sort rows by key).
    """
    if not rows:
        return
    placeholder = driver_placeholder(session)
    columns = [*keys, *counters]
    connection = session.connection()
    if _is_psycopg(connection.dialect):
        quote = connection.dialect.identifier_preparer.quote
        key_names = ", ".join(quote(name) for name in keys)
        sums = ", ".join(f"sum({quote(name)})" for name in counters)
        updates = ", ".join(
            f"{quote(name)} = {quote(table.name)}.{quote(name)} + excluded.{quote(name)}" for name in counters
        )
        _insert_staged(
            connection, table, columns, rows,
            f"SELECT {key_names}, {sums} FROM staged GROUP BY {key_names} ORDER BY {key_names} "  # noqa: S608
            f"ON CONFLICT ({key_names}) DO UPDATE SET {updates}",
        )  # fmt: skip
        return
    if placeholder is None:
        dialect_name = session.connection().dialect.name
        upsert = postgresql_insert(table) if dialect_name == "postgresql" else sqlite_insert(table)
        statement = upsert.on_conflict_do_update(
            index_elements=list(keys), set_={name: table.c[name] + upsert.excluded[name] for name in counters}
        )
        session.connection().execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
        return
    dialect = session.connection().dialect
    rows = _converted(table, columns, rows, dialect)
    quote = dialect.identifier_preparer.quote
    updates = ", ".join(
        f"{quote(name)} = {quote(table.name)}.{quote(name)} + excluded.{quote(name)}" for name in counters
    )
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "  # noqa: S608 - names from the table
        f"VALUES ({', '.join([placeholder] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quote(name) for name in keys)}) DO UPDATE SET {updates}"
    )
    session.connection().exec_driver_sql(sql, list(rows))
