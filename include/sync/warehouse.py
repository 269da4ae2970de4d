"""The sync's tables and every statement it runs on them, over one DB-API connection.

Values are always bound; table names come from validated settings. Writes are UPSERTs keyed by candidate and DAG
run, so a retried task or a re-run writes the same rows again instead of adding more.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from include.partner_central.relationship_request import pma_id
from include.sync.dialect import Dialect
from include.sync.settings import Tables

# Statuses. `claimed` (current state only) marks a candidate whose call is under way in the named DAG run;
# `skipped` (history only) a staged candidate that another run had claimed or finished first.
CREATED, ALREADY_EXISTS, REJECTED, FAILED, DRY_RUN, CLAIMED, SKIPPED = (
    "created",
    "already_exists",
    "rejected",
    "failed",
    "dry_run",
    "claimed",
    "skipped",
)
DONE = (CREATED, ALREADY_EXISTS)
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
)
# The run row's counts, in the order a reader follows a run.
RUN_COUNT_COLUMNS = (
    "selected",
    "skipped_done",
    "changed_after_done",
    "rejected",
    "staged",
    "created",
    "already_exists",
    "failed_retryable",
    "failed_permanent",
    "dry_run",
    "skipped",
    "unfinished",
)


# A temporary table (one per connection) of the accounts whose links linked_identities looks up.
LINK_ACCOUNTS = "partner_sync_link_accounts"


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

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator[None]:
        """One transaction; with lock=True on SQLite it holds the write lock from the start (BEGIN IMMEDIATE)."""
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if lock and self.dialect.name == "sqlite" else "BEGIN")
        try:
            yield
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise

    def now(self) -> Any:
        return self.dialect.bind_time(dt.datetime.now(dt.timezone.utc))

    # -- schema ---------------------------------------------------------------------------------------------------
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
            candidate_updated_at TEXT"""
        counts = ",\n".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in RUN_COUNT_COLUMNS)
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
                PRIMARY KEY (dag_run_id, candidate_id))""",
            f"CREATE INDEX IF NOT EXISTS {t.staging.split('.')[-1]}_seq ON {t.staging} (dag_run_id, seq)",
            f"CREATE TABLE IF NOT EXISTS {t.rate_limit} (limiter_key TEXT PRIMARY KEY, next_free_at DOUBLE PRECISION"
            " NOT NULL)",
        ]
        for attempt in (1, 2):
            try:
                with self.transaction():
                    for statement in statements:
                        self.execute(statement)
                return
            except Exception:
                # Two runs creating the tables at the same moment: PostgreSQL lets one of them fail; the second
                # attempt finds the tables there.
                if attempt == 2:
                    raise

    # -- selection ------------------------------------------------------------------------------------------------
    def select_candidates(
        self,
        *,
        interval: tuple[dt.datetime, dt.datetime] | None,
        candidate_ids: Sequence[str] | None,
        limit: int | None,
        claim_timeout_seconds: float,
        chunk_rows: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """The run's candidates in chunks: those updated in the interval (all pending ones without an interval, or
        the given ids), plus every retryable failure and abandoned claim. Each row carries its prior state."""
        t, d = self.tables, self.dialect
        columns = ", ".join(f"c.{name}" for name in CANDIDATE_COLUMNS)
        stale = d.bind_time(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=claim_timeout_seconds))
        retry = f"(o.status = '{FAILED}' AND o.retryable = ?) OR (o.status = '{CLAIMED}' AND o.claimed_at < ?)"
        params: list[Any] = [d.bind_bool(True), stale]
        if candidate_ids:
            wanted = f"c.candidate_id IN ({', '.join('?' for _ in candidate_ids)})"
            where = f"{wanted} AND (o.status IS NULL OR o.status <> '{CLAIMED}' OR {retry})"
            params = [*candidate_ids, *params]
        elif interval is None:
            where = f"o.status IS NULL OR o.status NOT IN ('{CLAIMED}', '{CREATED}', '{ALREADY_EXISTS}') OR {retry}"
        else:
            in_interval = (
                f"{d.timestamp('c.updated_at')} >= {d.timestamp_param()} AND {d.timestamp('c.updated_at')}"
                f" < {d.timestamp_param()}"
            )
            where = f"({in_interval}) OR {retry}"
            params = [d.bind_time(interval[0]), d.bind_time(interval[1]), *params]
        statement = (
            f"SELECT {columns}, o.status AS prior_status, o.candidate_updated_at AS prior_candidate_updated_at"
            f" FROM {t.candidates} c LEFT JOIN {t.outcomes} o ON o.candidate_id = c.candidate_id"
            f" WHERE {where} ORDER BY c.candidate_id"
        )
        if limit:
            statement += " LIMIT ?"
            params.append(limit)
        cursor = self.dialect.streaming_cursor(self.connection)
        try:
            cursor.execute(self.dialect.sql(statement), tuple(params))
            while rows := cursor.fetchmany(chunk_rows):
                names = [column[0] for column in cursor.description]
                yield [dict(zip(names, row, strict=True)) for row in rows]
        finally:
            cursor.close()

    def linked_identities(self, identities: Sequence[tuple[str, str, str, str]]) -> dict[tuple, str]:
        """Which of these relationship identities some other candidate already created: identity → candidate_id.

        One join per call, through a temporary table of the accounts: the candidates table (the user's) may have no
        index on its account column, so each query scans it, and one query per few hundred accounts would scan a
        large feed thousands of times."""
        t = self.tables
        found: dict[tuple, str] = {}
        accounts = sorted({identity[2] for identity in identities})
        if not accounts:
            return found
        # One transaction: behind a pooler in transaction mode, the temporary table and the join share a session.
        with self.transaction():
            self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {LINK_ACCOUNTS} (account TEXT PRIMARY KEY)")
            self.execute(f"DELETE FROM {LINK_ACCOUNTS}")
            self.executemany(f"INSERT INTO {LINK_ACCOUNTS} (account) VALUES (?)", [(account,) for account in accounts])
            rows = self.execute(
                f"SELECT c.catalog, c.program_management_account_identifier, c.associated_account_id,"
                f" c.association_type, c.candidate_id FROM {t.candidates} c JOIN {t.outcomes} o"
                f" ON o.candidate_id = c.candidate_id JOIN {LINK_ACCOUNTS} a ON a.account = c.associated_account_id"
                f" WHERE o.status IN ('{CREATED}', '{ALREADY_EXISTS}')"
            ).fetchall()
        for catalog, pma, account, association_type, candidate_id in rows:
            found[
                (
                    str(catalog).strip(),
                    pma_id(str(pma).strip()),
                    str(account).strip(),
                    str(association_type).strip(),
                )
            ] = candidate_id
        wanted = set(identities)
        return {identity: cid for identity, cid in found.items() if identity in wanted}

    # -- staging --------------------------------------------------------------------------------------------------
    def forget_retryable(self, dag_run_id: str) -> None:
        """A cleared or backfilled run keeps its run id: its earlier try's retryable failures and skips are tried
        again, so they must not count as recorded."""
        with self.transaction():
            self.execute(
                f"DELETE FROM {self.tables.attempts} WHERE dag_run_id = ?"
                f" AND ((status = '{FAILED}' AND retryable = ?) OR status = '{SKIPPED}')",
                [dag_run_id, self.dialect.bind_bool(True)],
            )

    def clear_staging(self, dag_run_id: str) -> None:
        with self.transaction():
            self.execute(f"DELETE FROM {self.tables.staging} WHERE dag_run_id = ?", [dag_run_id])

    def stage(self, dag_run_id: str, rows: Sequence[tuple[str, int, str, str, str | None]]) -> None:
        """rows: (candidate_id, seq, request_json, client_token, candidate_updated_at); seq numbers rows from 0."""
        with self.transaction():
            self.executemany(
                f"INSERT INTO {self.tables.staging} (dag_run_id, candidate_id, seq, request_json, client_token,"
                " candidate_updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(dag_run_id, *row) for row in rows],
            )

    def batch(self, dag_run_id: str, first: int, end: int) -> list[dict[str, Any]]:
        """Staged rows first <= seq < end that this run has not recorded an outcome for yet."""
        t = self.tables
        cursor = self.execute(
            f"SELECT s.candidate_id, s.request_json, s.client_token, s.candidate_updated_at FROM {t.staging} s"
            f" LEFT JOIN {t.attempts} a ON a.dag_run_id = s.dag_run_id AND a.candidate_id = s.candidate_id"
            " WHERE s.dag_run_id = ? AND s.seq >= ? AND s.seq < ? AND a.candidate_id IS NULL ORDER BY s.seq",
            [dag_run_id, first, end],
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- claims and outcomes --------------------------------------------------------------------------------------
    def claim(self, dag_run_id: str, candidate_id: str, client_token: str, claim_timeout_seconds: float) -> bool:
        """Take the candidate for this run before calling the API. False: it is done, or another live run has it."""
        t, d = self.tables, self.dialect
        now = dt.datetime.now(dt.timezone.utc)
        stale = d.bind_time(now - dt.timedelta(seconds=claim_timeout_seconds))
        with self.transaction():
            cursor = self.execute(
                f"INSERT INTO {t.outcomes} (candidate_id, status, client_token, dag_run_id, updated_at, claimed_at)"
                f" VALUES (?, '{CLAIMED}', ?, ?, ?, ?)"
                f" ON CONFLICT (candidate_id) DO UPDATE SET status = '{CLAIMED}', client_token = excluded.client_token,"
                " dag_run_id = excluded.dag_run_id, updated_at = excluded.updated_at, claimed_at = excluded.claimed_at"
                f" WHERE {t.outcomes}.status NOT IN ('{CREATED}', '{ALREADY_EXISTS}')"
                f" AND ({t.outcomes}.status <> '{CLAIMED}' OR {t.outcomes}.dag_run_id = excluded.dag_run_id"
                f" OR {t.outcomes}.claimed_at < ?)",
                [candidate_id, client_token, dag_run_id, d.bind_time(now), d.bind_time(now), stale],
            )
            return cursor.rowcount == 1

    def record(self, dag_run_id: str, outcome: Outcome, *, current_state: bool = True) -> None:
        """Write one candidate's outcome as soon as it is known: history always, current state unless dry run."""
        self.record_many(dag_run_id, [outcome], current_state=current_state)

    def record_many(self, dag_run_id: str, outcomes: Sequence[Outcome], *, current_state: bool) -> None:
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
            ]
            for outcome in outcomes
        ]
        columns = ", ".join(RESULT_COLUMNS)
        placeholders = ", ".join("?" for _ in RESULT_COLUMNS)
        updates = ", ".join(
            f"{name} = excluded.{name}" for name in RESULT_COLUMNS if name not in ("candidate_id", "attempts")
        )
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
                    f" WHERE {t.outcomes}.status NOT IN ('{CREATED}', '{ALREADY_EXISTS}')"
                    f" OR excluded.status IN ('{CREATED}', '{ALREADY_EXISTS}')",
                    rows,
                )

    # -- runs -----------------------------------------------------------------------------------------------------
    def start_run(self, dag_run_id: str, interval: tuple[dt.datetime, dt.datetime] | None, dry_run: bool) -> None:
        d = self.dialect
        start, end = (None, None) if interval is None else (d.bind_time(interval[0]), d.bind_time(interval[1]))
        with self.transaction():
            self.execute(
                f"INSERT INTO {self.tables.runs} (dag_run_id, data_interval_start, data_interval_end, is_dry_run,"
                " started_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (dag_run_id) DO UPDATE SET"
                " data_interval_start = excluded.data_interval_start, data_interval_end = excluded.data_interval_end,"
                " is_dry_run = excluded.is_dry_run, staged_at = NULL, ended_at = NULL",
                [dag_run_id, start, end, d.bind_bool(dry_run), self.now()],
            )

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
        cursor = self.execute(f"SELECT * FROM {self.tables.runs} WHERE dag_run_id = ?", [dag_run_id])
        row = cursor.fetchone()
        return None if row is None else dict(zip([c[0] for c in cursor.description], row, strict=True))

    def run_counts(self, dag_run_id: str) -> dict[str, int]:
        """What this run's history holds, per status (failures split by retryable), plus staged rows left over."""
        t = self.tables
        cursor = self.execute(
            f"SELECT status, retryable, COUNT(*) FROM {t.attempts} WHERE dag_run_id = ? GROUP BY status, retryable",
            [dag_run_id],
        )
        counts = dict.fromkeys(
            (CREATED, ALREADY_EXISTS, REJECTED, DRY_RUN, SKIPPED, "failed_retryable", "failed_permanent"), 0
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
