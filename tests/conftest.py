"""Shared fixtures: a real emulator over HTTP, and Airflow connections that point at it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from dev.emulator.server import EmulatorServer
from dev.emulator.service import Settings
from tests.warehouses import POSTGRES_DSN, TestWarehouse, reset_postgres

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

        reset_postgres()
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
