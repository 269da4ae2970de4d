"""Real warehouses for the tests: SQLite files, the local PostgreSQL server and the local MariaDB server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

POSTGRES_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIADB_DSN = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "partner_sync_test"}
SNOWFLAKE_DATABASE = "PARTNER_SYNC_TEST"
# The candidates table's updated_at as a user of each database would type it.
TIMESTAMP_TYPES = {"sqlite": "TEXT", "postgres": "TIMESTAMPTZ", "mariadb": "DATETIME(6)", "snowflake": "TIMESTAMP_TZ"}


class TestWarehouse:
    """A real warehouse for one test: a DB-API connection for seeding and assertions, its SQLAlchemy URL for the
    sync, and its Airflow connection."""

    __test__ = False  # a helper, not a test class

    def __init__(
        self,
        kind: str,
        connect: Callable[[], Any],
        url: str,
        airflow_conn: dict,
        *,
        engine_args: dict | None = None,
        state: TestWarehouse | None = None,
    ):
        self.kind = kind
        self.connect = connect
        self.url = url
        self.airflow_conn = airflow_conn
        self.engine_args = engine_args or {}
        self.connection = connect()
        self.opened: list[Any] = [self.connection]
        # The state store when it is another database (an analytical warehouse); else this one.
        self.state = state or self

    @property
    def placeholder(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def warehouse(self):
        """A Warehouse on a new engine, as a task in a new process would have; closed with the fixture."""
        import sqlalchemy as sa

        from include.sync.settings import Tables
        from include.sync.warehouse import Warehouse

        engine = sa.create_engine(self.url, **self.engine_args)
        if self.state is self:
            result = Warehouse(engine, Tables())
        else:
            result = Warehouse(sa.create_engine(self.state.url), Tables(), source=engine)
            self.opened.append(engine)
        self.opened.append(result)
        return result

    def close(self) -> None:
        for opened in self.opened:
            if isinstance(opened, sa.Engine):
                opened.dispose()
                continue
            opened.close()
            if hasattr(opened, "engine"):
                opened.engine.dispose()
        if self.state is not self:
            self.state.close()

    def seed(self, rows, timestamp_type: str | None = None) -> None:
        from dev.demo_data import candidate_table_ddl, insert_candidates
        from include.sync.settings import Tables

        table = Tables().candidates
        cursor = self.connection.cursor()
        cursor.execute(candidate_table_ddl(table, timestamp_type or TIMESTAMP_TYPES[self.kind]))
        self.connection.commit()
        if self.kind == "mariadb" and timestamp_type is None:
            rows = [{**row, "updated_at": _as_mariadb_datetime(row.get("updated_at"))} for row in rows]
        insert_candidates(self.connection, rows, table, self.placeholder)

    def moment(self, iso: str) -> Any:
        """An ISO time as this warehouse's updated_at column takes it."""
        return _as_mariadb_datetime(iso) if self.kind == "mariadb" else iso

    def sync_time(self, moment: dt.datetime) -> Any:
        """A time as the sync's own tables keep it: ISO text on SQLite, UTC without zone on MariaDB."""
        if self.kind == "sqlite":
            return moment.isoformat(sep=" ")
        return _naive_utc(moment) if self.kind == "mariadb" else moment

    def query(self, sql: str, params=()) -> list[dict]:
        cursor = self.connection.cursor()
        cursor.execute(sql.replace("?", self.placeholder), params)
        names = [c[0].lower() for c in cursor.description]  # Snowflake answers in upper case
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        self.connection.commit()
        return rows

    def execute(self, sql: str, params=()) -> None:
        cursor = self.connection.cursor()
        cursor.execute(sql.replace("?", self.placeholder), params)
        self.connection.commit()


def _as_mariadb_datetime(value: Any) -> Any:
    """An ISO time as a DATETIME column takes it (UTC, no offset); anything else as it is, for the server to judge."""
    try:
        return _naive_utc(dt.datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return value


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def reset_postgres() -> None:
    """An empty `public` schema: the sync's tables, and whatever tables and views a test made for its feed."""
    import psycopg2

    with psycopg2.connect(**POSTGRES_DSN) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS public CASCADE")
        cursor.execute("CREATE SCHEMA public")


def reset_mariadb() -> None:
    """An empty database `partner_sync_test`."""
    from dev.local_stack.databases import fresh_mariadb_database

    fresh_mariadb_database(MARIADB_DSN["database"])


def reset_snowflake(server: dict[str, Any]) -> None:
    """An empty schema PUBLIC in the test database of the fakesnow server."""
    import snowflake.connector

    connection = snowflake.connector.connect(**server)
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {SNOWFLAKE_DATABASE}")
        cursor.execute(f"DROP SCHEMA IF EXISTS {SNOWFLAKE_DATABASE}.PUBLIC CASCADE")
        cursor.execute(f"CREATE SCHEMA {SNOWFLAKE_DATABASE}.PUBLIC")
    finally:
        connection.close()
