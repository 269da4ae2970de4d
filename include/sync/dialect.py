"""Every difference between the supported databases, in one place, on top of SQLAlchemy Core.

Statements are written once as SQLAlchemy Core; SQLAlchemy compiles them for each database. What Core leaves to the
caller is here: the database's clock, how a session is set up (UTC, locks, SQLite's transactions), the id key, which
errors a second try gets past, and an insert that leaves existing rows alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
# Databases that can hold the sync's claims and shared rate schedule: row locks (or SQLite's file lock) and a
# write per call.
TRANSACTIONAL = ("sqlite", "postgresql", "mysql", "mariadb")
# SQLSTATEs of errors that a second try of the same transaction can get past: serialization failure, deadlock,
# lock not available, statement cancelled (lock_timeout/statement_timeout).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
# MySQL/MariaDB error numbers of the same kind: lock wait timeout, deadlock.
TRANSIENT_MYSQL_ERRORS = frozenset({1205, 1213})
# An option on a connection asking SQLite to take the write lock when its transaction begins.
SQLITE_WRITE_LOCK = "partner_sync_sqlite_write_lock"
UTC = dt.timezone.utc
# The size of each multi-row INSERT mysqlclient sends for a bulk insert.
MYSQL_STATEMENT_BYTES = 1 << 20


def identifier(value: str, setting: str) -> str:
    """A table name from configuration, checked before it is put into SQL (values are always bound)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{setting} must be a table name like `name` or `schema.name` (letters, digits, _; at most 63 each), "
            f"got {value!r}"
        )
    return value


def split_name(name: str) -> tuple[str | None, str]:
    """`schema.name` → (schema, name); `name` → (None, name)."""
    schema, _, table = name.rpartition(".")
    return schema or None, table


# -- the database's clock -------------------------------------------------------------------------------------------
class db_time(FunctionElement):  # noqa: N801 - used like a SQL function
    """The database's current time, UTC, to the microsecond where it keeps them: claims and timeouts use one clock."""

    inherit_cache = True


class db_epoch(FunctionElement):  # noqa: N801
    """The database's current time in seconds since the epoch, as a float: the shared rate schedule's clock."""

    type = sa.Float()
    inherit_cache = True


# Each database's clock: (current UTC time, current epoch seconds). Others compile to the ANSI CURRENT_TIMESTAMP.
CLOCKS = {
    "sqlite": ("strftime('%Y-%m-%d %H:%M:%f000', 'now')", "((julianday('now') - 2440587.5) * 86400.0)"),
    "postgresql": ("clock_timestamp()", "EXTRACT(EPOCH FROM clock_timestamp())"),
    "mysql": ("UTC_TIMESTAMP(6)", "UNIX_TIMESTAMP(SYSDATE(6))"),
    "mariadb": ("UTC_TIMESTAMP(6)", "UNIX_TIMESTAMP(SYSDATE(6))"),
}


def _sql(text: str) -> Callable[..., str]:
    return lambda element, compiler, **kw: text


compiles(db_time)(_sql("CURRENT_TIMESTAMP"))
for _name, (_time, _epoch) in CLOCKS.items():
    compiles(db_time, _name)(_sql(_time))
    compiles(db_epoch, _name)(_sql(_epoch))


class read_as_text(FunctionElement):  # noqa: N801
    """A column of the user's table read as text where the driver's own conversion costs more than the sync's: on
    MySQL/MariaDB, mysqlclient parses every DATETIME in Python (3.5 s per million rows), while the sync parses
    `updated_at` only for the rows it takes (include.sync.candidates.parse_timestamp reads text and numbers alike)."""

    inherit_cache = True


@compiles(read_as_text)
def _as_it_is(element: read_as_text, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(read_as_text, "mysql")
@compiles(read_as_text, "mariadb")
def _as_text(element: read_as_text, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS CHAR)"


class UtcDateTime(sa.TypeDecorator):
    """An aware UTC datetime in Python whatever the database keeps: timestamptz on PostgreSQL, DATETIME(6) in UTC on
    MySQL, ISO text on SQLite, TIMESTAMP_TZ on Snowflake, TIMESTAMP on BigQuery."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return mysql.DATETIME(fsp=6)
        if dialect.name == "bigquery":  # its DATETIME has no time zone; TIMESTAMP is an instant
            return sa.TIMESTAMP()
        return sa.DateTime(timezone=True)

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def key(column: ColumnElement[Any]) -> ColumnElement[str]:
    """A candidate id of the user's table as the sync stores ids: trimmed text, whatever the column's type."""
    return sa.func.trim(sa.cast(column, sa.String), type_=sa.String)


def many_groups(statement: sa.Select) -> sa.Select:
    """A GROUP BY with about as many groups as rows (the duplicate id check): on MySQL/MariaDB, grouped by a sort
    (SQL_BIG_RESULT) instead of in a temporary table, which past tmp_table_size moves to disk: 3x slower there on a
    million ids. Other databases choose their way themselves."""
    for name in ("mysql", "mariadb"):
        statement = statement.prefix_with("SQL_BIG_RESULT", dialect=name)
    return statement


# -- sessions -------------------------------------------------------------------------------------------------------
def configure(engine: sa.Engine) -> sa.Engine:
    """Every session in UTC; on SQLite, WAL with a busy timeout and transactions the sync begins itself (plain BEGIN,
    or BEGIN IMMEDIATE where it must hold the write lock from the start); on MySQL, READ COMMITTED."""
    name = engine.dialect.name

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        if name == "sqlite":
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # WAL: a long read (the selection) does not block other tasks' writes; and wait for locks, don't fail.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            return
        cursor = dbapi_connection.cursor()
        if name == "postgresql":
            cursor.execute("SET TIME ZONE 'UTC'")
        elif name in ("mysql", "mariadb"):
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.close()
        if name == "postgresql":
            dbapi_connection.commit()

    if name == "sqlite":

        @sa.event.listens_for(engine, "begin")
        def on_begin(connection: sa.Connection) -> None:
            immediate = connection.get_execution_options().get(SQLITE_WRITE_LOCK)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def is_transient(exc: BaseException) -> bool:
    """A database error that the same transaction may get past on a second try (a lock, not a broken query)."""
    original = getattr(exc, "orig", None) or exc
    code = getattr(original, "pgcode", None) or getattr(original, "sqlstate", None)
    if code in TRANSIENT_SQLSTATES:
        return True
    args = getattr(original, "args", ())
    if args and args[0] in TRANSIENT_MYSQL_ERRORS:
        return True
    text = str(original).lower()
    return type(original).__name__ == "OperationalError" and ("database is locked" in text or "is busy" in text)


def insert_missing(table: sa.Table, dialect: sa.Dialect) -> Any:
    """INSERT that leaves a row already there (by primary key) as it is: with a conditional UPDATE after it, the one
    way of writing an upsert with a condition that every database here shares."""
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect.name in ("mysql", "mariadb"):
        first_key = next(iter(table.primary_key.columns))
        return mysql.insert(table).on_duplicate_key_update({first_key.name: first_key})
    raise ValueError(f"{dialect.name} cannot hold the sync's state; use one of {', '.join(TRANSACTIONAL)}")


def upsert(table: sa.Table, dialect: sa.Dialect, updated: list[str]) -> Any:
    """INSERT that overwrites the given columns of a row already there (by primary key)."""
    if dialect.name in ("postgresql", "sqlite"):
        module = postgresql if dialect.name == "postgresql" else sqlite
        statement = module.insert(table)
        keys = [column.name for column in table.primary_key.columns]
        return statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in updated}
        )
    if dialect.name in ("mysql", "mariadb"):
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update({name: statement.inserted[name] for name in updated})
    raise ValueError(f"{dialect.name} cannot hold the sync's state; use one of {', '.join(TRANSACTIONAL)}")


# -- bulk reads and writes -----------------------------------------------------------------------------------------
def one_of(column: ColumnElement[Any], values: Iterable[str], dialect: sa.Dialect) -> Iterator[ColumnElement[bool]]:
    """`column IN (...)` over many keys, a condition per statement: few round trips, with room below each
    database's limit on bound parameters (65,535 on PostgreSQL and MySQL; 999 on SQLite before 3.32, which some
    systems still ship). On PostgreSQL one array parameter (`= ANY`), which it binds and plans in a fraction of the
    time of thousands of parameters."""
    keys = sorted(set(values))
    size = 900 if dialect.name == "sqlite" else 5000
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        if dialect.name == "postgresql":
            yield column == sa.any_(sa.bindparam("keys", chunk, type_=postgresql.ARRAY(column.type), unique=True))
        else:
            yield column.in_(chunk)


def bulk_insert(connection: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Many plain rows (text and integers, `names` in order) into `table`, in the caller's transaction, the fastest
    way each driver has: a million staged rows are the cold start's largest write. COPY with psycopg 3; the
    driver's own executemany on the statement compiled once with sqlite3 and mysqlclient (which batches an INSERT's
    rows itself); SQLAlchemy's insertmanyvalues with psycopg2, whose executemany sends a statement per row."""
    if not rows:
        return
    driver = connection.dialect.driver
    if driver == "psycopg":
        preparer = connection.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(name) for name in names)
        statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
        with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    if driver == "psycopg2":
        connection.execute(sa.insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    statement = sa.insert(table).compile(dialect=connection.dialect)
    if statement.positional:
        position = [names.index(name) for name in statement.positiontup]
        params: list[Any] = [tuple(row[i] for i in position) for row in rows]
    else:
        params = [dict(zip(names, row, strict=True)) for row in rows]
    if driver == "mysqldb":
        # mysqlclient joins the rows into INSERTs of max_stmt_length bytes (64 KiB by default): fewer, larger ones,
        # far below max_allowed_packet (16 MiB on MariaDB, 64 MiB on MySQL 8).
        with contextlib.closing(connection.connection.driver_connection.cursor()) as cursor:
            cursor.max_stmt_length = MYSQL_STATEMENT_BYTES
            cursor.executemany(str(statement), params)
        return
    connection.exec_driver_sql(str(statement), params)
