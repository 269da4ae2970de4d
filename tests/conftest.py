"""Shared fixtures: a real emulator over HTTP, and Airflow connections that point at it."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from dev.emulator.server import EmulatorServer
from dev.emulator.service import Settings
from dev.local_stack.databases import free_port
from tests.warehouses import (
    MARIADB_DSN,
    POSTGRES_DSN,
    SNOWFLAKE_DATABASE,
    TestWarehouse,
    reset_mariadb,
    reset_postgres,
    reset_snowflake,
)

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
@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[dict]:
    """A local fakesnow server (Snowflake's wire protocol over HTTP, DuckDB inside): the connector's arguments."""
    import socket
    import subprocess
    import sys
    import time

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the fakesnow server did not start on port {port}")
        time.sleep(0.2)
    yield {
        "user": "fake",
        "password": "snow",
        "account": "fakesnow",
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
        # fakesnow answers SQL it does not support with HTTP 500, which the connector would retry for minutes.
        "network_timeout": 10,
    }
    server.terminate()
    server.wait(timeout=30)


def sqlite_warehouse(tmp_path) -> TestWarehouse:
    import sqlite3

    path = str(tmp_path / "warehouse.db")
    connect = functools.partial(sqlite3.connect, path, check_same_thread=False)
    return TestWarehouse("sqlite", connect, f"sqlite:///{path}", {"conn_type": "sqlite", "host": path})


def postgres_warehouse() -> TestWarehouse:
    import psycopg2

    reset_postgres()
    airflow_conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    return TestWarehouse("postgres", functools.partial(psycopg2.connect, **POSTGRES_DSN), url, airflow_conn)


def mariadb_warehouse() -> TestWarehouse:
    import MySQLdb

    reset_mariadb()
    database = MARIADB_DSN["database"]
    airflow_conn = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": database}
    url = f"mysql+mysqldb://root@127.0.0.1:3306/{database}"
    return TestWarehouse("mariadb", functools.partial(MySQLdb.connect, **MARIADB_DSN), url, airflow_conn)


def snowflake_warehouse(server: dict) -> TestWarehouse:
    """Snowflake (the fakesnow server) as the warehouse, with PostgreSQL as the state store."""
    import snowflake.connector

    reset_snowflake(server)
    at = {"database": SNOWFLAKE_DATABASE, "schema": "PUBLIC"}
    airflow_conn = {
        "conn_type": "snowflake",
        "login": server["user"],
        "password": server["password"],
        "schema": "PUBLIC",
        "extra": {"account": server["account"], "database": SNOWFLAKE_DATABASE, "warehouse": "COMPUTE_WH"}
        | {name: server[name] for name in ("host", "port", "protocol")},
    }
    url = f"snowflake://{server['user']}:{server['password']}@{server['account']}/{SNOWFLAKE_DATABASE}/PUBLIC"
    connect_args = {name: server[name] for name in ("host", "port", "protocol", "network_timeout")}
    return TestWarehouse(
        "snowflake",
        functools.partial(snowflake.connector.connect, **server, **at),
        url,
        airflow_conn,
        engine_args={"connect_args": connect_args},
        state=postgres_warehouse(),
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("snowflake", marks=[pytest.mark.snowflake, pytest.mark.postgres]),
    ]
)
def test_warehouse(request, tmp_path, monkeypatch) -> Iterator[TestWarehouse]:
    """The sync's warehouse: SQLite, the local PostgreSQL and MariaDB servers, and Snowflake (a local fakesnow
    server) with PostgreSQL as its state store; `partner_warehouse` (and `partner_sync_state`) point at them."""
    if request.param == "sqlite":
        result = sqlite_warehouse(tmp_path)
    elif request.param == "postgres":
        result = postgres_warehouse()
    elif request.param == "mariadb":
        result = mariadb_warehouse()
    else:
        result = snowflake_warehouse(request.getfixturevalue("fakesnow_server"))
        monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SYNC_STATE", json.dumps(result.state.airflow_conn))
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_WAREHOUSE", json.dumps(result.airflow_conn))
    yield result
    result.close()
