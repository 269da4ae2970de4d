"""The sync's tables and every statement it runs on them, over one DB-API connection.

Values are always bound; table names come from validated settings. Writes are UPSERTs keyed by candidate and DAG
run, so a retried task or a re-run writes the same rows again instead of adding more. Times that decide who may
send (claims) come from the warehouse's clock, never a worker's. Transient database errors (a lock wait, a deadlock,
"database is locked") are retried; anything else propagates as the database said it, never as an API outcome.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from include.sync.dialect import Dialect
from include.sync.settings import Tables

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# Statuses. `claimed` (current state only) marks a candidate whose call is under way in the named DAG run;
# `pending` (current state only) one whose call was stopped by an account-level error (credentials, access, clock,
# endpoint, throttling) and that the next run sends; `dead_letter` one that failed in `retry_budget` runs;
# `skipped` (history only) a staged candidate that another run had claimed or finished first.
CREATED, ALREADY_EXISTS, REJECTED, FAILED, DEAD_LETTER, DRY_RUN, CLAIMED, PENDING, SKIPPED = (
    "created",
    "already_exists",
    "rejected",
    "failed",
    "dead_letter",
    "dry_run",
    "claimed",
    "pending",
    "skipped",
)
DONE = (CREATED, ALREADY_EXISTS)
# The same, as SQL: `status IN {DONE_SQL}`. A done state is never overwritten, and never sent again.
DONE_SQL = f"('{CREATED}', '{ALREADY_EXISTS}')"
CANDIDATE_COLUMNS = (
    "candidate_id",
    "catalog",
    "association_type",
    "program_management_account_identifier",
    "associated_account_id",
    "display_name",
    "resale_account_model",
    "sector",
    "account_scope",
    "support_plan",
    "tags",
    "updated_at",
)


def candidate_table_ddl(table: str, timestamp_type: str = "TEXT") -> str:
    """The candidates table the sync expects (the demo and the tests create it; a user's may differ in types)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (candidate_id TEXT PRIMARY KEY, catalog TEXT,"
        " association_type TEXT, program_management_account_identifier TEXT, associated_account_id TEXT,"
        " display_name TEXT, resale_account_model TEXT, sector TEXT, account_scope TEXT, support_plan TEXT,"
        f" tags TEXT, updated_at {timestamp_type})"
    )


RESULT_COLUMNS = (
    "candidate_id",
    "status",
    "relationship_id",
    "relationship_arn",
    "error_code",
    "error_message",
    "retryable",
    "attempts",
    "client_token",
    "dag_run_id",
    "updated_at",
    "candidate_updated_at",
    "fingerprint",
    "failed_runs",
)
# An upsert's assignments of a result row (attempts are added up, not replaced).
RESULT_UPDATES = ", ".join(
    f"{name} = excluded.{name}" for name in RESULT_COLUMNS if name not in ("candidate_id", "attempts")
)
# The run row's counts, in the order a reader follows a run.
RUN_COUNT_COLUMNS = (
    "selected",
    "in_interval",
    "skipped_done",
    "changed_after_done",
    "rejected",
    "staged",
    "created",
    "already_exists",
    "failed_retryable",
    "failed_permanent",
    "dead_letter",
    "dry_run",
    "skipped",
    "unfinished",
)
# The prior state each scanned candidate carries, from the current-state table.
PRIOR_COLUMNS = ("status", "fingerprint", "retryable", "claimed_at", "failed_runs")
# Values per IN (...) list: far below every database's limit on bound parameters.
IN_LIST_SIZE = 500
# SQLSTATEs of errors that a second try of the same transaction can get past: serialization failure, deadlock,
# lock not available, statement cancelled (lock_timeout/statement_timeout).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})


def is_transient(exc: BaseException) -> bool:
    """A database error that the same statement may get past on a second try (a lock, not a broken query)."""
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    if code in TRANSIENT_SQLSTATES:
        return True
    text = str(exc).lower()
    return type(exc).__name__ == "OperationalError" and ("database is locked" in text or "is busy" in text)


def retry_transient(method: F) -> F:
    """Retry a whole warehouse transaction on lock waits and deadlocks; past the budget the error propagates."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(6),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=5),
            before_sleep=lambda state: log.warning(
                "warehouse: %s (try %d); trying again", state.outcome.exception(), state.attempt_number
            ),
            reraise=True,
        )
        return retrying(method, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class CandidatesTableError(Exception):
    """The candidates table (or a column of it) is missing: nothing can be selected until it is fixed."""


@dataclass(frozen=True)
class Outcome:
    candidate_id: str
    status: str
    client_token: str | None = None
    relationship_id: str | None = None
    relationship_arn: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None
    attempts: int = 0
    request_json: str | None = None
    candidate_updated_at: Any = None
    fingerprint: str | None = None
    failed_runs: int = 0


class Warehouse:
    def __init__(self, connection: Any, dialect: Dialect, tables: Tables):
        self.connection = connection
        self.dialect = dialect
        self.tables = tables
        # Autocommit, with explicit transactions (see transaction()): a read never leaves a transaction open that
        # would hold locks while the task waits on the API.
        if dialect.name == "sqlite":
            connection.isolation_level = None
            # WAL: a long read (the selection) does not block other tasks' writes; and wait for locks, don't fail.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")
        else:
            connection.autocommit = True
            connection.cursor().execute("SET TIME ZONE 'UTC'")

    # -- plumbing -------------------------------------------------------------------------------------------------
    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.connection.cursor()
        cursor.execute(self.dialect.sql(statement), tuple(params))
        return cursor

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.dialect.executemany(self.connection.cursor(), statement, [tuple(row) for row in rows])

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.execute(statement, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator[None]:
        """One transaction; with lock=True on SQLite it holds the write lock from the start (BEGIN IMMEDIATE)."""
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if lock and self.dialect.name == "sqlite" else "BEGIN")
        try:
            yield
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see, not a failed rollback
                cursor.execute("ROLLBACK")
            raise

    def db_now(self) -> dt.datetime:
        """The warehouse's clock: every worker's claims and timeouts are judged by it, not by their own clocks."""
        value = self.execute(f"SELECT {self.dialect.now_sql}").fetchone()[0]
        return self.dialect.parse_time(value)  # type: ignore[return-value]

    def now(self) -> Any:
        return self.dialect.bind_time(self.db_now())

    # -- schema ---------------------------------------------------------------------------------------------------
    @retry_transient
    def create_tables(self) -> None:
        ts, boolean, t = self.dialect.timestamp_type, self.dialect.boolean_type, self.tables
        result_columns = f"""
            status TEXT NOT NULL,
            relationship_id TEXT,
            relationship_arn TEXT,
            error_code TEXT,
            error_message TEXT,
            retryable {boolean},
            attempts INTEGER NOT NULL DEFAULT 0,
            client_token TEXT,
            dag_run_id TEXT NOT NULL,
            updated_at {ts} NOT NULL,
            candidate_updated_at TEXT,
            fingerprint TEXT,
            failed_runs INTEGER NOT NULL DEFAULT 0"""
        counts = ",\n".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in RUN_COUNT_COLUMNS)
        bare = {name: getattr(t, name).split(".")[-1] for name in ("outcomes", "staging", "attempts")}
        statements = [
            f"CREATE TABLE IF NOT EXISTS {t.outcomes} (candidate_id TEXT PRIMARY KEY, {result_columns},"
            f" claimed_at {ts})",
            f"CREATE TABLE IF NOT EXISTS {t.attempts} (candidate_id TEXT NOT NULL, {result_columns},"
            " request_json TEXT, PRIMARY KEY (dag_run_id, candidate_id))",
            f"""CREATE TABLE IF NOT EXISTS {t.runs} (
                dag_run_id TEXT PRIMARY KEY,
                data_interval_start {ts},
                data_interval_end {ts},
                is_dry_run {boolean} NOT NULL,
                {counts},
                quality_summary TEXT,
                phase_seconds TEXT,
                staged_at {ts},
                started_at {ts} NOT NULL,
                ended_at {ts})""",
            f"""CREATE TABLE IF NOT EXISTS {t.staging} (
                dag_run_id TEXT NOT NULL,
                candidate_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                request_json TEXT NOT NULL,
                client_token TEXT NOT NULL,
                candidate_updated_at TEXT,
                fingerprint TEXT,
                prior_failed_runs INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (dag_run_id, candidate_id))""",
            f"CREATE TABLE IF NOT EXISTS {t.rate_limit} (limiter_key TEXT PRIMARY KEY, next_free_at DOUBLE PRECISION"
            " NOT NULL)",
        ]
        indexes = [
            f"CREATE INDEX IF NOT EXISTS {bare['staging']}_seq ON {t.staging} (dag_run_id, seq)",
            # Who holds a relationship identity (its token) or a relationship: the already-linked rule's look-ups.
            f"CREATE INDEX IF NOT EXISTS {bare['outcomes']}_token ON {t.outcomes} (client_token)",
            f"CREATE INDEX IF NOT EXISTS {bare['outcomes']}_relationship ON {t.outcomes} (relationship_id)",
            f"CREATE INDEX IF NOT EXISTS {bare['attempts']}_updated ON {t.attempts} (updated_at)",
        ]
        # Tables made by an earlier version gain the columns added since (they are all nullable or defaulted).
        added = {
            t.outcomes: {"fingerprint": "TEXT", "failed_runs": "INTEGER NOT NULL DEFAULT 0"},
            t.attempts: {"fingerprint": "TEXT", "failed_runs": "INTEGER NOT NULL DEFAULT 0"},
            t.staging: {"fingerprint": "TEXT", "prior_failed_runs": "INTEGER NOT NULL DEFAULT 0"},
            t.runs: {"in_interval": "INTEGER NOT NULL DEFAULT 0", "dead_letter": "INTEGER NOT NULL DEFAULT 0"},
        }
        for attempt in (1, 2):
            try:
                with self.transaction():
                    for statement in statements:
                        self.execute(statement)
                    for table, columns in added.items():
                        present = self.column_names(table)
                        for name, kind in columns.items():
                            if name not in present:
                                self.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    for statement in indexes:
                        self.execute(statement)
                return
            except Exception:
                # Two runs creating the tables at the same moment: PostgreSQL lets one of them fail; the second
                # attempt finds the tables there.
                if attempt == 2:
                    raise

    def column_names(self, table: str) -> set[str]:
        cursor = self.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        names = {str(column[0]).lower() for column in cursor.description}
        cursor.fetchall()
        return names

    def check_candidates_table(self, columns: Sequence[str], expected_ddl: str) -> None:
        """Fail at once, naming what is missing, when the candidates table or one of its columns is not there."""
        table = self.tables.candidates
        how = (
            f"The sync reads {table} with these columns (types may differ: numbers, JSON and timestamp columns are"
            f" read as well):\n  {expected_ddl}\nA view can map another table onto it, e.g. CREATE VIEW {table} AS"
            " SELECT crm_id AS candidate_id, ... FROM crm.partner_candidates; or point partner_sync_candidates_table"
            " at it."
        )
        try:
            present = self.column_names(table)
        except Exception as exc:
            raise CandidatesTableError(
                f"The candidates table {table} cannot be read ({type(exc).__name__}: {str(exc).strip()}).\n{how}"
            ) from exc
        missing = [name for name in columns if name not in present]
        if missing:
            raise CandidatesTableError(f"The candidates table {table} has no column(s) {', '.join(missing)}.\n{how}")

    # -- selection ------------------------------------------------------------------------------------------------
    def scan_candidates(
        self, columns: Sequence[str], candidate_ids: Sequence[str], chunk_rows: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Every candidate (or the given ids) in chunks, each row with its prior state as `prior_<column>`.

        The whole table, not a time window: which rows need work is decided by their state and fingerprint, so late
        rows, rows without a usable updated_at and intervals never run are all seen. Ids are joined as the sync
        stores them (trimmed text), whatever the column's type."""
        t, d = self.tables, self.dialect
        key = d.key("c.candidate_id")
        selected = ", ".join(
            [*(f"c.{name}" for name in columns), *(f"o.{name} AS prior_{name}" for name in PRIOR_COLUMNS)]
        )
        where, params = "", list(candidate_ids)
        if candidate_ids:
            where = f" WHERE {key} IN ({', '.join('?' for _ in candidate_ids)})"
        statement = (
            f"SELECT {selected} FROM {t.candidates} c LEFT JOIN {t.outcomes} o ON o.candidate_id = {key}{where}"
            " ORDER BY c.candidate_id"
        )
        cursor = self.dialect.streaming_cursor(self.connection)
        try:
            cursor.execute(self.dialect.sql(statement), tuple(params))
            names = None
            while rows := cursor.fetchmany(chunk_rows):
                names = names or [column[0] for column in cursor.description]
                yield [dict(zip(names, row, strict=True)) for row in rows]
        finally:
            # Closing a server-side cursor whose query failed raises again (psycopg2: InvalidCursorName) and would
            # hide the real error.
            with contextlib.suppress(Exception):
                cursor.close()

    def duplicate_ids(self) -> tuple[dict[str, int], int]:
        """Ids that more than one candidate row carries (a view without a primary key), with their counts; and how
        many rows have no usable id (NULL or blank)."""
        key = self.dialect.key("candidate_id")
        rows = self.execute(
            f"SELECT {key}, COUNT(*) FROM {self.tables.candidates} GROUP BY {key}"
            f" HAVING COUNT(*) > 1 OR {key} IS NULL OR {key} = ''"
        ).fetchall()
        duplicates = {k: n for k, n in rows if k not in (None, "")}
        return duplicates, sum(n for k, n in rows if k in (None, ""))

    def linked_identities(self, tokens: Sequence[str]) -> dict[str, str]:
        """Which of these relationship identities (their deterministic client tokens) a candidate has already
        created: token → that candidate. The identity recorded when the relationship was created, not the feed's
        current row, so a corrected feed cannot hand one relationship to two candidates."""
        found: dict[str, str] = {}
        wanted = sorted(set(tokens))
        for start in range(0, len(wanted), IN_LIST_SIZE):
            part = wanted[start : start + IN_LIST_SIZE]
            rows = self.execute(
                f"SELECT client_token, candidate_id FROM {self.tables.outcomes} WHERE client_token IN"
                f" ({', '.join('?' for _ in part)}) AND status IN {DONE_SQL}",
                part,
            ).fetchall()
            found.update(dict(rows))
        return found

    def relationship_holder(self, relationship_id: str, candidate_id: str) -> str | None:
        """The other candidate recorded with this relationship, if any."""
        row = self.execute(
            f"SELECT candidate_id FROM {self.tables.outcomes} WHERE relationship_id = ? AND candidate_id <> ?"
            f" AND status IN {DONE_SQL}",
            [relationship_id, candidate_id],
        ).fetchone()
        return None if row is None else row[0]

    # -- staging --------------------------------------------------------------------------------------------------
    @retry_transient
    def forget_unfinished(self, dag_run_id: str) -> None:
        """A cleared or backfilled run keeps its run id: what its earlier try recorded short of a relationship
        (failures, rejections, skips) is evaluated again, so it must not count as recorded."""
        with self.transaction():
            self.execute(
                f"DELETE FROM {self.tables.attempts} WHERE dag_run_id = ? AND status NOT IN {DONE_SQL}",
                [dag_run_id],
            )

    @retry_transient
    def clear_staging(self, dag_run_id: str) -> None:
        with self.transaction():
            self.execute(f"DELETE FROM {self.tables.staging} WHERE dag_run_id = ?", [dag_run_id])

    @retry_transient
    def stage(self, dag_run_id: str, rows: Sequence[tuple]) -> None:
        """rows: (candidate_id, seq, request_json, client_token, candidate_updated_at, fingerprint, prior_failed_runs);
        seq numbers rows from 0."""
        with self.transaction():
            self.executemany(
                f"INSERT INTO {self.tables.staging} (dag_run_id, candidate_id, seq, request_json, client_token,"
                " candidate_updated_at, fingerprint, prior_failed_runs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(dag_run_id, *row) for row in rows],
            )

    def batch(self, dag_run_id: str, first: int, end: int) -> list[dict[str, Any]]:
        """Staged rows first <= seq < end that this run has not recorded an outcome for yet."""
        t = self.tables
        return self.rows(
            f"SELECT s.candidate_id, s.request_json, s.client_token, s.candidate_updated_at, s.fingerprint,"
            f" s.prior_failed_runs FROM {t.staging} s"
            f" LEFT JOIN {t.attempts} a ON a.dag_run_id = s.dag_run_id AND a.candidate_id = s.candidate_id"
            " WHERE s.dag_run_id = ? AND s.seq >= ? AND s.seq < ? AND a.candidate_id IS NULL ORDER BY s.seq",
            [dag_run_id, first, end],
        )

    # -- claims and outcomes --------------------------------------------------------------------------------------
    @retry_transient
    def claim(self, dag_run_id: str, candidate_id: str, client_token: str, claim_timeout_seconds: float) -> bool:
        """Take the candidate for this run before calling the API. False: it is done, or another live run has it.
        Both the claim's time and the staleness of other claims are the warehouse's clock."""
        t, d = self.tables, self.dialect
        with self.transaction(lock=True):
            now = self.db_now()
            stale = d.bind_time(now - dt.timedelta(seconds=claim_timeout_seconds))
            cursor = self.execute(
                f"INSERT INTO {t.outcomes} (candidate_id, status, client_token, dag_run_id, updated_at, claimed_at)"
                f" VALUES (?, '{CLAIMED}', ?, ?, ?, ?)"
                f" ON CONFLICT (candidate_id) DO UPDATE SET status = '{CLAIMED}', client_token = excluded.client_token,"
                " dag_run_id = excluded.dag_run_id, updated_at = excluded.updated_at, claimed_at = excluded.claimed_at"
                f" WHERE {t.outcomes}.status NOT IN {DONE_SQL}"
                f" AND ({t.outcomes}.status <> '{CLAIMED}' OR {t.outcomes}.dag_run_id = excluded.dag_run_id"
                f" OR {t.outcomes}.claimed_at < ?)",
                [candidate_id, client_token, dag_run_id, d.bind_time(now), d.bind_time(now), stale],
            )
            return cursor.rowcount == 1

    @retry_transient
    @retry_transient
    def leave_pending(
        self, dag_run_id: str, rows: Sequence[dict[str, Any]], error_code: str, error_message: str
    ) -> None:
        """Mark staged candidates that a stopped batch did not send as `pending`, saying why (an account-level error):
        its own claim is given back, and a candidate another run holds or finished is left alone."""
        t = self.tables
        now = self.now()
        with self.transaction():
            self.executemany(
                f"INSERT INTO {t.outcomes} (candidate_id, status, error_code, error_message, retryable, client_token,"
                f" dag_run_id, updated_at, fingerprint) VALUES (?, '{PENDING}', ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (candidate_id) DO UPDATE SET status = '{PENDING}', error_code = excluded.error_code,"
                " error_message = excluded.error_message, retryable = excluded.retryable,"
                " client_token = excluded.client_token, dag_run_id = excluded.dag_run_id,"
                " updated_at = excluded.updated_at, fingerprint = excluded.fingerprint, claimed_at = NULL"
                f" WHERE {t.outcomes}.status NOT IN {DONE_SQL}"
                f" AND ({t.outcomes}.status <> '{CLAIMED}' OR {t.outcomes}.dag_run_id = excluded.dag_run_id)",
                [
                    (
                        row["candidate_id"],
                        error_code,
                        error_message[:2000],
                        self.dialect.bind_bool(True),
                        row["client_token"],
                        dag_run_id,
                        now,
                        row["fingerprint"],
                    )
                    for row in rows
                ],
            )

    def record(self, dag_run_id: str, outcome: Outcome, *, current_state: bool = True) -> None:
        """Write one candidate's outcome as soon as it is known: history always, current state unless dry run."""
        self.record_many(dag_run_id, [outcome], current_state=current_state)

    @retry_transient
    def record_many(self, dag_run_id: str, outcomes: Sequence[Outcome], *, current_state: bool) -> None:
        if not outcomes:
            return
        t, d = self.tables, self.dialect
        now = self.now()
        rows = [
            [
                outcome.candidate_id,
                outcome.status,
                outcome.relationship_id,
                outcome.relationship_arn,
                outcome.error_code,
                (outcome.error_message or "")[:2000] or None,
                d.bind_bool(outcome.retryable),
                outcome.attempts,
                outcome.client_token,
                dag_run_id,
                now,
                None if outcome.candidate_updated_at is None else str(outcome.candidate_updated_at),
                outcome.fingerprint,
                outcome.failed_runs,
            ]
            for outcome in outcomes
        ]
        columns = ", ".join(RESULT_COLUMNS)
        placeholders = ", ".join("?" for _ in RESULT_COLUMNS)
        updates = RESULT_UPDATES
        with self.transaction():
            self.executemany(
                f"INSERT INTO {t.attempts} ({columns}, request_json) VALUES ({placeholders}, ?)"
                f" ON CONFLICT (dag_run_id, candidate_id) DO UPDATE SET {updates}, attempts = excluded.attempts,"
                " request_json = excluded.request_json",
                [[*row, outcome.request_json] for row, outcome in zip(rows, outcomes, strict=True)],
            )
            if current_state:
                self.executemany(
                    f"INSERT INTO {t.outcomes} ({columns}) VALUES ({placeholders})"
                    f" ON CONFLICT (candidate_id) DO UPDATE SET {updates},"
                    f" attempts = {t.outcomes}.attempts + excluded.attempts, claimed_at = NULL"
                    # A created relationship is never overwritten by a later failure, rejection or stale run.
                    f" WHERE {t.outcomes}.status NOT IN {DONE_SQL}"
                    f" OR excluded.status IN {DONE_SQL}",
                    rows,
                )

    @retry_transient
    def promote_rejections(self, dag_run_id: str) -> None:
        """Make this run's rejections (recorded in its history while the gate was undecided) the current state."""
        t = self.tables
        columns = ", ".join(RESULT_COLUMNS)
        with self.transaction():
            self.execute(
                f"INSERT INTO {t.outcomes} ({columns}) SELECT {columns} FROM {t.attempts}"
                f" WHERE dag_run_id = ? AND status = '{REJECTED}'"
                f" ON CONFLICT (candidate_id) DO UPDATE SET {RESULT_UPDATES}, claimed_at = NULL"
                f" WHERE {t.outcomes}.status NOT IN ('{CREATED}', '{ALREADY_EXISTS}', '{CLAIMED}')",
                [dag_run_id],
            )

    # -- runs -----------------------------------------------------------------------------------------------------
    @retry_transient
    def start_run(self, dag_run_id: str, interval: tuple[dt.datetime, dt.datetime] | None, dry_run: bool) -> bool:
        """Open (or reopen) the run's row; True when the run had started before (a cleared run or a retry)."""
        d = self.dialect
        start, end = (None, None) if interval is None else (d.bind_time(interval[0]), d.bind_time(interval[1]))
        with self.transaction():
            existed = (
                self.execute(f"SELECT 1 FROM {self.tables.runs} WHERE dag_run_id = ?", [dag_run_id]).fetchone()
                is not None
            )
            self.execute(
                f"INSERT INTO {self.tables.runs} (dag_run_id, data_interval_start, data_interval_end, is_dry_run,"
                " started_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (dag_run_id) DO UPDATE SET"
                " data_interval_start = excluded.data_interval_start, data_interval_end = excluded.data_interval_end,"
                " is_dry_run = excluded.is_dry_run, staged_at = NULL, ended_at = NULL",
                [dag_run_id, start, end, d.bind_bool(dry_run), self.now()],
            )
        return existed

    @retry_transient
    def update_run(self, dag_run_id: str, **values: Any) -> None:
        allowed = {*RUN_COUNT_COLUMNS, "quality_summary", "phase_seconds", "staged_at", "ended_at"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown run columns {sorted(unknown)}")
        bound = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values.values()]
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self.transaction():
            self.execute(f"UPDATE {self.tables.runs} SET {assignments} WHERE dag_run_id = ?", [*bound, dag_run_id])

    def run(self, dag_run_id: str) -> dict[str, Any] | None:
        rows = self.rows(f"SELECT * FROM {self.tables.runs} WHERE dag_run_id = ?", [dag_run_id])
        return rows[0] if rows else None

    def run_counts(self, dag_run_id: str) -> dict[str, int]:
        """What this run's history holds, per status (failures split by retryable), plus staged rows left over."""
        t = self.tables
        cursor = self.execute(
            f"SELECT status, retryable, COUNT(*) FROM {t.attempts} WHERE dag_run_id = ? GROUP BY status, retryable",
            [dag_run_id],
        )
        counts = dict.fromkeys(
            (CREATED, ALREADY_EXISTS, REJECTED, DRY_RUN, SKIPPED, DEAD_LETTER, "failed_retryable", "failed_permanent"),
            0,
        )
        for status, retryable, count in cursor.fetchall():
            key = status if status != FAILED else ("failed_retryable" if retryable else "failed_permanent")
            counts[key] = counts.get(key, 0) + count
        cursor = self.execute(
            f"SELECT COUNT(*) FROM {t.staging} s LEFT JOIN {t.attempts} a ON a.dag_run_id = s.dag_run_id"
            " AND a.candidate_id = s.candidate_id WHERE s.dag_run_id = ? AND a.candidate_id IS NULL",
            [dag_run_id],
        )
        counts["unfinished"] = cursor.fetchone()[0]
        return counts

    def run_candidates(self, dag_run_id: str, status: str, limit: int = 20) -> list[str]:
        """Some of the candidates this run recorded with a status, for the run's summary."""
        rows = self.execute(
            f"SELECT candidate_id FROM {self.tables.attempts} WHERE dag_run_id = ? AND status = ?"
            " ORDER BY candidate_id LIMIT ?",
            [dag_run_id, status, limit],
        ).fetchall()
        return [row[0] for row in rows]

    @retry_transient
    def prune(self, retention_days: float) -> None:
        """Delete history and run rows older than the retention, and staging left by runs that ended or died."""
        t, d = self.tables, self.dialect
        with self.transaction():
            self.execute(
                f"DELETE FROM {t.staging} WHERE dag_run_id IN (SELECT dag_run_id FROM {t.runs}"
                " WHERE ended_at IS NOT NULL)"
            )
            if retention_days > 0:
                cutoff = d.bind_time(self.db_now() - dt.timedelta(days=retention_days))
                self.execute(f"DELETE FROM {t.attempts} WHERE updated_at < ?", [cutoff])
                self.execute(
                    f"DELETE FROM {t.staging} WHERE dag_run_id IN (SELECT dag_run_id FROM {t.runs}"
                    " WHERE started_at < ?)",
                    [cutoff],
                )
                self.execute(f"DELETE FROM {t.runs} WHERE started_at < ?", [cutoff])
