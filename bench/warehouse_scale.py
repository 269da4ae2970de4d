"""The warehouse side at scale: a million candidates (a few percent bad) selected, checked and staged by the sync's
first step, on PostgreSQL and on SQLite, each measured in a fresh process for its time and peak memory. Then the
steady state: the same million converged (every staged row recorded as created), 1% of them changed since (half
renamed after creation, half rejected rows fixed in the feed), and the next run's selection and checks measured.

python -m bench.warehouse_scale measure postgres|sqlite TARGET RUN_ID   (TARGET: a database name, or a SQLite file)
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

from dev.demo_data import PMA, candidate_table_ddl
from dev.local_stack.databases import fresh_postgres_database
from include.sync.warehouse import CANDIDATE_COLUMNS

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


def every(modulus: int, remainder: int) -> str:
    """The generated rows k with k % modulus == remainder (ids are "w" + k), in SQL both databases read."""
    return f"MOD(CAST(SUBSTR(candidate_id, 2) AS INTEGER), {modulus}) = {remainder}"


def converge_and_change(kind: str, target: str, cold_run_id: str) -> float:
    """Record every row the cold run staged as created (as its batches would have), then change 1% of the feed."""
    start = time.perf_counter()
    connection = psycopg2.connect(**POSTGRES, dbname=target) if kind == "postgres" else sqlite3.connect(target)
    now = "CURRENT_TIMESTAMP" if kind == "postgres" else "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"
    placeholder = "%s" if kind == "postgres" else "?"
    statements = [
        (
            "INSERT INTO partner_relationship_outcomes (candidate_id, status, relationship_id, attempts, client_token,"
            " dag_run_id, updated_at, candidate_updated_at, fingerprint)"
            f" SELECT candidate_id, 'created', 'rs-' || SUBSTR(client_token, 7, 13), 1, client_token, dag_run_id, {now},"
            f" candidate_updated_at, fingerprint FROM partner_relationship_staging WHERE dag_run_id = {placeholder}",
            [cold_run_id],
        ),
        (f"DELETE FROM partner_relationship_staging WHERE dag_run_id = {placeholder}", [cold_run_id]),
        # 0.5% renamed after their relationship was created, and 0.5% (a quarter of the rows whose account id lost a
        # leading zero, see generate) fixed in the feed.
        (f"UPDATE {TABLE} SET display_name = display_name || ' II' WHERE {every(200, 0)}", []),
        (f"UPDATE {TABLE} SET associated_account_id = '0' || associated_account_id WHERE {every(200, 7)}", []),
    ]
    if kind == "sqlite":
        connection.create_function("MOD", 2, lambda a, b: a % b, deterministic=True)
    cursor = connection.cursor()
    for statement, params in statements:
        cursor.execute(statement, params)
    connection.commit()
    connection.close()
    return time.perf_counter() - start


def measure(kind: str, target: str, run_id: str = "bench-1m") -> dict[str, Any]:
    """Run the sync's first step (select, check, record rejections, stage, plan batches) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.warehouse_scale", "measure", kind, target, run_id],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"measuring {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_here(kind: str, target: str, run_id: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from include.sync import steps
    from include.sync.quality import CandidateChecks  # imported before the clock starts: a one-off cost
    from include.sync.settings import SyncSettings
    from include.sync.warehouse import Warehouse

    del CandidateChecks
    if kind == "postgres":
        # psycopg 3: the driver the Postgres provider's hook uses inside Airflow here
        url = sa.URL.create("postgresql+psycopg", POSTGRES["user"], None, POSTGRES["host"], POSTGRES["port"], target)
    else:
        url = sa.URL.create("sqlite", database=target)
    warehouse = Warehouse(sa.create_engine(url), SyncSettings().tables)
    run = steps.RunRequest(dag_run_id=run_id, interval=(DAY, DAY + dt.timedelta(days=1)), max_reject_ratio=1.0)
    start = time.perf_counter()
    batches = steps.prepare(warehouse, SyncSettings(), run)
    seconds = time.perf_counter() - start
    row = warehouse.run(run_id) or {}
    warehouse.close()
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "batches": len(batches),
        "selected": row.get("selected"),
        "rejected": row.get("rejected"),
        "staged": row.get("staged"),
        "skipped_done": row.get("skipped_done"),
        "changed_after_done": row.get("changed_after_done"),
        "phases": json.loads(row.get("phase_seconds") or "{}"),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(_measure_here(sys.argv[2], sys.argv[3], sys.argv[4]), default=str))
    else:
        sys.exit(__doc__)
