"""The sync's tables and every statement it runs on them, as SQLAlchemy Core: on the state store, and on the
warehouse when it is another database (the candidates read there, outcomes written back in bulk).

Values are always bound; table names come from validated settings. Writes are keyed by candidate and DAG run, so a
retried task or a re-run writes the same rows again instead of adding more. A write with a condition (a claim, an
outcome that must not overwrite a created relationship) is an insert of the missing row and a conditional UPDATE in
one transaction: the one spelling that SQLite, PostgreSQL and MySQL/MariaDB share. Times that decide who may send
(claims) come from the database's clock, never a worker's. Transient database errors (a lock wait, a deadlock,
"database is locked") are retried; anything else propagates as the database said it, never as an API outcome.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity

from include.partner_central.relationship_request import pma_id
from include.partner_central.service_model import service_model, snake_case
from include.sync import dialect as db
from include.sync.settings import Tables
from include.vocabulary import (
    ACTION_CREATE,
    CANDIDATE_COLUMNS,
    CHANGE_FAILED,
    CLAIMED,
    CREATED,
    DEAD_LETTER,
    DONE,
    DRY_RUN,
    FAILED,
    GONE,
    PENDING,
    REJECTED,
    RUN_COUNT_COLUMNS,
    SKIPPED,
)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def candidate_table_ddl(table: str, timestamp_type: str = "TEXT") -> str:
    """The candidates table the sync expects (the demo and the tests create it; a user's may differ in types)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (candidate_id VARCHAR(255) PRIMARY KEY, catalog TEXT,"
        " association_type TEXT, program_management_account_identifier TEXT, associated_account_id TEXT,"
        " display_name TEXT, resale_account_model TEXT, sector TEXT, account_scope TEXT, support_plan TEXT,"
        f" tags TEXT, updated_at {timestamp_type})"
    )


# What stopped a candidate in a run, most urgent first: what an alert quotes.
STOPPED = (DEAD_LETTER, FAILED, PENDING, REJECTED)
# The prior state each scanned candidate carries, from the current-state table.
PRIOR_COLUMNS = ("status", "fingerprint", "retryable", "claimed_at", "failed_runs")
# Rows per statement pair of a write-back; and how far before its mark a write-back starts (writes commit a moment
# after the time they carry).
WRITE_BACK_CHUNK = 5000
WRITE_BACK_OVERLAP = dt.timedelta(minutes=5)
ID = sa.String(255)
# Past this many ids that may repeat, the duplicate check groups every row instead of those ids.
MAX_SUSPECT_IDS = 5000
RUN_ID = sa.String(250)
# What a run stages for each candidate it will send, in the order stage() takes them.
STAGED_COLUMNS = (
    "candidate_id",
    "seq",
    "request_json",
    "client_token",
    "candidate_updated_at",
    "fingerprint",
    "prior_failed_runs",
    "action",
    "relationship_id",
    "relationship_arn",
    "differences",
)


def result_columns() -> list[sa.Column]:
    """What a candidate's outcome holds: in the current state (outcomes) and in each run's history (attempts)."""
    return [
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("relationship_id", ID),
        sa.Column("relationship_arn", sa.Text),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("retryable", sa.Boolean),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("client_token", ID),
        sa.Column("dag_run_id", RUN_ID, nullable=False),
        sa.Column("updated_at", db.UtcDateTime, nullable=False),
        sa.Column("candidate_updated_at", sa.Text),
        sa.Column("fingerprint", sa.Text),
        sa.Column("failed_runs", sa.Integer, nullable=False, server_default="0"),
        # The request sent (history), or last applied to the candidate's relationship (current state): what an
        # upsert compares the row with.
        sa.Column("request_json", sa.Text),
    ]


RESULT_COLUMNS = ("candidate_id", *(column.name for column in result_columns()))


def summary_columns(operation: str, exclude: Sequence[str] = ()) -> list[sa.Column]:
    """A List operation's item members as columns, named in snake_case: timestamps as UTC times, the rest as text."""
    item = service_model().operation_model(operation).output_shape.members["items"].member
    return [
        sa.Column(snake_case(name), db.UtcDateTime if shape.type_name == "timestamp" else sa.Text)
        for name, shape in item.members.items()
        if name not in exclude
    ]


class Schema:
    """The sync's own tables, named by the settings. `indexes=False`: the warehouse's copies of outcomes, history and
    runs (analytical warehouses have no indexes)."""

    def __init__(self, tables: Tables, *, indexes: bool = True):
        self.metadata = sa.MetaData()

        def table(setting: str, *items: Any) -> sa.Table:
            schema, name = db.split_name(getattr(tables, setting))
            return sa.Table(name, self.metadata, *items, schema=schema)

        self.outcomes = table(
            "outcomes",
            sa.Column("candidate_id", ID, primary_key=True),
            *result_columns(),
            sa.Column("claimed_at", db.UtcDateTime),
        )
        self.attempts = table(
            "attempts",
            sa.Column("candidate_id", ID, nullable=False),
            *result_columns(),
            sa.PrimaryKeyConstraint("dag_run_id", "candidate_id"),
        )
        self.runs = table(
            "runs",
            sa.Column("dag_run_id", RUN_ID, primary_key=True),
            sa.Column("data_interval_start", db.UtcDateTime),
            sa.Column("data_interval_end", db.UtcDateTime),
            sa.Column("is_dry_run", sa.Boolean, nullable=False),
            *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in RUN_COUNT_COLUMNS),
            sa.Column("quality_summary", sa.Text),
            sa.Column("phase_seconds", sa.Text),
            # JSON: a person's answer to a plan that waited for approval (decision, by, at); NULL when none waited.
            sa.Column("approval", sa.Text),
            # JSON: what failed the run, each a sentence (check_and_stage's stop, or record_run's findings); NULL when
            # nothing did. What the failure alert quotes.
            sa.Column("problems", sa.Text),
            sa.Column("staged_at", db.UtcDateTime),
            sa.Column("started_at", db.UtcDateTime, nullable=False),
            sa.Column("ended_at", db.UtcDateTime),
        )
        self.staging = table(
            "staging",
            sa.Column("dag_run_id", RUN_ID, primary_key=True),
            sa.Column("candidate_id", ID, primary_key=True),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("request_json", sa.Text, nullable=False),
            sa.Column("client_token", ID, nullable=False),
            sa.Column("candidate_updated_at", sa.Text),
            sa.Column("fingerprint", sa.Text),
            sa.Column("prior_failed_runs", sa.Integer, nullable=False, server_default="0"),
            # What the plan does with it (include.vocabulary.PLAN_ACTIONS), and for a change of an existing
            # relationship: which one, and the fields that differ (JSON).
            sa.Column("action", sa.String(32), nullable=False, server_default=ACTION_CREATE),
            sa.Column("relationship_id", ID),
            sa.Column("relationship_arn", sa.Text),
            sa.Column("differences", sa.Text),
        )
        self.rate_limit = table(
            "rate_limit",
            sa.Column("limiter_key", ID, primary_key=True),
            sa.Column("next_free_at", sa.Double, nullable=False),
        )
        self.write_back = table(
            "write_back",
            sa.Column("target", ID, primary_key=True),
            sa.Column("written_up_to", db.UtcDateTime, nullable=False),
        )
        # What AWS holds, as the reconcile DAG last listed it, and how it differs from the warehouse: written to the
        # warehouse (never to a separate state store), one column per member of the model's list summaries.
        self.remote = table(
            "remote",
            sa.Column("id", ID, primary_key=True),
            *summary_columns("ListRelationships", exclude=("id",)),
            sa.Column("reconcile_run_id", RUN_ID, nullable=False),
            sa.Column("listed_at", db.UtcDateTime, nullable=False),
        )
        self.program_management_accounts = table(
            "program_management_accounts",
            sa.Column("id", ID, primary_key=True),
            *summary_columns("ListProgramManagementAccounts", exclude=("id",)),
            sa.Column("relationship_count", sa.Integer, nullable=False),
            sa.Column("reconcile_run_id", RUN_ID, nullable=False),
            sa.Column("listed_at", db.UtcDateTime, nullable=False),
        )
        self.drift = table(
            "drift",
            sa.Column("reconcile_run_id", RUN_ID, nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("relationship_id", ID),
            sa.Column("candidate_id", ID),
            sa.Column("differences", sa.Text),  # JSON: {field: {"aws": value, "candidate": value}}
            sa.Column("detail", sa.Text),
            sa.Column("found_at", db.UtcDateTime, nullable=False),
        )
        self.reconciled = (self.remote, self.program_management_accounts, self.drift)
        # What the warehouse holds a copy of, when it is not the state store.
        self.copied = (self.outcomes, self.attempts, self.runs)
        schema, name = db.split_name(tables.candidates)
        self.candidates_name = (schema, name)
        if not indexes:
            return
        # Who holds a relationship identity (its token) or a relationship: the already-linked rule's look-ups.
        sa.Index(f"{self.staging.name}_seq", self.staging.c.dag_run_id, self.staging.c.seq)
        sa.Index(f"{self.outcomes.name}_token", self.outcomes.c.client_token)
        sa.Index(f"{self.outcomes.name}_relationship", self.outcomes.c.relationship_id)
        sa.Index(f"{self.attempts.name}_updated", self.attempts.c.updated_at)
        sa.Index(f"{self.outcomes.name}_updated", self.outcomes.c.updated_at)

    def candidates(self, columns: Sequence[str]) -> sa.TableClause:
        """The user's candidates table (or view), with the columns the sync reads; never created or altered here."""
        schema, name = self.candidates_name
        return sa.table(name, *(sa.column(column) for column in columns), schema=schema)

    def candidate_scan(self, columns: Sequence[str], candidate_ids: Sequence[str], *, with_prior: bool) -> sa.Select:
        """Every candidate (or the given ids) in id order: with its prior state joined (`prior_<column>`) when the
        outcomes are in the same database, else with the id as stored (`stored_id`) to look the state up by."""
        candidates = self.candidates(columns)
        key = db.key(candidates.c.candidate_id)
        read = [db.read_as_text(c).label(c.name) if c.name == "updated_at" else c for c in candidates.c]
        if with_prior:
            outcomes = self.outcomes
            statement = sa.select(
                *read, *(outcomes.c[name].label(f"prior_{name}") for name in PRIOR_COLUMNS)
            ).select_from(candidates.outerjoin(outcomes, outcomes.c.candidate_id == key))
        else:
            statement = sa.select(*read, key.label("stored_id"))
        if candidate_ids:
            statement = statement.where(key.in_(list(candidate_ids)))
        return statement.order_by(candidates.c.candidate_id)

    def duplicate_ids(self, among: Sequence[str] | None = None) -> sa.Select:
        """Ids (as stored) that more than one candidate row carries, or that are NULL or blank, with their counts;
        `among`: only rows with these ids (and the NULL and blank ones)."""
        key = db.key(self.candidates(["candidate_id"]).c.candidate_id)
        keys = sa.select(key.label("id"))
        if among is not None:
            keys = keys.where(sa.or_(key.in_(list(among)), key.is_(None), key == ""))
        keys = keys.subquery()
        count = sa.func.count()
        return db.many_groups(
            sa.select(keys.c.id, count)
            .group_by(keys.c.id)
            .having(sa.or_(count > 1, keys.c.id.is_(None), keys.c.id == ""))
        )

    def ids_that_may_repeat(self) -> sa.Select:
        """When the column itself is unique: the ids that could still repeat as the sync stores them (trimmed text),
        those stored with surrounding blanks, and the NULL and blank ones. Scanned, not grouped."""
        column = self.candidates(["candidate_id"]).c.candidate_id
        text, key = sa.cast(column, sa.String), db.key(column)
        return sa.select(key).distinct().where(sa.or_(text != key, key.is_(None), key == ""))


def retry_transient(method: F) -> F:
    """Retry a whole warehouse transaction on lock waits and deadlocks; past the budget the error propagates."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(db.is_transient),
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


def none_of(column: sa.ColumnElement[Any], values: Sequence[str]) -> sa.ColumnElement[bool]:
    """`column NOT IN (values)` spelled out, which executemany (one statement, many rows) accepts."""
    return sa.and_(*(column != value for value in values))


class Warehouse:
    """The sync's tables, in one database or two.

    The state store (`engine`: SQLite, PostgreSQL or MySQL/MariaDB) holds what needs row locks and a write per call:
    claims and current outcomes, the per-run journal, the shared rate schedule, staging. The warehouse (`source`) is
    where the candidates are read and where outcomes, history and runs are written back. Without a `source` they are
    one database and the state store's tables are the warehouse's. With one (an analytical warehouse such as
    Snowflake), `write_back` copies what changed into it in bulk: a few statements per table, never one per call, and
    a copy that fails is made by the next one (the state store keeps everything until then)."""

    def __init__(self, engine: sa.Engine, tables: Tables, *, source: sa.Engine | None = None):
        if engine.dialect.name not in db.TRANSACTIONAL:
            raise ValueError(
                f"the state store is {engine.dialect.name}, which cannot hold the sync's claims and rate schedule;"
                f" supported: {', '.join(db.TRANSACTIONAL)}. With an analytical warehouse, create the connection"
                " partner_sync_state (PostgreSQL, MySQL/MariaDB or SQLite) for them."
            )
        self.engine = db.configure(engine)
        self.tables = tables
        self.schema = Schema(tables)
        self.connection = engine.connect()
        self.source = source or engine
        self.separate = source is not None and source is not engine
        self.copies = Schema(tables, indexes=False)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def _source_reading(self) -> Iterator[sa.Connection]:
        """A connection that reads the candidates: the state store's own, or one on the warehouse."""
        if not self.separate:
            with self._reading():
                yield self.connection
            return
        with self.source.connect() as connection:
            yield connection

    # -- plumbing -------------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator[sa.Connection]:
        """One transaction; with lock=True on SQLite it holds the write lock from the start (BEGIN IMMEDIATE)."""
        connection = self.connection
        if lock:
            connection.execution_options(**{db.SQLITE_WRITE_LOCK: True})
        try:
            with connection.begin():
                yield connection
        finally:
            if lock:
                connection.execution_options(**{db.SQLITE_WRITE_LOCK: False})

    def _reading(self) -> contextlib.AbstractContextManager[Any]:
        """The current transaction, or a short one of its own for a read: none stays open while the task waits."""
        return contextlib.nullcontext() if self.connection.in_transaction() else self.connection.begin()

    def _all(self, statement: Any, params: Any = None) -> list[sa.Row]:
        with self._reading():
            return list(self.connection.execute(statement, params))

    def _dicts(self, statement: Any, params: Any = None) -> list[dict[str, Any]]:
        return [dict(row._mapping) for row in self._all(statement, params)]

    def db_now(self) -> dt.datetime:
        """The warehouse's clock: every worker's claims and timeouts are judged by it, not by their own clocks."""
        return self._all(sa.select(sa.type_coerce(db.db_time(), db.UtcDateTime())))[0][0]

    def db_epoch(self) -> float:
        return float(self._all(sa.select(db.db_epoch()))[0][0])

    # -- schema ---------------------------------------------------------------------------------------------------
    @retry_transient
    def create_tables(self) -> None:
        """Create the sync's tables (and the warehouse's copies, when it is another database); tables made by an
        earlier version gain the columns and indexes added since (each added column is nullable or has a default)."""
        if not self.separate:
            self._create(self.connection, self.schema.metadata.sorted_tables)
            return
        state_tables = [t for t in self.schema.metadata.sorted_tables if t.name not in self._warehouse_only]
        self._create(self.connection, state_tables)
        with self.source.connect() as connection:
            self._create(connection, (*self.copies.copied, *self.copies.reconciled))

    @functools.cached_property
    def _warehouse_only(self) -> frozenset[str]:
        return frozenset(table.name for table in self.schema.reconciled)

    @staticmethod
    def _create(connection: sa.Connection, tables: Sequence[sa.Table]) -> None:
        for attempt in (1, 2):
            try:
                with connection.begin():
                    for table in tables:
                        table.create(connection, checkfirst=True)
                    inspector = sa.inspect(connection)
                    for table in tables:
                        present = {column["name"].lower() for column in inspector.get_columns(table.name, table.schema)}
                        for column in table.columns:
                            if column.name not in present:
                                added = sa.schema.CreateColumn(column).compile(dialect=connection.dialect)
                                connection.exec_driver_sql(f"ALTER TABLE {table.fullname} ADD COLUMN {added}")
                        for index in table.indexes:
                            index.create(connection, checkfirst=True)
                return
            except Exception:
                # Two runs creating the tables at the same moment: PostgreSQL lets one of them fail; the second
                # attempt finds the tables there.
                if attempt == 2:
                    raise

    def column_names(self, table: str) -> set[str]:
        schema, name = db.split_name(table)
        statement = sa.select(sa.text("*")).select_from(sa.table(name, schema=schema)).where(sa.false())
        with self._source_reading() as connection:
            return {str(column).lower() for column in connection.execute(statement).keys()}  # noqa: SIM118

    def check_candidates_table(self, columns: Sequence[str] = CANDIDATE_COLUMNS) -> set[str]:
        """Fail at once, naming what is missing, when the candidates table or one of its columns is not there; the
        columns it has (lower case)."""
        table = self.tables.candidates
        how = (
            f"The sync reads {table} with these columns (types may differ: numbers, JSON and timestamp columns are"
            f" read as well):\n  {candidate_table_ddl(table)}\nA view can map another table onto it, e.g. CREATE VIEW"
            f" {table} AS SELECT crm_id AS candidate_id, ... FROM crm.partner_candidates; or point"
            " partner_sync_candidates_table at it."
        )
        try:
            present = self.column_names(table)
        except Exception as exc:
            reason = str(getattr(exc, "orig", exc)).strip()
            raise CandidatesTableError(
                f"The candidates table {table} cannot be read ({type(exc).__name__}: {reason}).\n{how}"
            ) from exc
        missing = [name for name in columns if name not in present]
        if missing:
            raise CandidatesTableError(f"The candidates table {table} has no column(s) {', '.join(missing)}.\n{how}")
        return present

    # -- selection ------------------------------------------------------------------------------------------------
    def scan_candidates(
        self, columns: Sequence[str], candidate_ids: Sequence[str], chunk_rows: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Every candidate (or the given ids) in chunks, each row with its prior state as `prior_<column>`.

        The whole table, not a time window: which rows need work is decided by their state and fingerprint, so late
        rows, rows without a usable updated_at and intervals never run are all seen. Ids are joined as the sync
        stores them (trimmed text), whatever the column's type. Read on a connection of its own, streamed (a
        server-side cursor where the database has one), so memory stays bounded and the writes made meanwhile
        commit."""
        statement = self.schema.candidate_scan(columns, candidate_ids, with_prior=not self.separate)
        with (self.source if self.separate else self.engine).connect() as reader:
            result = reader.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(statement)
            names = list(result.keys())
            for part in result.partitions(chunk_rows):
                rows = [dict(zip(names, row, strict=True)) for row in part]
                if self.separate:
                    self._attach_prior_state(rows)
                yield rows

    def _attach_prior_state(self, rows: list[dict[str, Any]]) -> None:
        """When the candidates are in another database: their prior state from the state store, by id (IN-lists)."""
        outcomes = self.schema.outcomes
        prior: dict[str, dict[str, Any]] = {}
        wanted = (row["stored_id"] for row in rows if row["stored_id"])
        for condition in db.one_of(outcomes.c.candidate_id, wanted, self.engine.dialect):
            found = self._dicts(
                sa.select(outcomes.c.candidate_id, *(outcomes.c[name] for name in PRIOR_COLUMNS)).where(condition)
            )
            prior.update((state.pop("candidate_id"), state) for state in found)
        for row in rows:
            state = prior.get(row.pop("stored_id"), {})
            row.update({f"prior_{name}": state.get(name) for name in PRIOR_COLUMNS})

    def duplicate_ids(self) -> tuple[dict[str, int], int]:
        """Ids that more than one candidate row carries (a view without a primary key), with their counts; and how
        many rows have no usable id (NULL or blank)."""
        with self._source_reading() as connection:
            if self._unique_ids(connection):
                # A unique column repeats an id only where trimming makes two ids one: a scan for those ids is
                # seconds cheaper on a large table than grouping every row (9 s against 0.6 s on MariaDB, 1M rows).
                suspects = [key for (key,) in connection.execute(self.schema.ids_that_may_repeat())]
                among = [key for key in suspects if key] if len(suspects) <= MAX_SUSPECT_IDS else None
                rows = connection.execute(self.schema.duplicate_ids(among)).all() if suspects else []
            else:
                rows = connection.execute(self.schema.duplicate_ids()).all()
        duplicates = {k: n for k, n in rows if k not in (None, "")}
        return duplicates, sum(n for k, n in rows if k in (None, ""))

    def _unique_ids(self, connection: sa.Connection) -> bool:
        """Whether the database enforces candidate_id to be unique (its primary key, or a unique constraint or index
        on it alone). A view has none; Snowflake and the other analytical warehouses do not enforce theirs."""
        if connection.dialect.name not in db.TRANSACTIONAL:
            return False
        schema, name = self.schema.candidates_name
        inspector = sa.inspect(connection)
        try:
            keys = [inspector.get_pk_constraint(name, schema).get("constrained_columns") or []]
            keys += [item["column_names"] for item in inspector.get_unique_constraints(name, schema)]
            keys += [item["column_names"] for item in inspector.get_indexes(name, schema) if item.get("unique")]
        except sa.exc.NoSuchTableError:
            return False
        return any([str(column).lower() for column in columns] == ["candidate_id"] for columns in keys)

    def linked_identities(self, tokens: Sequence[str]) -> dict[str, str]:
        """Which of these relationship identities (their deterministic client tokens) a candidate has already
        created: token → that candidate. The identity recorded when the relationship was created, not the feed's
        current row, so a corrected feed cannot hand one relationship to two candidates."""
        outcomes = self.schema.outcomes
        found: dict[str, str] = {}
        for condition in db.one_of(outcomes.c.client_token, tokens, self.engine.dialect):
            rows = self._all(
                sa.select(outcomes.c.client_token, outcomes.c.candidate_id).where(
                    condition, outcomes.c.status.in_(DONE)
                )
            )
            found.update(dict(rows))
        return found

    def applied(self, candidate_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The relationship each of these done candidates has, and the request last applied to it (None for one
        created by an earlier version of the package): what an upsert compares their changed rows with."""
        outcomes = self.schema.outcomes
        found: dict[str, dict[str, Any]] = {}
        columns = ("relationship_id", "relationship_arn", "client_token", "request_json", "status", "failed_runs")
        for condition in db.one_of(outcomes.c.candidate_id, candidate_ids, self.engine.dialect):
            rows = self._dicts(
                sa.select(outcomes.c.candidate_id, *(outcomes.c[name] for name in columns)).where(
                    condition, outcomes.c.status.in_(DONE)
                )
            )
            found.update((row.pop("candidate_id"), row) for row in rows)
        return found

    def left_the_feed(self, candidate_ids: Sequence[str] = ()) -> list[str]:
        """Candidates (of these ids, when given) whose relationship the package created and whose row is no longer in
        the candidates table: what mode mirror deletes. One anti-join in the warehouse, against its copy of the
        outcomes when the state store is another database (a copy that lags misses a new relationship, never adds
        one; applied() confirms each in the state store)."""
        outcomes = (self.copies if self.separate else self.schema).outcomes
        candidates = self.schema.candidates(["candidate_id"])
        statement = sa.select(outcomes.c.candidate_id).where(
            outcomes.c.status.in_(DONE),
            outcomes.c.relationship_id.is_not(None),
            ~sa.exists().where(db.key(candidates.c.candidate_id) == outcomes.c.candidate_id),
        )
        if candidate_ids:
            statement = statement.where(outcomes.c.candidate_id.in_(list(candidate_ids)))
        with self._source_reading() as connection:
            return [row[0] for row in connection.execute(statement.order_by(outcomes.c.candidate_id))]

    def held_relationships(self) -> int:
        """How many relationships the package holds (created or found, not deleted): what max_delete_ratio is of."""
        outcomes = self.schema.outcomes
        [(count,)] = self._all(
            sa.select(sa.func.count())
            .select_from(outcomes)
            .where(outcomes.c.status.in_(DONE), outcomes.c.relationship_id.is_not(None))
        )
        return count

    def relationship_holder(self, relationship_id: str, candidate_id: str) -> str | None:
        """The other candidate recorded with this relationship, if any."""
        outcomes = self.schema.outcomes
        rows = self._all(
            sa.select(outcomes.c.candidate_id)
            .where(
                outcomes.c.relationship_id == relationship_id,
                outcomes.c.candidate_id != candidate_id,
                outcomes.c.status.in_(DONE),
            )
            .limit(1)
        )
        return rows[0][0] if rows else None

    # -- staging --------------------------------------------------------------------------------------------------
    @retry_transient
    def forget_unfinished(self, dag_run_id: str) -> None:
        """A cleared or backfilled run keeps its run id: what its earlier try recorded short of a relationship
        (failures, rejections, skips) is evaluated again, so it must not count as recorded."""
        attempts = self.schema.attempts
        with self.transaction() as connection:
            connection.execute(
                sa.delete(attempts).where(attempts.c.dag_run_id == dag_run_id, attempts.c.status.not_in(DONE))
            )

    @retry_transient
    def clear_staging(self, dag_run_id: str) -> None:
        staging = self.schema.staging
        with self.transaction() as connection:
            connection.execute(sa.delete(staging).where(staging.c.dag_run_id == dag_run_id))

    @retry_transient
    def stage(self, dag_run_id: str, rows: Sequence[tuple]) -> None:
        """rows: tuples of STAGED_COLUMNS' values; seq numbers rows from 0."""
        if not rows:
            return
        values = [(dag_run_id, *row) for row in rows]
        with self.transaction() as connection:
            db.bulk_insert(connection, self.schema.staging, ("dag_run_id", *STAGED_COLUMNS), values)

    def staged_sample(self, dag_run_id: str, actions: Sequence[str], per_action: int) -> list[dict[str, Any]]:
        """The first staged candidates of each action (differences decoded): what an approver is shown."""
        staging = self.schema.staging
        sample: list[dict[str, Any]] = []
        for action in actions:
            sample += self._dicts(
                sa.select(staging.c.candidate_id, staging.c.action, staging.c.relationship_id, staging.c.differences)
                .where(staging.c.dag_run_id == dag_run_id, staging.c.action == action)
                .order_by(staging.c.seq)
                .limit(per_action)
            )
        return [{**row, "differences": json.loads(row["differences"] or "{}")} for row in sample]

    def batch(self, dag_run_id: str, first: int, end: int) -> list[dict[str, Any]]:
        """Staged rows first <= seq < end that this run has not recorded an outcome for yet."""
        staging, attempts = self.schema.staging, self.schema.attempts
        return self._dicts(
            sa.select(*(staging.c[name] for name in STAGED_COLUMNS if name != "seq"))
            .select_from(staging.outerjoin(attempts, self._same_run_and_candidate(staging, attempts)))
            .where(
                staging.c.dag_run_id == dag_run_id,
                staging.c.seq >= first,
                staging.c.seq < end,
                attempts.c.candidate_id.is_(None),
            )
            .order_by(staging.c.seq)
        )

    @staticmethod
    def _same_run_and_candidate(staging: sa.Table, attempts: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(attempts.c.dag_run_id == staging.c.dag_run_id, attempts.c.candidate_id == staging.c.candidate_id)

    # -- claims and outcomes --------------------------------------------------------------------------------------
    @retry_transient
    def claim(self, dag_run_id: str, candidate_id: str, client_token: str, claim_timeout_seconds: float) -> bool:
        """Take the candidate for this run before calling the API. False: it is done, or another live run has it.
        Both the claim's time and the staleness of other claims are the warehouse's clock."""
        outcomes = self.schema.outcomes
        with self.transaction(lock=True) as connection:
            now = self.db_now()
            claimed = {
                "status": CLAIMED,
                "client_token": client_token,
                "dag_run_id": dag_run_id,
                "updated_at": now,
                "claimed_at": now,
            }
            connection.execute(
                db.insert_missing(outcomes, connection.dialect), {"candidate_id": candidate_id, **claimed}
            )
            taken = connection.execute(
                sa.update(outcomes)
                .where(
                    outcomes.c.candidate_id == candidate_id,
                    outcomes.c.status.not_in(DONE),
                    sa.or_(
                        outcomes.c.status != CLAIMED,
                        outcomes.c.dag_run_id == dag_run_id,
                        outcomes.c.claimed_at < now - dt.timedelta(seconds=claim_timeout_seconds),
                    ),
                )
                .values(claimed)
            )
            return taken.rowcount == 1

    def _write_current(self, connection: sa.Connection, rows: Sequence[dict[str, Any]], *conditions: Any) -> None:
        """Write outcome rows into the current state where `conditions` allow it: missing rows are inserted, present
        ones updated (their attempts added up, their claim released)."""
        if not rows:
            return
        outcomes = self.schema.outcomes
        connection.execute(db.insert_missing(outcomes, connection.dialect), [{**row, "attempts": 0} for row in rows])
        names = [name for name in rows[0] if name != "candidate_id"]
        values: dict[str, Any] = {name: sa.bindparam(f"new_{name}", type_=outcomes.c[name].type) for name in names}
        values |= {"attempts": outcomes.c.attempts + sa.bindparam("new_attempts", 0), "claimed_at": None}
        connection.execute(
            sa.update(outcomes)
            .where(outcomes.c.candidate_id == sa.bindparam("new_candidate_id"), *conditions)
            .values(values),
            [
                {f"new_{name}": value for name, value in row.items()} | {"new_attempts": row.get("attempts", 0)}
                for row in rows
            ],
        )

    def _write_change_failures(self, connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """A failed change of a candidate's relationship: the relationship and the request applied to it stay, and the
        failure is kept with them (failed_runs counts toward retry_budget). A failure for good (permanent, or
        dead-lettered) makes the state change_failed, with the row's fingerprint: it is not taken again until the
        row changes or a run asks for it."""
        outcomes = self.schema.outcomes
        for row in rows:
            names = ("error_code", "error_message", "retryable", "failed_runs", "dag_run_id", "updated_at")
            values = {name: row[name] for name in names}
            if not row["retryable"]:
                values["status"] = CHANGE_FAILED
                if row["fingerprint"]:
                    values["fingerprint"] = row["fingerprint"]
            connection.execute(
                sa.update(outcomes)
                .where(outcomes.c.candidate_id == row["candidate_id"], outcomes.c.status.in_(DONE))
                .values(values)
            )

    @retry_transient
    def leave_pending(
        self, dag_run_id: str, rows: Sequence[dict[str, Any]], error_code: str, error_message: str
    ) -> None:
        """Mark staged candidates that a stopped batch did not send as `pending`, saying why (an account-level error):
        its own claim is given back, and a candidate another run holds or finished is left alone."""
        outcomes = self.schema.outcomes
        with self.transaction() as connection:
            now = self.db_now()
            pending = [
                {
                    "candidate_id": row["candidate_id"],
                    "status": PENDING,
                    "error_code": error_code,
                    "error_message": error_message[:2000],
                    "retryable": True,
                    "client_token": row["client_token"],
                    "dag_run_id": dag_run_id,
                    "updated_at": now,
                    "fingerprint": row["fingerprint"],
                }
                for row in rows
            ]
            self._write_current(
                connection,
                pending,
                none_of(outcomes.c.status, DONE),
                sa.or_(outcomes.c.status != CLAIMED, outcomes.c.dag_run_id == dag_run_id),
            )

    def record(self, dag_run_id: str, outcome: Outcome, *, current_state: bool = True) -> None:
        """Write one candidate's outcome as soon as it is known: history always, current state unless dry run."""
        self.record_many(dag_run_id, [outcome], current_state=current_state)

    @retry_transient
    def record_many(self, dag_run_id: str, outcomes: Sequence[Outcome], *, current_state: bool) -> None:
        if not outcomes:
            return
        attempts = self.schema.attempts
        with self.transaction() as connection:
            now = self.db_now()
            rows = [self._result_row(dag_run_id, outcome, now) for outcome in outcomes]
            connection.execute(db.upsert(attempts, connection.dialect, list(RESULT_COLUMNS[1:])), rows)
            if current_state:
                # A created relationship is never overwritten by a later failure, rejection or stale run; only a
                # change of it (an update, a delete) is. A change that failed names its relationship.
                changes_failed = [r for r in rows if r["status"] in (FAILED, DEAD_LETTER) and r["relationship_id"]]
                self._write_current(connection, [r for r in rows if r["status"] in (*DONE, *GONE)])
                self._write_current(
                    connection,
                    [r for r in rows if r["status"] not in (*DONE, *GONE) and r not in changes_failed],
                    none_of(self.schema.outcomes.c.status, DONE),
                )
                self._write_change_failures(connection, changes_failed)

    @staticmethod
    def _result_row(dag_run_id: str, outcome: Outcome, now: dt.datetime) -> dict[str, Any]:
        row = {name: value for name, value in asdict(outcome).items() if name in RESULT_COLUMNS}
        row |= {
            "dag_run_id": dag_run_id,
            "updated_at": now,
            "error_message": (outcome.error_message or "")[:2000] or None,
            "candidate_updated_at": None if outcome.candidate_updated_at is None else str(outcome.candidate_updated_at),
        }
        return {name: row[name] for name in RESULT_COLUMNS}

    @retry_transient
    def promote_rejections(self, dag_run_id: str) -> None:
        """Make this run's rejections (recorded in its history while the gate was undecided) the current state."""
        attempts, outcomes = self.schema.attempts, self.schema.outcomes
        with self.transaction() as connection:
            rows = [
                dict(row._mapping)
                for row in connection.execute(
                    sa.select(*(attempts.c[name] for name in RESULT_COLUMNS)).where(
                        attempts.c.dag_run_id == dag_run_id, attempts.c.status == REJECTED
                    )
                )
            ]
            self._write_current(connection, rows, none_of(outcomes.c.status, (*DONE, CLAIMED)))

    def pending_reason(self, dag_run_id: str) -> str | None:
        """Why this run left candidates pending (the account-level error that stopped a batch), if it did."""
        outcomes = self.schema.outcomes
        rows = self._all(
            sa.select(outcomes.c.error_message)
            .where(outcomes.c.dag_run_id == dag_run_id, outcomes.c.status == PENDING)
            .limit(1)
        )
        return rows[0][0] if rows else None

    # -- runs -----------------------------------------------------------------------------------------------------
    @retry_transient
    def start_run(self, dag_run_id: str, interval: tuple[dt.datetime, dt.datetime] | None, dry_run: bool) -> bool:
        """Open (or reopen) the run's row; True when the run had started before (a cleared run or a retry)."""
        runs = self.schema.runs
        start, end = (None, None) if interval is None else interval
        with self.transaction() as connection:
            existed = bool(
                connection.execute(sa.select(runs.c.dag_run_id).where(runs.c.dag_run_id == dag_run_id)).all()
            )
            # A cleared run plans and waits for approval again.
            reopened = [
                *("data_interval_start", "data_interval_end", "is_dry_run", "staged_at", "ended_at"),
                *("approval", "problems"),
            ]
            connection.execute(
                db.upsert(runs, connection.dialect, reopened),
                {
                    "dag_run_id": dag_run_id,
                    "data_interval_start": start,
                    "data_interval_end": end,
                    "is_dry_run": dry_run,
                    "staged_at": None,
                    "ended_at": None,
                    "approval": None,
                    "problems": None,
                    "started_at": self.db_now(),
                },
            )
        return existed

    @retry_transient
    def update_run(self, dag_run_id: str, **values: Any) -> None:
        allowed = {
            *RUN_COUNT_COLUMNS,
            *("quality_summary", "phase_seconds", "staged_at", "ended_at", "approval", "problems"),
        }
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown run columns {sorted(unknown)}")
        runs = self.schema.runs
        bound = {name: json.dumps(v) if isinstance(v, (dict, list)) else v for name, v in values.items()}
        with self.transaction() as connection:
            connection.execute(sa.update(runs).where(runs.c.dag_run_id == dag_run_id).values(bound))

    def run(self, dag_run_id: str) -> dict[str, Any] | None:
        runs = self.schema.runs
        rows = self._dicts(sa.select(runs).where(runs.c.dag_run_id == dag_run_id))
        return rows[0] if rows else None

    def run_counts(self, dag_run_id: str) -> dict[str, int]:
        """What this run's history holds, per status (failures split by retryable), plus staged rows left over."""
        attempts, staging = self.schema.attempts, self.schema.staging
        # change_failed is a current state only: a run's history says failed or dead_letter.
        recorded = (*(status for status in DONE if status != CHANGE_FAILED), *GONE, REJECTED, PENDING, DRY_RUN)
        counts = dict.fromkeys((*recorded, SKIPPED, DEAD_LETTER, "failed_retryable", "failed_permanent"), 0)
        per_status = self._all(
            sa.select(attempts.c.status, attempts.c.retryable, sa.func.count())
            .where(attempts.c.dag_run_id == dag_run_id)
            .group_by(attempts.c.status, attempts.c.retryable)
        )
        for status, retryable, count in per_status:
            key = status if status != FAILED else ("failed_retryable" if retryable else "failed_permanent")
            counts[key] = counts.get(key, 0) + count
        [(unfinished,)] = self._all(
            sa.select(sa.func.count())
            .select_from(staging.outerjoin(attempts, self._same_run_and_candidate(staging, attempts)))
            .where(staging.c.dag_run_id == dag_run_id, attempts.c.candidate_id.is_(None))
        )
        counts["unfinished"] = unfinished
        return counts

    def run_reasons(self, dag_run_id: str, limit: int) -> list[dict[str, Any]]:
        """The first of this run's candidates that something stopped (dead-lettered, failed, pending, rejected, in
        that order), with their error: what an alert quotes."""
        attempts = self.schema.attempts
        order = sa.case({status: rank for rank, status in enumerate(STOPPED)}, value=attempts.c.status)
        return self._dicts(
            sa.select(attempts.c.candidate_id, attempts.c.status, attempts.c.error_code, attempts.c.error_message)
            .where(attempts.c.dag_run_id == dag_run_id, attempts.c.status.in_(STOPPED))
            .order_by(order, attempts.c.candidate_id)
            .limit(limit)
        )

    def waiting_dead_lettered(self) -> int:
        """Candidates (or changes of their relationships) dead-lettered and not taken again yet."""
        outcomes = self.schema.outcomes
        [(count,)] = self._all(sa.select(sa.func.count()).where(outcomes.c.status.in_((DEAD_LETTER, CHANGE_FAILED))))
        return count

    def run_candidates(self, dag_run_id: str, status: str, limit: int = 20) -> list[str]:
        """Some of the candidates this run recorded with a status, for the run's summary."""
        attempts = self.schema.attempts
        rows = self._all(
            sa.select(attempts.c.candidate_id)
            .where(attempts.c.dag_run_id == dag_run_id, attempts.c.status == status)
            .order_by(attempts.c.candidate_id)
            .limit(limit)
        )
        return [row[0] for row in rows]

    @retry_transient
    def prune(self, retention_days: float) -> None:
        """Delete history and run rows older than the retention, and staging left by runs that ended or died."""
        attempts, runs, staging = self.schema.attempts, self.schema.runs, self.schema.staging
        with self.transaction() as connection:
            ended = sa.select(runs.c.dag_run_id).where(runs.c.ended_at.is_not(None))
            connection.execute(sa.delete(staging).where(staging.c.dag_run_id.in_(ended)))
            if retention_days > 0:
                cutoff = self.db_now() - dt.timedelta(days=retention_days)
                connection.execute(sa.delete(attempts).where(attempts.c.updated_at < cutoff))
                old = sa.select(runs.c.dag_run_id).where(runs.c.started_at < cutoff)
                connection.execute(sa.delete(staging).where(staging.c.dag_run_id.in_(old)))
                connection.execute(sa.delete(runs).where(runs.c.started_at < cutoff))
        if self.separate and retention_days > 0:
            copies = self.copies
            with self.source.connect() as warehouse, warehouse.begin():
                warehouse.execute(sa.delete(copies.attempts).where(copies.attempts.c.updated_at < cutoff))
                warehouse.execute(sa.delete(copies.runs).where(copies.runs.c.started_at < cutoff))

    # -- reconcile ------------------------------------------------------------------------------------------------
    def created_relationships(self) -> list[dict[str, Any]]:
        """Every candidate whose relationship exists as far as the sync knows: id, relationship, when recorded."""
        outcomes = self.schema.outcomes
        return self._dicts(
            sa.select(
                outcomes.c.candidate_id,
                outcomes.c.relationship_id,
                outcomes.c.relationship_arn,
                outcomes.c.updated_at,
            ).where(outcomes.c.status.in_(DONE), outcomes.c.relationship_id.is_not(None))
        )

    def listed_program_management_accounts(self) -> dict[str, dict[str, Any]]:
        """The PMAs as the last reconcile listed them (none before its first run), by id."""
        table = (self.copies if self.separate else self.schema).program_management_accounts
        columns = ("id", "status", "relationship_count", "reconcile_run_id", "listed_at")
        with self._source_reading() as connection:
            rows = connection.execute(sa.select(*(table.c[name] for name in columns))).all()
        return {row.id: dict(row._mapping) for row in rows}

    def created_per_pma(self, since: dt.datetime) -> dict[str, int]:
        """Relationships this package created since a moment, per PMA (from the request each create sent)."""
        outcomes = self.schema.outcomes
        found: dict[str, int] = {}
        rows = self._all(
            sa.select(outcomes.c.request_json).where(
                outcomes.c.status == CREATED, outcomes.c.updated_at >= since, outcomes.c.request_json.is_not(None)
            )
        )
        for (request_json,) in rows:
            pma = pma_id(json.loads(request_json)["programManagementAccountIdentifier"])
            found[pma] = found.get(pma, 0) + 1
        return found

    def candidate_rows(self, columns: Sequence[str], candidate_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The candidates table's rows of these ids (as stored: trimmed text), for comparing with AWS."""
        candidates = self.schema.candidates(columns)
        key = db.key(candidates.c.candidate_id)
        rows: list[dict[str, Any]] = []
        with self._source_reading() as connection:
            for condition in db.one_of(key, candidate_ids, self.source.dialect):
                rows += [dict(row._mapping) for row in connection.execute(sa.select(*candidates.c).where(condition))]
        return rows

    def candidate_catalogs(self) -> list[str]:
        """The catalogs the candidates name: the ones a reconcile lists."""
        catalog = self.schema.candidates(["catalog"]).c.catalog
        with self._source_reading() as connection:
            found = connection.execute(sa.select(sa.func.trim(catalog)).distinct().where(catalog.is_not(None)))
            return sorted(value for (value,) in found if value)

    def candidate_program_management_accounts(self) -> list[str]:
        """The PMA ids or ARNs the candidates name, each once (as written, trimmed)."""
        column = self.schema.candidates(
            ["program_management_account_identifier"]
        ).c.program_management_account_identifier
        with self._source_reading() as connection:
            found = connection.execute(sa.select(sa.func.trim(column)).distinct().where(column.is_not(None)))
            return sorted(value for (value,) in found if value)

    @retry_transient
    def update_program_management_statuses(self, run_id: str, statuses: Mapping[str, str]) -> None:
        """A fresher status of the PMAs the last reconcile listed (a preflight's listing): the plan holds the creates
        of one that is not ACTIVE now. Their relationship counts stay the reconcile's."""
        table = (self.copies if self.separate else self.schema).program_management_accounts
        rows = [{"pma": pma, "new_status": status, "run": run_id} for pma, status in statuses.items()]
        context = self.source.begin() if self.separate else self.transaction()
        with context as connection:
            connection.execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("pma"))
                .values(status=sa.bindparam("new_status"), reconcile_run_id=sa.bindparam("run")),
                rows,
            )

    @retry_transient
    def replace_listing(
        self,
        run_id: str,
        listed_at: dt.datetime,
        accounts: Sequence[dict[str, Any]],
        relationships: Sequence[dict[str, Any]],
        drift: Sequence[dict[str, Any]],
    ) -> None:
        """What a reconcile found, in the warehouse in one transaction: the mirror of AWS's relationships and PMAs
        replaced as a whole, and this run's drift rows (written again if the run is repeated)."""
        tables = self.copies if self.separate else self.schema
        stamp = {"reconcile_run_id": run_id, "listed_at": listed_at}

        def columns(table: sa.Table, item: dict[str, Any]) -> dict[str, Any]:
            values = {snake_case(name): value for name, value in item.items()}
            return {column.name: values.get(column.name) for column in table.columns} | stamp

        remote, accounts_table, drift_table = tables.reconciled
        context = self.source.begin() if self.separate else self.transaction()
        with context as connection:
            connection.execute(sa.delete(remote))
            connection.execute(sa.delete(accounts_table))
            connection.execute(sa.delete(drift_table).where(drift_table.c.reconcile_run_id == run_id))
            if relationships:
                connection.execute(sa.insert(remote), [columns(remote, item) for item in relationships])
            if accounts:
                connection.execute(sa.insert(accounts_table), [columns(accounts_table, item) for item in accounts])
            if drift:
                connection.execute(
                    sa.insert(drift_table),
                    [{**row, "reconcile_run_id": run_id, "found_at": listed_at} for row in drift],
                )

    @retry_transient
    def reopen(self, run_id: str, missing: Sequence[dict[str, Any]], reason: str) -> int:
        """Candidates whose created relationship AWS no longer has become `pending`: the next sync creates them
        again. Only while the outcome still names that relationship (a sync that has moved on is left alone). Each
        also gets a history row of the reconcile run. How many were reopened."""
        outcomes, attempts = self.schema.outcomes, self.schema.attempts
        reopened = 0
        with self.transaction() as connection:
            now = self.db_now()
            for row in missing:
                message = f"relationship {row['relationship_id']} {reason}"
                changed = connection.execute(
                    sa.update(outcomes)
                    .where(
                        outcomes.c.candidate_id == row["candidate_id"],
                        outcomes.c.relationship_id == row["relationship_id"],
                        outcomes.c.status.in_(DONE),
                    )
                    .values(
                        status=PENDING,
                        relationship_id=None,
                        relationship_arn=None,
                        error_code="RelationshipMissing",
                        error_message=message,
                        retryable=True,
                        updated_at=now,
                        claimed_at=None,
                    )
                ).rowcount
                if changed:
                    reopened += 1
                    history = db.upsert(attempts, connection.dialect, ["status", "error_code", "error_message"])
                    connection.execute(
                        history,
                        {
                            "candidate_id": row["candidate_id"],
                            "dag_run_id": run_id,
                            "status": PENDING,
                            "relationship_id": row["relationship_id"],
                            "error_code": "RelationshipMissing",
                            "error_message": message,
                            "retryable": True,
                            "attempts": 0,
                            "updated_at": now,
                        },
                    )
        return reopened

    # -- write-back to an analytical warehouse --------------------------------------------------------------------
    @retry_transient
    def write_back(self) -> int:
        """Copy the outcomes, history and run rows that changed in the state store since the last copy into the
        warehouse: per table one DELETE of their keys and one multi-row INSERT per chunk, in one warehouse
        transaction, so readers never see a row missing. The mark moves on only after the copy committed, and each
        copy starts a little before the mark (writes commit a moment after their timestamp): copying a row twice is
        harmless, missing one is not. The number of rows copied; 0 when the warehouse is the state store."""
        if not self.separate:
            return 0
        schema, marks = self.schema, self.schema.write_back
        with self._reading():
            started = self.db_now()
            mark = self.connection.execute(sa.select(marks.c.written_up_to).where(marks.c.target == "warehouse"))
            written_up_to = mark.scalar()
            since = (
                dt.datetime(1970, 1, 1, tzinfo=dt.UTC) if written_up_to is None else written_up_to - WRITE_BACK_OVERLAP
            )
            outcomes = self._dicts(sa.select(schema.outcomes).where(schema.outcomes.c.updated_at >= since))
            attempts = self._dicts(sa.select(schema.attempts).where(schema.attempts.c.updated_at >= since))
            run_ids = {row["dag_run_id"] for row in (*outcomes, *attempts)}
            runs = schema.runs
            recent = sa.or_(*(runs.c[name] >= since for name in ("started_at", "staged_at", "ended_at")))
            run_rows = self._dicts(sa.select(runs).where(sa.or_(recent, runs.c.dag_run_id.in_(sorted(run_ids)))))
        copies = self.copies
        with self.source.connect() as warehouse, warehouse.begin():
            self._replace(warehouse, copies.outcomes, outcomes)
            self._replace(warehouse, copies.attempts, attempts)
            self._replace(warehouse, copies.runs, run_rows)
        with self.transaction() as connection:
            connection.execute(
                db.insert_missing(marks, connection.dialect), {"target": "warehouse", "written_up_to": started}
            )
            connection.execute(
                sa.update(marks)
                .where(marks.c.target == "warehouse", marks.c.written_up_to < started)
                .values(written_up_to=started)
            )
        return len(outcomes) + len(attempts) + len(run_rows)

    @staticmethod
    def _replace(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        for statement, params in replace_statements(table, rows):
            connection.execute(statement, params)


def replace_statements(table: sa.Table, rows: list[dict[str, Any]]) -> Iterator[tuple[Any, Any]]:
    """Delete the rows' keys from the table, then insert the rows: the upsert that every analytical warehouse takes,
    as one DELETE and one multi-row INSERT per chunk (per run id and chunk for the history's two-column key)."""
    *groups, last = [column.name for column in table.primary_key.columns]
    for start in range(0, len(rows), WRITE_BACK_CHUNK):
        chunk = rows[start : start + WRITE_BACK_CHUNK]
        by_group: dict[tuple, list[Any]] = {}
        for row in chunk:
            by_group.setdefault(tuple(row[name] for name in groups), []).append(row[last])
        for group, values in by_group.items():
            match = [table.c[name] == value for name, value in zip(groups, group, strict=True)]
            yield sa.delete(table).where(*match, table.c[last].in_(values)), None
        yield sa.insert(table), [{column.name: row.get(column.name) for column in table.columns} for row in chunk]
