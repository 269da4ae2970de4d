"""Ports and databases for a second stack next to `make airflow` (the end-to-end tests', the benchmark's)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a second stack next to `make airflow` (the tests', the benchmark's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_postgres_database(name: str, server: str = "host=127.0.0.1 port=5432 user=postgres") -> None:
    """Drop and create a database on the local PostgreSQL server (a stack's metadata, a test warehouse)."""
    import psycopg2

    connection = psycopg2.connect(f"{server} dbname=postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()


def postgres_url(name: str) -> str:
    """The SQLAlchemy URL of a database on the local PostgreSQL server."""
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def ensure_postgres_database(name: str, server: str = "host=127.0.0.1 port=5432 user=postgres") -> None:
    """Create a database on the local PostgreSQL server unless it exists (a kept stack's metadata)."""
    import psycopg2

    connection = psycopg2.connect(f"{server} dbname=postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE DATABASE {name}")
    connection.close()


def fresh_mariadb_database(name: str, host: str = "127.0.0.1", port: int = 3306, user: str = "root") -> None:
    """Drop and create a database on the local MariaDB server (a test or benchmark warehouse)."""
    import MySQLdb

    connection = MySQLdb.connect(host=host, port=port, user=user)
    try:
        cursor = connection.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        connection.close()
