"""Every difference between the supported warehouses, in one place: placeholders, timestamps, types, locking.

SQL in this package is written once, with `?` placeholders and the ANSI/SQLite spelling of upserts
(`INSERT ... ON CONFLICT (...) DO UPDATE`, which PostgreSQL shares); a Dialect adapts it to one warehouse.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")


def identifier(value: str, setting: str) -> str:
    """A table name from configuration, checked before it is put into SQL (values are always bound)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{setting} must be a table name like `name` or `schema.name` (letters, digits, _; at most 63 each), "
            f"got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    timestamp_type: str
    boolean_type: str
    row_lock: str  # appended to a SELECT to hold its rows until commit (SQLite locks the whole file instead)
    now_sql: str  # the warehouse's clock as UTC text or timestamp: claims and the rate schedule use one clock
    epoch_sql: str  # the warehouse's clock in epoch seconds

    def key(self, column: str) -> str:
        """A candidate id column of the user's table as the sync stores ids: trimmed text, whatever its type."""
        return f"TRIM(CAST({column} AS TEXT))"

    def sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def bind_time(self, value: dt.datetime) -> Any:
        value = value.astimezone(dt.timezone.utc)
        return value.isoformat(sep=" ") if self.name == "sqlite" else value

    def streaming_cursor(self, connection: Any) -> Any:
        """A cursor that reads a large result in chunks without holding it all in this process. On PostgreSQL, a
        server-side cursor WITH HOLD: it lives outside transactions, so the writes made while reading it commit (the
        server materialises the result when the cursor is declared; this process fetches it chunk by chunk)."""
        if self.name == "postgres":
            return connection.cursor(name=f"partner_sync_{uuid.uuid4().hex}", withhold=True)
        return connection.cursor()

    def parse_time(self, value: Any) -> dt.datetime | None:
        """A timestamp this package wrote (text on SQLite), as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)

    def executemany(self, cursor: Any, statement: str, rows: list[tuple]) -> None:
        """Many rows in few round trips. psycopg2's own executemany sends one statement per row; psycopg 3, which the
        Postgres provider's hook returns inside Airflow here, pipelines executemany by itself."""
        if type(cursor).__module__.startswith("psycopg2"):
            from psycopg2.extras import execute_batch

            execute_batch(cursor, self.sql(statement), rows, page_size=1000)
        else:
            cursor.executemany(self.sql(statement), rows)

    def bind_bool(self, value: bool | None) -> Any:
        return None if value is None else (int(value) if self.name == "sqlite" else value)


SQLITE = Dialect(
    "sqlite",
    "?",
    "TEXT",
    "INTEGER",
    "",
    "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    "(julianday('now') - 2440587.5) * 86400.0",
)
POSTGRES = Dialect(
    "postgres",
    "%s",
    "TIMESTAMPTZ",
    "BOOLEAN",
    " FOR UPDATE",
    "clock_timestamp()",
    "EXTRACT(EPOCH FROM clock_timestamp())",
)
DIALECTS = {"sqlite": SQLITE, "postgres": POSTGRES, "postgresql": POSTGRES}


def dialect_for(conn_type: str) -> Dialect:
    try:
        return DIALECTS[conn_type]
    except KeyError:
        raise ValueError(
            f"warehouse connection type {conn_type!r} is not supported yet; supported: {', '.join(sorted(DIALECTS))}"
        ) from None
