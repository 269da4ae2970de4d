"""The sync converges: whatever happened before (late rows, paused schedules, faults, bad rows, native column types,
feed corrections), the next run brings every valid candidate to its relationship and says loudly what it could not
do. Real warehouses (SQLite, PostgreSQL), real boto3 over HTTP against the emulator."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter

import psycopg2.errors
import pytest

from dev.demo_data import distinct_candidates, insert_candidates, sample_candidates
from include.partner_central.api_errors import IAM_ACTIONS, AccountLevelError, ApiError, classify
from include.partner_central.hooks import PartnerCentralChannelHook
from include.sync import steps
from include.sync.dialect import UtcDateTime
from include.sync.settings import SyncSettings
from include.sync.shared_rate_limit import WarehouseRateLimiter
from include.sync.warehouse import CandidatesTableError
from include.vocabulary import CANDIDATE_COLUMNS
from tests.test_sync_steps import DAY, INTERVAL, SETTINGS, Killed, dying_hook, one, request, statuses

NEXT_DAY = (INTERVAL[1], INTERVAL[1] + dt.timedelta(days=1))


def run_sync(test_warehouse, run: steps.RunRequest, settings: SyncSettings = SETTINGS, hook=None) -> dict:
    """One whole run as the DAG makes it; the run row, and what stopped a batch or failed the run."""
    warehouse = test_warehouse.warehouse()
    try:
        batches = steps.prepare(warehouse, settings, run)
    except steps.QualityGateError as gate:
        return {**warehouse.run(run.dag_run_id), "stopped": [gate], "failed": str(gate)}
    limiter = WarehouseRateLimiter(warehouse, "aws:test", settings.rate_per_second)
    stopped = []
    for batch in batches:
        try:
            steps.create_batch(warehouse, settings, run, batch, hook or PartnerCentralChannelHook(), limiter)
        except Exception as exc:  # a failed batch task; the run goes on to record_run (all_done)
            stopped.append(exc)
    try:
        steps.finish(warehouse, run)
        failed = None
    except steps.SyncRunFailed as exc:
        failed = str(exc)
    return {**warehouse.run(run.dag_run_id), "stopped": stopped, "failed": failed}


def outcome_rows(test_warehouse) -> dict[str, dict]:
    return {r["candidate_id"]: r for r in test_warehouse.query("SELECT * FROM partner_relationship_outcomes")}


def creates(emulator) -> list[dict]:
    return [c for c in emulator.emulator.call_log() if c["operation"] == "CreateRelationship"]


def assert_converged(test_warehouse, emulator, valid: set[str]) -> None:
    """Every valid candidate created or already existing, none claimed or pending, no relationship twice."""
    rows = outcome_rows(test_warehouse)
    done = {cid for cid, row in rows.items() if row["status"] in ("created", "already_exists")}
    assert done == valid
    assert not [cid for cid, row in rows.items() if row["status"] in ("claimed", "pending")]
    relationships = emulator.emulator.relationship_list()
    assert len(relationships) == len(valid)
    assert {rows[cid]["relationship_id"] for cid in valid} == {r["id"] for r in relationships}


@pytest.fixture(autouse=True)
def _fast_emulator(emulator):
    emulator.emulator.configure({"create_rate": 100})


# -- 1. selection by state ------------------------------------------------------------------------------------------
def test_every_unconverged_candidate_is_taken_whatever_its_updated_at(test_warehouse, emulator):
    """Late rows (stamped in an interval already run), NULL and odd-format updated_at, and the rows of intervals
    never run (a paused DAG) are all taken by the next scheduled run; the interval only labels what is new."""
    test_warehouse.seed([one("on-time", "2026-11-20T10:00:00+00:00", "000000000001")], timestamp_type="TEXT")
    run_sync(test_warehouse, request("scheduled__2026-11-20"))
    test_warehouse.seed(
        [
            one("late", "2026-11-20T09:00:00+00:00", "000000000002"),  # lands after its interval was run
            one("no-date", None, "000000000003"),
            one("other-format", "20 Nov 2026", "000000000004"),  # rejected, naming the column
            one("epoch", "1763283600", "000000000005"),  # 2025-11-16, epoch seconds as text
            one("paused-week", "2026-11-13T10:00:00+00:00", "000000000006"),
        ]
    )

    row = run_sync(test_warehouse, request("scheduled__2026-11-21", interval=NEXT_DAY))

    states = outcome_rows(test_warehouse)
    assert {cid: r["status"] for cid, r in states.items()} == {
        "on-time": "created",
        "late": "created",
        "no-date": "created",
        "other-format": "rejected",
        "epoch": "created",
        "paused-week": "created",
    }
    assert "updated_at: not a timestamp" in states["other-format"]["error_message"]
    assert (row["selected"], row["in_interval"], row["skipped_done"]) == (5, 0, 1)
    assert len(creates(emulator)) == 5


def test_a_changed_rejected_row_is_checked_again_and_an_unchanged_one_is_not(test_warehouse, emulator):
    test_warehouse.seed([one("fixable", "2026-11-20T10:00:00+00:00", "12345")])
    first = run_sync(test_warehouse, request("run-1", max_reject_ratio=1.0))
    assert (first["rejected"], statuses(test_warehouse)) == (1, {"fixable": "rejected"})

    again = run_sync(test_warehouse, request("run-2", interval=NEXT_DAY))
    assert (again["selected"], again["rejected"]) == (0, 0)  # unchanged: not judged again, gate not tripped

    # Fixed in the feed without touching updated_at: the fingerprint sees it.
    test_warehouse.execute("UPDATE partner_relationship_candidates SET associated_account_id = '000000012345'")
    fixed = run_sync(test_warehouse, request("run-3", interval=NEXT_DAY))
    assert (fixed["selected"], fixed["created"]) == (1, 1)
    assert statuses(test_warehouse) == {"fixable": "created"}


def test_the_reject_ratio_gate_judges_only_content_checked_for_the_first_time(test_warehouse, emulator):
    """A manual run with "Include all pending" over a warehouse whose old rows were rejected does not trip the gate
    on them; and a run the gate stops changes no current state, so the next run is stopped again."""
    bad = [one(f"bad-{n}", "2026-11-19T10:00:00+00:00", f"{n}") for n in range(4)]
    test_warehouse.seed([*bad, one("good", "2026-11-19T10:00:00+00:00", "000000000009")])
    gated = run_sync(test_warehouse, request("run-1", max_reject_ratio=0.5))
    assert gated["staged"] == 0 and "nothing was sent" in gated["failed"]
    assert statuses(test_warehouse) == {}  # the gate left the current state alone
    with pytest.raises(steps.QualityGateError):
        steps.prepare(test_warehouse.warehouse(), SETTINGS, request("run-2", max_reject_ratio=0.5))

    run_sync(test_warehouse, request("run-3", max_reject_ratio=1.0))  # accepted by a person
    test_warehouse.seed([one("new-good", "2026-11-21T10:00:00+00:00", "000000000010")])
    manual = run_sync(test_warehouse, request("manual", include_all_pending=True, max_reject_ratio=0.5))

    assert manual["failed"] is None
    assert manual["quality_summary"] and json.loads(manual["quality_summary"])["reject_ratio"] == 0.0
    assert Counter(statuses(test_warehouse).values()) == {"rejected": 4, "created": 2}


def test_a_cleared_run_and_a_backfill_send_what_was_fixed_after_them(test_warehouse, emulator):
    test_warehouse.seed(
        [
            one("ok", "2026-11-20T10:00:00+00:00", "000000000001"),
            one("fixed-later", "2026-11-20T11:00:00+00:00", "12345"),
        ]
    )
    run_id = "backfill__2026-11-20T00:00:00+00:00"
    run_sync(test_warehouse, request(run_id, max_reject_ratio=1.0, backfill=True))
    assert statuses(test_warehouse) == {"ok": "created", "fixed-later": "rejected"}

    test_warehouse.execute(
        "UPDATE partner_relationship_candidates SET associated_account_id = '000000012345'"
        " WHERE candidate_id = 'fixed-later'"
    )
    cleared = run_sync(test_warehouse, request(run_id, backfill=True))  # same run id: a cleared run, a reprocess

    assert (cleared["created"], cleared["rejected"], cleared["failed"]) == (2, 0, None)  # the run id's whole history
    assert statuses(test_warehouse) == {"ok": "created", "fixed-later": "created"}
    assert len(creates(emulator)) == 2


def test_a_backfill_over_an_interval_retries_its_permanent_failures_and_a_scheduled_run_does_not(
    test_warehouse, emulator
):
    """The PMA's relationship quota is the candidate's own error (permanent); after the quota is raised, a backfill
    over the interval is how a user says "try these again"."""
    emulator.emulator.configure({"max_relationships_per_pma": 1})
    test_warehouse.seed(
        [
            one("first", "2026-11-20T10:00:00+00:00", "000000000001"),
            one("over-quota", "2026-11-20T11:00:00+00:00", "000000000002"),
        ]
    )
    run_sync(test_warehouse, request("scheduled__2026-11-20"))
    state = outcome_rows(test_warehouse)["over-quota"]
    assert (state["status"], state["error_code"], bool(state["retryable"])) == (
        "failed",
        "ServiceQuotaExceededException",
        False,
    )

    emulator.emulator.configure({"max_relationships_per_pma": 1000})
    next_day = run_sync(test_warehouse, request("scheduled__2026-11-21", interval=NEXT_DAY))
    assert next_day["selected"] == 0

    backfill = run_sync(test_warehouse, request("backfill__2026-11-20", backfill=True))
    assert backfill["created"] == 1
    assert statuses(test_warehouse) == {"first": "created", "over-quota": "created"}


# -- 2. errors by scope ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "code", "fix"),
    [
        ({"expired_token": True}, "ExpiredTokenException", "credentials"),
        ({"unrecognized_client": True}, "UnrecognizedClientException", "credentials"),
        ({"invalid_signature": True}, "InvalidSignatureException", "clock"),
        ({"access_denied_reason": "ACCESS_DENIED"}, "AccessDeniedException", IAM_ACTIONS[0]),
    ],
)
def test_an_account_level_error_stops_the_batch_and_leaves_the_candidates_pending(
    test_warehouse, emulator, fault, code, fix
):
    test_warehouse.seed(sample_candidates(DAY, good=6)[:6])
    emulator.emulator.configure(fault)

    broken = run_sync(test_warehouse, request("run-1"))

    [stop] = broken["stopped"]
    assert isinstance(stop, AccountLevelError) and stop.error.code == code and fix in str(stop)
    assert len(emulator.emulator.call_log()) == 1  # stopped at the first call, not once per candidate
    states = outcome_rows(test_warehouse)
    assert [row["status"] for row in states.values()] == ["pending"] * 6  # the whole batch, never failed
    assert all(code in row["error_message"] for row in states.values())
    assert "not sent" in broken["failed"] and code in broken["failed"]

    emulator.emulator.configure({key: None if isinstance(value, str) else False for key, value in fault.items()})
    run_sync(test_warehouse, request("run-2", interval=NEXT_DAY))
    assert_converged(test_warehouse, emulator, {row["candidate_id"] for row in sample_candidates(DAY, good=6)[:6]})


def test_credential_errors_raised_by_botocore_are_the_accounts_not_the_candidates():
    import botocore.exceptions

    for exc in (
        botocore.exceptions.NoCredentialsError(),
        botocore.exceptions.EndpointConnectionError(endpoint_url="x"),
    ):
        error = classify(exc)
        assert error.account_level and error.fix
    assert not ApiError("ValidationException", "bad", retryable=False).account_level


def test_sustained_throttling_stops_the_batch_instead_of_failing_its_rows(test_warehouse, emulator):
    test_warehouse.seed([one("a", "2026-11-20T10:00:00+00:00", "000000000001")])
    emulator.emulator.configure({"create_rate": 0.001, "burst": 1})
    client = PartnerCentralChannelHook().conn
    warm_up = {**_request_of(test_warehouse, "a"), "associatedAccountId": "000000000099", "clientToken": "pcrel-w"}
    client.create_relationship(**warm_up)  # spends the bucket's only token
    settings = SyncSettings(rate_per_second=50, max_attempts=2, max_retry_seconds=5)

    row = run_sync(test_warehouse, request(), settings)

    [stop] = row["stopped"]
    assert isinstance(stop, AccountLevelError) and stop.transient and "rate_per_second" in str(stop)
    assert statuses(test_warehouse) == {"a": "pending"}


def test_a_warehouse_lock_in_the_rate_limiter_fails_the_task_and_is_no_candidates_outcome(test_warehouse, emulator):
    test_warehouse.seed([one("a", "2026-11-20T10:00:00+00:00", "000000000001")])
    run = request()
    warehouse = test_warehouse.warehouse()
    [batch] = steps.prepare(warehouse, SETTINGS, run)
    limiter = WarehouseRateLimiter(warehouse, "aws:test", 50)
    state = test_warehouse.state  # where the rate schedule lives
    blocker = state.connect()
    session = {"sqlite": "PRAGMA busy_timeout=50", "postgres": "SET lock_timeout = '50ms'"}
    session["mariadb"] = "SET SESSION innodb_lock_wait_timeout = 1"
    warehouse.connection.exec_driver_sql(session[state.kind])
    warehouse.connection.commit()
    if state.kind == "sqlite":
        blocker.isolation_level = None
        blocker.execute("BEGIN IMMEDIATE")
        expected = "database is locked"
    else:
        blocker.cursor().execute("SELECT * FROM partner_central_rate_limit FOR UPDATE")
        expected = "lock"
    try:
        with pytest.raises(Exception, match=f"(?i){expected}") as raised:
            steps.create_batch(warehouse, SETTINGS, run, batch, PartnerCentralChannelHook(), limiter)
        # The database's own error (SQLAlchemy wraps the driver's), never an API outcome.
        driver_error = getattr(raised.value, "orig", raised.value)
        assert type(driver_error).__module__.split(".")[0] in ("sqlite3", "psycopg2", "psycopg", "MySQLdb")
    finally:
        blocker.execute("ROLLBACK") if state.kind == "sqlite" else blocker.rollback()
        blocker.close()

    assert creates(emulator) == []
    # Never `failed`: on SQLite the whole file was locked, so not even the claim was taken; on PostgreSQL only the
    # rate row was, so the claim was taken and given back.
    assert statuses(test_warehouse) == ({} if test_warehouse.kind == "sqlite" else {"a": "pending"})
    assert run_sync(test_warehouse, request("next", interval=NEXT_DAY))["created"] == 1


def test_a_conflict_that_cannot_be_resolved_is_dead_lettered_after_the_retry_budget(test_warehouse, emulator):
    """The token is forgotten and the listing lags: the conflict cannot be resolved. Each run counts it, with its
    real attempts; past the budget the candidate is dead-lettered, listed, and the run fails once, loudly."""
    test_warehouse.seed([one("a", "2026-11-20T10:00:00+00:00", "000000000001")])
    settings = SyncSettings(rate_per_second=50, max_attempts=2, max_retry_seconds=5, retry_budget=2)
    client = PartnerCentralChannelHook().conn
    client.create_relationship(**json.loads(json.dumps(_request_of(test_warehouse, "a"))))  # created elsewhere
    emulator.emulator.configure({"token_ttl_seconds": 0.0, "list_lag_seconds": 3600.0})

    first = run_sync(test_warehouse, request("run-1"), settings)
    state = outcome_rows(test_warehouse)["a"]
    assert (state["status"], state["error_code"], state["attempts"] >= 1) == ("failed", "ConflictException", True)
    assert "retryable" in first["failed"]

    second = run_sync(test_warehouse, request("run-2", interval=NEXT_DAY), settings)
    assert statuses(test_warehouse) == {"a": "dead_letter"}
    assert second["dead_letter"] == 1 and "dead-lettered" in second["failed"] and "a" in second["failed"]
    third = run_sync(test_warehouse, request("run-3", interval=NEXT_DAY), settings)
    assert (third["selected"], third["failed"]) == (0, None)  # not retried forever

    emulator.emulator.configure({"list_lag_seconds": 0.0})
    named = run_sync(test_warehouse, request("by-id", candidate_ids=("a",)), settings)
    assert named["already_exists"] == 1 and statuses(test_warehouse) == {"a": "already_exists"}


def _request_of(test_warehouse, candidate_id: str) -> dict:
    from include.sync import candidates as cand

    [raw] = test_warehouse.query("SELECT * FROM partner_relationship_candidates WHERE candidate_id = ?", [candidate_id])
    row, _ = cand.normalise(raw)
    return cand.request_for(row)


# -- 3. bad input never blocks the rest -----------------------------------------------------------------------------
def test_null_blank_and_duplicated_ids_are_rejected_and_the_rest_goes_on(test_warehouse, emulator):
    """A view without a primary key: NULL, blank and duplicated ids; one bad updated_at."""
    good = distinct_candidates(DAY, 3, 100)
    cursor = test_warehouse.connection.cursor()
    cursor.execute(
        "CREATE TABLE partner_relationship_candidates (candidate_id TEXT, catalog TEXT, association_type TEXT,"
        " program_management_account_identifier TEXT, associated_account_id TEXT, display_name TEXT,"
        " resale_account_model TEXT, sector TEXT, account_scope TEXT, support_plan TEXT, tags TEXT, updated_at TEXT)"
    )
    test_warehouse.connection.commit()
    rows = [
        *good,
        dict(good[0], candidate_id=None, associated_account_id="000000000201"),
        dict(good[0], candidate_id="  ", associated_account_id="000000000202"),
        dict(good[0], candidate_id="twin", associated_account_id="000000000203"),
        dict(good[0], candidate_id="twin ", associated_account_id="000000000204"),
        dict(good[0], candidate_id="bad-date", associated_account_id="000000000205", updated_at="next tuesday"),
    ]
    insert_candidates(
        test_warehouse.connection,
        rows,
        "partner_relationship_candidates",
        test_warehouse.placeholder,
    )

    row = run_sync(test_warehouse, request(max_reject_ratio=1.0))

    states = outcome_rows(test_warehouse)
    assert {cid: r["status"] for cid, r in states.items()} == {
        **{r["candidate_id"]: "created" for r in good},
        "twin": "rejected",
        "bad-date": "rejected",
    }
    assert "candidate_id: unique" in states["twin"]["error_message"]
    assert "appears 2 times" in states["twin"]["error_message"]
    assert "updated_at: not a timestamp" in states["bad-date"]["error_message"]
    summary = json.loads(row["quality_summary"])
    assert (summary["rows_without_candidate_id"], summary["duplicated_candidate_ids"]) == (2, 1)


def test_ids_that_trimming_makes_one_are_duplicates_in_a_table_whose_key_is_unique(test_warehouse, emulator):
    """A primary key on candidate_id keeps the raw ids unique, not the ids as the sync stores them (trimmed): the
    duplicate check of a unique column still finds " twin" and "twin", and a blank id."""
    good = distinct_candidates(DAY, 3, 100)
    test_warehouse.seed(
        [
            *good,
            dict(good[0], candidate_id="twin", associated_account_id="000000000203"),
            dict(good[0], candidate_id=" twin", associated_account_id="000000000204"),
            dict(good[0], candidate_id="  ", associated_account_id="000000000205"),
        ]
    )
    assert test_warehouse.warehouse()._unique_ids(test_warehouse.warehouse().connection) == (
        test_warehouse.kind != "snowflake"
    )

    row = run_sync(test_warehouse, request(max_reject_ratio=1.0))

    states = outcome_rows(test_warehouse)
    assert {cid: r["status"] for cid, r in states.items()} == {
        **{r["candidate_id"]: "created" for r in good},
        "twin": "rejected",
    }
    assert "appears 2 times" in states["twin"]["error_message"]
    summary = json.loads(row["quality_summary"])
    assert (summary["rows_without_candidate_id"], summary["duplicated_candidate_ids"]) == (1, 1)


def test_a_missing_table_or_column_fails_at_once_naming_it(test_warehouse):
    test_warehouse.seed([])
    test_warehouse.execute("DROP TABLE partner_relationship_candidates")
    with pytest.raises(CandidatesTableError, match=r"(?s)partner_relationship_candidates cannot be read.*CREATE VIEW"):
        steps.prepare(test_warehouse.warehouse(), SETTINGS, request())

    columns = ", ".join(f"{c} TEXT" for c in CANDIDATE_COLUMNS if c not in ("sector", "tags"))
    test_warehouse.execute(f"CREATE TABLE partner_relationship_candidates ({columns})")
    with pytest.raises(CandidatesTableError, match=r"has no column\(s\) sector, tags(.|\n)*candidate_id VARCHAR"):
        steps.prepare(test_warehouse.warehouse(), SETTINGS, request())


@pytest.mark.postgres
def test_the_real_database_error_is_what_the_user_sees(test_warehouse):
    """A server-side cursor: closing it after a failed query must not hide the query's own error."""
    if test_warehouse.kind != "postgres":
        pytest.skip("PostgreSQL's server-side cursors")
    test_warehouse.seed([one("a", "2026-11-20T10:00:00+00:00")])
    columns = ", ".join(f"c.{c}" for c in CANDIDATE_COLUMNS if c != "display_name")
    test_warehouse.execute("ALTER TABLE partner_relationship_candidates RENAME TO feed")
    test_warehouse.execute(
        f"CREATE VIEW partner_relationship_candidates AS SELECT {columns},"
        " (1 / (length(c.candidate_id) - 1))::text AS display_name FROM feed c"
    )
    with pytest.raises(Exception, match="division by zero") as raised:
        steps.prepare(test_warehouse.warehouse(), SETTINGS, request())
    assert isinstance(raised.value.orig, psycopg2.errors.DivisionByZero)


# -- 4. native types ------------------------------------------------------------------------------------------------
def test_native_column_types_are_read_as_a_user_would_expect(test_warehouse, emulator):
    """PostgreSQL: JSONB support_plan and tags, BIGINT ids, timestamp without time zone. MariaDB: JSON, BIGINT,
    DATETIME(6). Snowflake: VARIANT, NUMBER, TIMESTAMP_NTZ. SQLite: INTEGER ids and epoch seconds. A numeric
    account id that lost its leading zeros is rejected by the 12-digit rule."""
    postgres = test_warehouse.kind == "postgres"
    json_type, ts_type = {
        "postgres": ("JSONB", "TIMESTAMP"),
        "mariadb": ("JSON", "DATETIME(6)"),
        "snowflake": ("VARIANT", "TIMESTAMP_NTZ"),
    }.get(test_warehouse.kind, ("TEXT", "INTEGER"))
    test_warehouse.execute(
        "CREATE TABLE partner_relationship_candidates (candidate_id BIGINT PRIMARY KEY, catalog TEXT,"
        " association_type TEXT, program_management_account_identifier TEXT, associated_account_id BIGINT,"
        f" display_name TEXT, resale_account_model TEXT, sector TEXT, account_scope TEXT, support_plan {json_type},"
        f" tags {json_type}, updated_at {ts_type})"
    )
    plan = {"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"}}
    moment = dt.datetime(2026, 11, 20, 10)
    if test_warehouse.kind == "sqlite":
        moment = int(moment.replace(tzinfo=dt.UTC).timestamp())
    base = dict(sample_candidates(DAY, good=1)[0], updated_at=moment)
    rows = [
        dict(base, candidate_id=1, associated_account_id=123456789012, support_plan=plan, tags={"team": "a"}),
        dict(base, candidate_id=2, associated_account_id=12345678901, support_plan=None, tags=None),  # lost a zero
    ]
    if not postgres:
        rows = [
            dict(
                r,
                support_plan=r["support_plan"] and json.dumps(r["support_plan"]),
                tags=r["tags"] and json.dumps(r["tags"]),
            )
            for r in rows
        ]
    placeholder = test_warehouse.placeholder
    if postgres:
        from psycopg2.extras import Json

        rows = [
            dict(r, support_plan=r["support_plan"] and Json(r["support_plan"]), tags=r["tags"] and Json(r["tags"]))
            for r in rows
        ]
    insert_candidates(test_warehouse.connection, rows, "partner_relationship_candidates", placeholder)

    row = run_sync(test_warehouse, request(max_reject_ratio=1.0))

    states = outcome_rows(test_warehouse)
    assert (states["1"]["status"], states["2"]["status"]) == ("created", "rejected")
    assert "exactly 12 digits" in states["2"]["error_message"]
    assert row["in_interval"] == 2
    [created] = emulator.emulator.relationship_list()
    assert created["associatedAccountId"] == "123456789012"
    [call] = creates(emulator)
    assert call["request"]["requestedSupportPlan"] == plan and call["request"]["tags"] == [
        {"key": "team", "value": "a"}
    ]
    again = run_sync(test_warehouse, request("again"))
    assert (again["selected"], again["skipped_done"]) == (0, 1)  # JSON re-encoded the same way: no false change


def test_a_candidate_id_with_spaces_is_one_candidate_everywhere(test_warehouse, emulator):
    test_warehouse.seed([one("  padded  ", "2026-11-20T10:00:00+00:00")])
    run_sync(test_warehouse, request())
    assert statuses(test_warehouse) == {"padded": "created"}
    again = run_sync(test_warehouse, request("again", candidate_ids=(" padded",)))
    assert (again["selected"], again["skipped_done"], len(creates(emulator))) == (0, 1, 1)


# -- 5. identity from what was sent ---------------------------------------------------------------------------------
def test_after_a_feed_correction_a_new_candidate_cannot_take_another_candidates_relationship(test_warehouse, emulator):
    test_warehouse.seed([one("original", "2026-11-20T10:00:00+00:00", "000000000001")])
    run_sync(test_warehouse, request("run-1"))
    relationship = outcome_rows(test_warehouse)["original"]["relationship_id"]
    # The feed is corrected: "original" now names another account, and a new row names the first one.
    test_warehouse.execute("UPDATE partner_relationship_candidates SET associated_account_id = '000000000002'")
    test_warehouse.seed([one("newcomer", "2026-11-21T10:00:00+00:00", "000000000001")])

    run_sync(test_warehouse, request("run-2", interval=NEXT_DAY, max_reject_ratio=1.0))

    states = outcome_rows(test_warehouse)
    assert states["newcomer"]["status"] == "rejected"
    assert "already created for candidate original" in states["newcomer"]["error_message"]
    assert (states["original"]["status"], states["original"]["relationship_id"]) == ("created", relationship)
    assert len(creates(emulator)) == 1


def test_an_invalid_twin_never_blocks_a_valid_one(test_warehouse, emulator):
    test_warehouse.seed(
        [
            dict(one("a-invalid", "2026-11-20T10:00:00+00:00"), sector="commercial"),  # first in id order
            one("b-valid", "2026-11-20T10:00:00+00:00"),  # the same relationship
            one("c-twin", "2026-11-20T10:00:00+00:00"),  # a second valid one: loses to b
        ]
    )
    run_sync(test_warehouse, request(max_reject_ratio=1.0))
    states = outcome_rows(test_warehouse)
    assert {cid: r["status"] for cid, r in states.items()} == {
        "a-invalid": "rejected",
        "b-valid": "created",
        "c-twin": "rejected",
    }
    assert "same relationship as candidate b-valid" in states["c-twin"]["error_message"]


def test_an_answer_naming_a_relationship_another_candidate_holds_is_not_recorded_twice(test_warehouse, emulator):
    """Two runs race on two candidates of one relationship (same token): the second answer is the first's
    relationship, and the second candidate is rejected naming the holder instead of recorded as a second owner."""
    test_warehouse.seed(
        [one("x", "2026-11-20T10:00:00+00:00", "000000000001"), one("y", "2026-11-21T10:00:00+00:00", "000000000002")]
    )
    run_x = request("run-x", candidate_ids=("x",))
    run_y = request("run-y", candidate_ids=("y",))
    x_batches = steps.prepare(test_warehouse.warehouse(), SETTINGS, run_x)
    test_warehouse.execute("UPDATE partner_relationship_candidates SET associated_account_id = '000000000001'")
    y_batches = steps.prepare(test_warehouse.warehouse(), SETTINGS, run_y)  # x not created yet: y staged
    warehouse = test_warehouse.warehouse()
    limiter = WarehouseRateLimiter(warehouse, "aws:test", 50)
    for run, batches in ((run_x, x_batches), (run_y, y_batches)):
        steps.create_batch(warehouse, SETTINGS, run, batches[0], PartnerCentralChannelHook(), limiter)

    states = outcome_rows(test_warehouse)
    assert (states["x"]["status"], states["y"]["status"]) == ("created", "rejected")
    assert f"already created for candidate x as {states['x']['relationship_id']}" in states["y"]["error_message"]


# -- 6. clocks and claims -------------------------------------------------------------------------------------------
def test_a_claim_timeout_shorter_than_the_longest_call_is_refused():
    with pytest.raises(ValueError, match="claim_timeout_seconds=100 is not longer than the longest a call can take"):
        SyncSettings(claim_timeout_seconds=100)
    assert SyncSettings(claim_timeout_seconds=100, max_attempts=1, max_retry_seconds=5).claim_timeout_seconds == 100


def test_a_schedule_written_by_a_clock_far_ahead_does_not_stall_the_others(test_warehouse, caplog):
    test_warehouse.seed([])
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    limiter = WarehouseRateLimiter(warehouse, "aws:test", 10)
    ahead = warehouse.db_epoch() + 600
    test_warehouse.state.execute(
        "UPDATE partner_central_rate_limit SET next_free_at = ? WHERE limiter_key = 'aws:test'", [ahead]
    )
    slept = []
    limiter._sleep = slept.append

    with caplog.at_level(logging.WARNING, logger="include.sync.shared_rate_limit"):
        limiter.acquire()

    assert slept == []
    assert "ahead of the warehouse's clock" in caplog.text


def test_claims_are_judged_by_the_warehouse_clock(test_warehouse, monkeypatch):
    """A worker whose clock runs two hours ahead neither takes over another run's live claim (its own clock would call
    it stale) nor stamps its claims in the future."""
    import types

    from include.sync import warehouse as warehouse_module

    test_warehouse.seed([])
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    assert warehouse.claim("run-1", "c1", "pcrel-x", 3600)  # a worker with a good clock

    class AheadDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) + dt.timedelta(hours=2)

    monkeypatch.setattr(warehouse_module, "dt", types.SimpleNamespace(**{**vars(dt), "datetime": AheadDatetime}))
    assert not warehouse.claim("run-2", "c1", "pcrel-x", 3600)  # still live by the warehouse's clock
    assert warehouse.claim("run-2", "c2", "pcrel-y", 3600)
    state = test_warehouse.state  # claims live in the state store
    rows = {r["candidate_id"]: r for r in state.query("SELECT * FROM partner_relationship_outcomes")}
    assert rows["c1"]["dag_run_id"] == "run-1"
    claimed_at = UtcDateTime().process_result_value(rows["c2"]["claimed_at"], warehouse.engine.dialect)
    assert abs((claimed_at - warehouse.db_now()).total_seconds()) < 60

    state.execute(
        "UPDATE partner_relationship_outcomes SET claimed_at = ? WHERE candidate_id = 'c1'",
        [state.sync_time(claimed_at - dt.timedelta(hours=2))],
    )
    assert warehouse.claim("run-2", "c1", "pcrel-x", 3600)  # stale by the warehouse's clock: taken over


# -- 7. hygiene -----------------------------------------------------------------------------------------------------
def test_a_finished_run_leaves_no_staging_and_the_requests_sent_are_kept(test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY, good=3)[:3])
    run_sync(test_warehouse, request("dry", dry_run=True))
    run_sync(test_warehouse, request("real"))
    assert test_warehouse.state.query("SELECT * FROM partner_relationship_staging") == []
    # The history keeps each request sent (or, in a dry run, that would be); the current state the one applied.
    history = test_warehouse.query("SELECT dag_run_id, status, request_json FROM partner_relationship_attempts")
    assert {(r["dag_run_id"], r["status"]) for r in history if r["request_json"]} == {
        ("dry", "dry_run"),
        ("real", "created"),
    }
    sent = {
        r["relationship_id"]: json.loads(r["request_json"])
        for r in test_warehouse.query("SELECT relationship_id, request_json FROM partner_relationship_outcomes")
    }
    assert {rid: request["displayName"] for rid, request in sent.items()} == {
        r["id"]: r["displayName"] for r in emulator.emulator.relationship_list()
    }


def test_history_older_than_the_retention_is_pruned(test_warehouse, emulator):
    test_warehouse.seed([one("a", "2026-11-20T10:00:00+00:00")])
    run_sync(test_warehouse, request("old"))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    for table, column in (
        ("partner_relationship_attempts", "updated_at"),
        ("partner_relationship_sync_runs", "started_at"),
    ):
        for database in {test_warehouse, test_warehouse.state}:  # the state store, and the warehouse's copy
            database.execute(f"UPDATE {table} SET {column} = ?", [database.sync_time(old)])
    warehouse = test_warehouse.warehouse()
    run = request("new", interval=NEXT_DAY)
    steps.prepare(warehouse, SETTINGS, run)
    steps.finish(warehouse, run, retention_days=90)
    assert [r["dag_run_id"] for r in test_warehouse.query("SELECT dag_run_id FROM partner_relationship_sync_runs")] == [
        "new"
    ]
    assert test_warehouse.query("SELECT * FROM partner_relationship_attempts WHERE dag_run_id = 'old'") == []
    assert statuses(test_warehouse) == {"a": "created"}  # the current state is never pruned


# -- the whole promise ----------------------------------------------------------------------------------------------
def test_after_any_sequence_of_faults_one_clean_run_converges(test_warehouse, emulator):
    """Outage, bad credentials, lost responses, a killed batch and a bad row fixed late; then one run with the fault
    gone: every valid candidate created once, none claimed or pending, no relationship twice."""
    rows = distinct_candidates(DAY, 12, 300, bad=True)
    test_warehouse.seed(rows)
    valid = {r["candidate_id"] for r in rows if "bad" not in r["candidate_id"]}
    settings = SyncSettings(rate_per_second=50, batch_size=4, max_attempts=2, max_retry_seconds=5)
    loose = {"max_reject_ratio": 1.0}

    emulator.emulator.configure({"internal_error_rate": 1.0})
    outage = run_sync(test_warehouse, request("outage", **loose), settings)
    assert outage["failed_retryable"] == 12 and outage["failed"]

    emulator.emulator.configure({"internal_error_rate": 0.0, "expired_token": True})
    assert run_sync(test_warehouse, request("expired", **loose), settings)["stopped"]

    emulator.emulator.configure({"expired_token": False, "lose_next_responses": 2})
    warehouse = test_warehouse.warehouse()
    run = request("killed", **loose)
    batches = steps.prepare(warehouse, settings, run)
    limiter = WarehouseRateLimiter(warehouse, "aws:test", 50)
    with pytest.raises(Killed):
        steps.create_batch(warehouse, settings, run, batches[0], dying_hook(3), limiter)
    assert "claimed" in statuses(test_warehouse).values()  # the killed call's claim is left behind

    # The left-behind claim is stale by the time the next run comes (as after claim_timeout_seconds).
    test_warehouse.state.execute(
        "UPDATE partner_relationship_outcomes SET claimed_at = ? WHERE status = 'claimed'",
        [test_warehouse.state.sync_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))],
    )
    final = run_sync(test_warehouse, request("clean", interval=NEXT_DAY, **loose), settings)

    assert final["failed"] is None, final["failed"]
    assert_converged(test_warehouse, emulator, valid)
    tokens = Counter(c["client_token"] for c in creates(emulator) if c["status"] == 200)
    assert len(tokens) == len(valid)
