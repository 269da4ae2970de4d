"""The warehouse side at scale: a million candidates (a few percent bad) selected, checked and staged by the sync's
first step, on PostgreSQL and on SQLite, each measured in a fresh process for its time and peak memory.

python -m bench.warehouse_scale measure postgres|sqlite TARGET   (TARGET: a database name, or a SQLite file)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg2

from include.sync.demo_data import PMA, candidate_table_ddl
from include.sync.warehouse import CANDIDATE_COLUMNS
from scripts.local_airflow import fresh_postgres_database

DAY = dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc)
TABLE = "partner_relationship_candidates"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def generate(rows: int) -> Iterator[tuple]:
    """Candidates updated during DAY; about 4% bad: account ids that lost a leading zero, lower-case sectors,
    blank names."""
    for k in range(rows):
        account = f"{k:011d}" if k % 50 == 7 else f"{k:012d}"
        yield (
            f"w{k:07d}",
            "Sandbox",
            ("END_CUSTOMER", "DOWNSTREAM_SELLER")[k % 2],
            PMA,
            account,
            "   " if k % 97 == 5 else f"Company {k}",
            None,
            "Commercial" if k % 71 == 3 else "COMMERCIAL",
            None,
            None,
            '{"source": "crm"}',
            (DAY + dt.timedelta(seconds=k * 86_000 / rows)).isoformat(),
        )


def load_postgres(database: str, rows: int) -> float:
    start = time.perf_counter()
    fresh_postgres_database(database)
    connection = psycopg2.connect(**POSTGRES, dbname=database)
    with connection.cursor() as cursor:
        cursor.execute(candidate_table_ddl(TABLE, "TIMESTAMPTZ"))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for n, row in enumerate(generate(rows), 1):
            writer.writerow(["\\N" if value is None else value for value in row])
            if n % 100_000 == 0 or n == rows:
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {TABLE} ({', '.join(CANDIDATE_COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
                )
                buffer.seek(0)
                buffer.truncate()
        cursor.execute(f"ANALYZE {TABLE}")
    connection.commit()
    connection.close()
    return time.perf_counter() - start


def load_sqlite(path: str, rows: int) -> float:
    import pathlib

    start = time.perf_counter()
    pathlib.Path(path).unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.execute(candidate_table_ddl(TABLE, "TEXT"))
    placeholders = ", ".join("?" for _ in CANDIDATE_COLUMNS)
    connection.executemany(
        f"INSERT INTO {TABLE} ({', '.join(CANDIDATE_COLUMNS)}) VALUES ({placeholders})", generate(rows)
    )
    connection.commit()
    connection.close()
    return time.perf_counter() - start


def measure(kind: str, target: str) -> dict[str, Any]:
    """Run the sync's first step (select, check, record rejections, stage, plan batches) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.warehouse_scale", "measure", kind, target],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"measuring {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_here(kind: str, target: str) -> dict[str, Any]:
    from include.sync import steps
    from include.sync.dialect import dialect_for
    from include.sync.quality import CandidateChecks  # imported before the clock starts: a one-off cost
    from include.sync.settings import SyncSettings
    from include.sync.warehouse import Warehouse

    del CandidateChecks
    if kind == "postgres":
        import psycopg  # psycopg 3: the driver the Postgres provider's hook returns inside Airflow here

        connection = psycopg.connect(**POSTGRES, dbname=target)
    else:
        connection = sqlite3.connect(target)
    warehouse = Warehouse(connection, dialect_for(kind), SyncSettings().tables)
    run = steps.RunRequest(dag_run_id="bench-1m", interval=(DAY, DAY + dt.timedelta(days=1)))
    start = time.perf_counter()
    batches = steps.prepare(warehouse, SyncSettings(), run)
    seconds = time.perf_counter() - start
    row = warehouse.run("bench-1m") or {}
    connection.close()
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "batches": len(batches),
        "selected": row.get("selected"),
        "rejected": row.get("rejected"),
        "staged": row.get("staged"),
        "phases": json.loads(row.get("phase_seconds") or "{}"),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(_measure_here(sys.argv[2], sys.argv[3]), default=str))
    else:
        sys.exit(__doc__)
