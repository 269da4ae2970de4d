"""The warehouse side at scale: a million candidates (a few percent bad) selected, checked and staged by the sync's
first step, on PostgreSQL, MariaDB and SQLite, each measured in a fresh process for its time and peak memory. Then the
steady state: the same million converged (every staged row recorded as created), 1% of them changed since (half
renamed after creation, half rejected rows fixed in the feed), and the next run's selection and checks measured, in
mode create and then in mode upsert (the renamed rows planned as updates against the requests applied).

python -m bench.warehouse_scale measure postgres|mariadb|sqlite TARGET RUN_ID create|upsert   (TARGET: a database
name, or a SQLite file)
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import sqlalchemy as sa

from dev import PROJECT_DIR
from dev.demo_data import PMA, candidate_table_ddl
from dev.local_stack.databases import fresh_mariadb_database, fresh_postgres_database
from include.vocabulary import CANDIDATE_COLUMNS

DAY = dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc)
TABLE = "partner_relationship_candidates"
COLUMNS = ", ".join(CANDIDATE_COLUMNS)
DATABASE = "partner_sync_bench_scale"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root"}
# Rows per COPY (PostgreSQL) or LOAD DATA (MariaDB) statement.
CHUNK_ROWS = 100_000


def generate(rows: int, moment: Callable[[dt.datetime], str] = dt.datetime.isoformat) -> Iterator[tuple]:
    """Candidates updated during DAY; about 4% bad: account ids that lost a leading zero, lower-case sectors,
    blank names. `moment` writes updated_at as the warehouse's column takes it."""
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
            moment(DAY + dt.timedelta(seconds=k * 86_000 / rows)),
        )


def utc_without_offset(moment: dt.datetime) -> str:
    """A DATETIME(6) value: MariaDB rejects an offset, so UTC is written without one."""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


def text_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    """The rows in the text format that both PostgreSQL's COPY and MariaDB's LOAD DATA read by default (tabs between
    fields, one row a line, \\N for NULL, backslash escapes), CHUNK_ROWS rows a chunk. The generated values hold no
    tab, line break or backslash, so a chunk is joined as it is, which is most of the speed of the bulk load; if its
    counts of those characters say a value did hold one, it is joined again with every value escaped."""
    escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def joined(chunk: list[tuple], text: Callable[[Any], str]) -> str:
        return "".join("\t".join("\\N" if value is None else text(value) for value in row) + "\n" for row in chunk)

    rows = iter(rows)
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        plain = joined(chunk, str)
        expected = (sum(len(row) - 1 for row in chunk), len(chunk), sum(row.count(None) for row in chunk), 0)
        if tuple(map(plain.count, ("\t", "\n", "\\", "\r"))) == expected:
            yield plain
        else:
            yield joined(chunk, lambda value: str(value).translate(escapes))


# -- one function per warehouse for what only it does: an empty database, a DB-API connection, a bulk insert ----
def fresh_sqlite(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).unlink(missing_ok=True)


def connect_mariadb(database: str) -> Any:
    import MySQLdb

    # LOAD DATA LOCAL needs local_infile on the client (here) and on the server (the default of Debian's MariaDB).
    return MySQLdb.connect(**MARIADB, database=database, charset="utf8mb4", local_infile=True)


def copy_into_postgres(cursor: Any, rows: Iterable[tuple]) -> None:
    for chunk in text_chunks(rows):
        cursor.copy_expert(f"COPY {TABLE} ({COLUMNS}) FROM STDIN", io.StringIO(chunk))
    cursor.execute(f"ANALYZE {TABLE}")


def load_data_into_mariadb(cursor: Any, rows: Iterable[tuple]) -> None:
    """LOAD DATA LOCAL INFILE from a temporary file, a chunk at a time (faster than executemany's multi-row INSERTs:
    0.9 s against 1.8 s for 100,000 rows here). With LOCAL the server turns bad values into warnings instead of
    errors, so any warning fails the load."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv") as file:
        for chunk in text_chunks(rows):
            file.seek(0)
            file.truncate()
            file.write(chunk)
            file.flush()
            cursor.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {TABLE} CHARACTER SET utf8mb4 ({COLUMNS})", [file.name]
            )
            if cursor.connection.warning_count():
                cursor.execute("SHOW WARNINGS LIMIT 5")
                raise RuntimeError(f"LOAD DATA into {TABLE} warned: {cursor.fetchall()}")
    cursor.execute(f"ANALYZE TABLE {TABLE}")
    cursor.fetchall()


def insert_into_sqlite(cursor: Any, rows: Iterable[tuple]) -> None:
    placeholders = ", ".join("?" for _ in CANDIDATE_COLUMNS)
    cursor.executemany(f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ({placeholders})", rows)


@dataclass(frozen=True)
class Kind:
    """What differs between the warehouses the benchmark loads and measures; the flow is the same for all."""

    target: str  # the database (or SQLite file) of the benchmark
    url: Callable[[str], sa.URL]  # how the sync connects to a target
    timestamp_type: str  # updated_at as a user of this database would declare it
    moment: Callable[[dt.datetime], str]  # an updated_at as that column takes it
    fresh: Callable[[str], None]  # an empty target
    connect: Callable[[str], Any]  # a DB-API connection to the target, for the bulk load
    bulk_insert: Callable[[Any, Iterable[tuple]], None]  # the rows into TABLE, on a cursor of that connection


KINDS = {
    "postgres": Kind(
        target=DATABASE,
        # psycopg 3: the driver the Postgres provider's hook uses inside Airflow here
        url=lambda target: sa.URL.create(
            "postgresql+psycopg", POSTGRES["user"], None, POSTGRES["host"], POSTGRES["port"], target
        ),
        timestamp_type="TIMESTAMPTZ",
        moment=dt.datetime.isoformat,
        fresh=fresh_postgres_database,
        connect=lambda target: psycopg2.connect(**POSTGRES, dbname=target),
        bulk_insert=copy_into_postgres,
    ),
    "mariadb": Kind(
        target=DATABASE,
        # mysqlclient: the driver of the MySQL provider's hook
        url=lambda target: sa.URL.create(
            "mysql+mysqldb", MARIADB["user"], None, MARIADB["host"], MARIADB["port"], target
        ),
        timestamp_type="DATETIME(6)",
        moment=utc_without_offset,
        fresh=fresh_mariadb_database,
        connect=connect_mariadb,
        bulk_insert=load_data_into_mariadb,
    ),
    "sqlite": Kind(
        target=str(PROJECT_DIR / "test-artifacts" / "bench-warehouse.db"),
        url=lambda target: sa.URL.create("sqlite", database=target),
        timestamp_type="TEXT",
        moment=dt.datetime.isoformat,
        fresh=fresh_sqlite,
        connect=sqlite3.connect,
        bulk_insert=insert_into_sqlite,
    ),
}


def load(kind: str, target: str, rows: int) -> float:
    """A fresh target with `rows` generated candidates; the seconds it took."""
    facts = KINDS[kind]
    start = time.perf_counter()
    facts.fresh(target)
    connection = facts.connect(target)
    cursor = connection.cursor()
    cursor.execute(candidate_table_ddl(TABLE, facts.timestamp_type))
    facts.bulk_insert(cursor, generate(rows, facts.moment))
    connection.commit()
    connection.close()
    return time.perf_counter() - start


def every(candidate_id: sa.ColumnElement[Any], modulus: int, remainder: int) -> sa.ColumnElement[bool]:
    """The generated rows k with k % modulus == remainder (ids are "w" + k)."""
    return sa.cast(sa.func.substr(candidate_id, 2), sa.Integer) % modulus == remainder


def converge_and_change(kind: str, target: str, cold_run_id: str) -> float:
    """Record every row the cold run staged as created (as its batches would have), then change 1% of the feed.
    SQLAlchemy Core, as the sync itself: one spelling, compiled for each database, values bound."""
    from include.sync import dialect as db
    from include.sync.settings import SyncSettings
    from include.sync.warehouse import Schema

    start = time.perf_counter()
    schema = Schema(SyncSettings().tables)
    staging, outcomes = schema.staging, schema.outcomes
    candidates = sa.table(
        TABLE, *(sa.column(name, sa.Text) for name in ("candidate_id", "display_name", "associated_account_id"))
    )
    created = {
        "candidate_id": staging.c.candidate_id,
        "status": sa.literal("created"),
        "relationship_id": sa.literal("rs-") + sa.func.substr(staging.c.client_token, 7, 13),
        "attempts": sa.literal(1),
        "client_token": staging.c.client_token,
        "dag_run_id": staging.c.dag_run_id,
        "updated_at": db.db_time(),
        "candidate_updated_at": staging.c.candidate_updated_at,
        "fingerprint": staging.c.fingerprint,
        "request_json": staging.c.request_json,  # the request applied: what an upsert compares the row with
    }
    statements = [
        sa.insert(outcomes).from_select(
            list(created), sa.select(*created.values()).where(staging.c.dag_run_id == cold_run_id)
        ),
        sa.delete(staging).where(staging.c.dag_run_id == cold_run_id),
        # 0.5% renamed after their relationship was created, and 0.5% (a quarter of the rows whose account id lost a
        # leading zero, see generate) fixed in the feed.
        sa.update(candidates)
        .where(every(candidates.c.candidate_id, 200, 0))
        .values(display_name=candidates.c.display_name + " II"),
        sa.update(candidates)
        .where(every(candidates.c.candidate_id, 200, 7))
        .values(associated_account_id="0" + candidates.c.associated_account_id),
    ]
    engine = sa.create_engine(KINDS[kind].url(target))
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)
    engine.dispose()
    return time.perf_counter() - start


def measure(kind: str, target: str, run_id: str = "bench-1m", mode: str = "create") -> dict[str, Any]:
    """Run the sync's first step (select, check, record rejections, plan, stage, plan batches) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.warehouse_scale", "measure", kind, target, run_id, mode],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"measuring {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_here(kind: str, target: str, run_id: str, mode: str) -> dict[str, Any]:
    from include.sync import steps
    from include.sync.quality import CandidateChecks  # imported before the clock starts: a one-off cost
    from include.sync.settings import SyncSettings
    from include.sync.warehouse import Warehouse

    del CandidateChecks
    warehouse = Warehouse(sa.create_engine(KINDS[kind].url(target)), SyncSettings().tables)
    run = steps.RunRequest(
        dag_run_id=run_id, interval=(DAY, DAY + dt.timedelta(days=1)), max_reject_ratio=1.0, mode=mode
    )
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
        "plan": json.loads(row.get("quality_summary") or "{}").get("plan", {}),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(_measure_here(*sys.argv[2:6]), default=str))
    else:
        sys.exit(__doc__)
