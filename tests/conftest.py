"""Shared fixtures: a real emulator over HTTP, and Airflow connections that point at it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from include.emulator.server import EmulatorServer
from include.emulator.service import Settings

ACCESS_KEY = "AKIATESTACCOUNT00001"
SECRET_KEY = "test-secret-key-never-logged"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer()
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def emulator(emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """A fresh emulator state, and the `aws_default` connection pointing at it."""
    emulator_server.emulator.settings = Settings()
    emulator_server.emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(emulator_server.url))
    return emulator_server


def aws_connection_json(endpoint_url: str) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
        }
    )


@pytest.fixture
def raw_client(emulator: EmulatorServer):
    """A stock boto3 client on the emulator, with client-side validation off to send what the server must refuse."""
    return boto3.client(
        "partnercentral-channel",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="session", autouse=True)
def _airflow_home_is_local() -> None:
    home = os.environ.get("AIRFLOW_HOME", "")
    if not home:
        pytest.exit("AIRFLOW_HOME is not set: run the tests with `make test` (it sources scripts/env.sh)")


# -- warehouses ------------------------------------------------------------------------------------------------------
POSTGRES_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


class TestWarehouse:
    """A real warehouse for one test: its DB-API connection for seeding and assertions, and its Airflow connection."""

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


def _reset_postgres() -> None:
    import psycopg2

    from include.sync.settings import Tables

    with psycopg2.connect(**POSTGRES_DSN) as connection, connection.cursor() as cursor:
        for table in vars(Tables()).values():
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_warehouse(request, tmp_path, monkeypatch) -> Iterator[TestWarehouse]:
    """The sync's warehouse, on SQLite and on the local PostgreSQL server; `partner_warehouse` points at it."""
    if request.param == "sqlite":
        import sqlite3

        path = str(tmp_path / "warehouse.db")
        airflow_conn = {"conn_type": "sqlite", "host": path}
        result = TestWarehouse("sqlite", lambda: sqlite3.connect(path, check_same_thread=False), airflow_conn)
    else:
        import psycopg2

        _reset_postgres()
        airflow_conn = {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "postgres",
            "schema": "test",
        }
        result = TestWarehouse("postgres", lambda: psycopg2.connect(**POSTGRES_DSN), airflow_conn)
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_WAREHOUSE", json.dumps(airflow_conn))
    yield result
    result.close()
