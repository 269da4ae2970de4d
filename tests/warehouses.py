"""Real warehouses for the tests: SQLite files and the local PostgreSQL server."""

from __future__ import annotations

POSTGRES_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


class TestWarehouse:
    """A real warehouse for one test: its DB-API connection for seeding and assertions, and its Airflow connection."""

    __test__ = False  # a helper, not a test class

    def __init__(self, kind: str, connect, airflow_conn: dict):
        self.kind = kind
        self.connect = connect
        self.airflow_conn = airflow_conn
        self.connection = connect()
        self.opened = [self.connection]

    def warehouse(self):
        """A Warehouse on a new connection, as a task in a new process would have; closed with the fixture."""
        from include.sync.dialect import dialect_for
        from include.sync.settings import Tables
        from include.sync.warehouse import Warehouse

        self.opened.append(self.connect())
        return Warehouse(self.opened[-1], dialect_for(self.kind), Tables())

    def close(self) -> None:
        for connection in self.opened:
            connection.close()

    def seed(self, rows, timestamp_type: str | None = None) -> None:
        from include.sync.demo_data import candidate_table_ddl, insert_candidates
        from include.sync.settings import Tables

        table = Tables().candidates
        cursor = self.connection.cursor()
        default_type = "TIMESTAMPTZ" if self.kind == "postgres" else "TEXT"
        cursor.execute(candidate_table_ddl(table, timestamp_type or default_type))
        self.connection.commit()
        insert_candidates(self.connection, rows, table, "%s" if self.kind == "postgres" else "?")

    def query(self, sql: str, params=()) -> list[dict]:
        cursor = self.connection.cursor()
        cursor.execute(sql if self.kind == "sqlite" else sql.replace("?", "%s"), params)
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        self.connection.commit()
        return rows

    def execute(self, sql: str, params=()) -> None:
        cursor = self.connection.cursor()
        cursor.execute(sql if self.kind == "sqlite" else sql.replace("?", "%s"), params)
        self.connection.commit()


def reset_postgres() -> None:
    """An empty `public` schema: the sync's tables, and whatever tables and views a test made for its feed."""
    import psycopg2

    with psycopg2.connect(**POSTGRES_DSN) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS public CASCADE")
        cursor.execute("CREATE SCHEMA public")
