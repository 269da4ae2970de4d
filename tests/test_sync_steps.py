"""The sync's steps on real warehouses (SQLite, PostgreSQL) and the emulator: selection, claims, kills, shared rate."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import pytest

from dev.demo_data import sample_candidates
from dev.emulator.service import max_in_any_second
from include.partner_central.hooks import PartnerCentralChannelHook
from include.sync import candidates as cand
from include.sync import steps
from include.sync.dialect import identifier
from include.sync.settings import SyncSettings, Tables
from include.sync.shared_rate_limit import WarehouseRateLimiter

DAY = dt.date(2026, 11, 20)
INTERVAL = (
    dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc),
    dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc),
)
SETTINGS = SyncSettings(rate_per_second=50, batch_size=10)


def request(run_id: str = "run-1", **overrides) -> steps.RunRequest:
    return steps.RunRequest(**{"dag_run_id": run_id, "interval": INTERVAL, **overrides})


def sync(test_warehouse, run: steps.RunRequest, settings: SyncSettings = SETTINGS) -> dict:
    warehouse = test_warehouse.warehouse()
    hook = PartnerCentralChannelHook()
    batches = steps.prepare(warehouse, settings, run)
    limiter = WarehouseRateLimiter(warehouse, "aws:test", settings.rate_per_second)
    for batch in batches:
        steps.create_batch(warehouse, settings, run, batch, hook, limiter)
    try:
        return steps.finish(warehouse, run)
    except steps.SyncRunFailed:
        return warehouse.run(run.dag_run_id)


def statuses(test_warehouse) -> dict[str, str]:
    return {r["candidate_id"]: r["status"] for r in test_warehouse.query("SELECT * FROM partner_relationship_outcomes")}


@pytest.fixture(autouse=True)
def _fast_emulator(emulator):
    emulator.emulator.configure({"create_rate": 100})


def one(candidate_id: str, updated_at: str, account: str = "000000000001") -> dict:
    row = sample_candidates(DAY, good=1)[0]
    return dict(row, candidate_id=candidate_id, updated_at=updated_at, associated_account_id=account)


def test_the_interval_labels_what_is_new_half_open_and_every_pending_row_is_taken(test_warehouse):
    test_warehouse.seed(
        [
            one("before", "2026-11-19T23:59:59+00:00", "000000000001"),
            one("at-start", "2026-11-20T00:00:00+00:00", "000000000002"),
            one("late-in-day", "2026-11-20T23:59:59.999+00:00", "000000000003"),
            one("at-end", "2026-11-21T00:00:00+00:00", "000000000004"),
            one("other-offset", "2026-11-21T00:30:00+01:00", "000000000005"),
        ]
    )
    row = sync(test_warehouse, request())
    assert set(statuses(test_warehouse).values()) == {"created"} and len(statuses(test_warehouse)) == 5
    assert (row["selected"], row["in_interval"]) == (5, 3)


def test_retryable_failures_of_earlier_runs_are_retried_and_permanent_ones_are_not(test_warehouse, emulator):
    from include.sync import candidates as cand
    from include.sync.warehouse import Outcome

    test_warehouse.seed(
        [
            one("flaky", "2026-11-19T10:00:00+00:00", "000000000001"),
            one("refused", "2026-11-19T10:00:00+00:00", "000000000002"),
        ]
    )
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    rows = {
        r["candidate_id"]: cand.normalise(r)[0]
        for r in test_warehouse.query("SELECT * FROM partner_relationship_candidates")
    }
    for candidate_id, code, retryable in (
        ("flaky", "InternalServerException", True),
        ("refused", "ValidationException", False),
    ):
        outcome = Outcome(
            candidate_id,
            "failed",
            error_code=code,
            retryable=retryable,
            fingerprint=cand.fingerprint(rows[candidate_id]),
        )
        warehouse.record("old", outcome)

    sync(test_warehouse, request())

    assert statuses(test_warehouse) == {"flaky": "created", "refused": "failed"}


def test_the_interval_reads_updated_at_kept_as_text(test_warehouse):
    test_warehouse.seed(
        [one("in", "2026-11-20T10:00:00Z"), one("out", "2026-11-21T10:00:00Z", "000000000002")], timestamp_type="TEXT"
    )
    row = sync(test_warehouse, request())
    assert set(statuses(test_warehouse)) == {"in", "out"} and row["in_interval"] == 1


def test_a_cleared_run_sends_its_retryable_failures_again(test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY, good=4)[:4])
    emulator.emulator.configure({"internal_error_rate": 1.0})
    settings = SyncSettings(rate_per_second=50, max_attempts=1)
    first = sync(test_warehouse, request("backfill__2026-11-20"), settings)
    assert first["failed_retryable"] == 4

    emulator.emulator.configure({"internal_error_rate": 0.0})
    again = sync(test_warehouse, request("backfill__2026-11-20"), settings)  # same run id, as a cleared run keeps

    assert (again["created"], again["failed_retryable"]) == (4, 0)
    assert set(statuses(test_warehouse).values()) == {"created"}


def test_a_created_state_is_never_overwritten_by_a_later_failure(test_warehouse):
    from include.sync.warehouse import Outcome

    test_warehouse.seed([])
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    warehouse.record("a", Outcome("c1", "created", relationship_id="rs-aaaaaaaaaaaaa", attempts=1))
    warehouse.record("stale", Outcome("c1", "failed", error_code="InternalServerException", retryable=True))
    warehouse.write_back()  # an analytical warehouse's copy, as a batch leaves it
    [row] = test_warehouse.query("SELECT status, relationship_id FROM partner_relationship_outcomes")
    assert row == {"status": "created", "relationship_id": "rs-aaaaaaaaaaaaa"}


def test_candidate_ids_limit_and_all_pending(test_warehouse):
    rows = sample_candidates(DAY - dt.timedelta(days=3))[:6]
    test_warehouse.seed(rows)
    sync(test_warehouse, request("ids", candidate_ids=("cand-0002", "cand-0005")))
    assert set(statuses(test_warehouse)) == {"cand-0002", "cand-0005"}

    sync(test_warehouse, request("limited", include_all_pending=True, limit=2))
    assert set(statuses(test_warehouse)) == {"cand-0001", "cand-0002", "cand-0003", "cand-0005"}

    sync(test_warehouse, request("all", include_all_pending=True))
    assert set(statuses(test_warehouse)) == {row["candidate_id"] for row in rows}


def test_a_candidate_changed_after_creation_is_reported_not_sent_again(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    test_warehouse.execute(
        "UPDATE partner_relationship_candidates SET display_name = ?, updated_at = ?",
        ["Renamed", test_warehouse.moment("2026-11-20T11:00:00+00:00")],
    )

    second = sync(test_warehouse, request("second"))

    assert second["changed_after_done"] == 1
    assert len([c for c in emulator.emulator.call_log() if c["operation"] == "CreateRelationship"]) == 1


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even except-blocks for Exception."""


class DiesAfter:
    """The real boto3 client, until the process 'dies' right after the n-th create was committed by the service."""

    def __init__(self, client, creates: int):
        self.client, self.left = client, creates

    def __getattr__(self, name):
        return getattr(self.client, name)

    def create_relationship(self, **request):
        response = self.client.create_relationship(**request)
        self.left -= 1
        if self.left == 0:
            raise Killed
        return response


def dying_hook(creates: int) -> PartnerCentralChannelHook:
    """The hook, whose own client dies right after the n-th create was committed by the service."""
    hook = PartnerCentralChannelHook()
    hook.conn = DiesAfter(hook.conn, creates)
    return hook


def test_a_batch_killed_half_way_then_retried_has_no_duplicate_and_no_missing_outcome(test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))
    run = request()
    settings = SyncSettings(rate_per_second=50, batch_size=100)
    warehouse = test_warehouse.warehouse()
    [batch] = steps.prepare(warehouse, settings, run)
    hook = PartnerCentralChannelHook()
    limiter = WarehouseRateLimiter(warehouse, "aws:test", 50)

    with pytest.raises(Killed):
        steps.create_batch(warehouse, settings, run, batch, dying_hook(10), limiter)
    assert Counter(statuses(test_warehouse).values())["created"] == 9  # the 10th was created, never recorded

    retry_warehouse = test_warehouse.warehouse()  # the retry is a new process with a new connection
    steps.create_batch(
        retry_warehouse, settings, run, batch, hook, WarehouseRateLimiter(retry_warehouse, "aws:test", 50)
    )

    assert steps.finish(retry_warehouse, run)["created"] == 25
    assert len(emulator.emulator.relationship_list()) == 25
    created_calls = [c for c in emulator.emulator.call_log() if c["operation"] == "CreateRelationship"]
    assert len(created_calls) == 26  # the 10th candidate was sent twice, with the same token
    assert len({c["client_token"] for c in created_calls}) == 25


def send_batch_in_its_own_process(urls: tuple[str, dict, str], settings, run, batch) -> dict:
    """One batch task as a worker runs it: its own process, warehouse connection and limiter object."""
    import sqlalchemy as sa

    from include.sync.warehouse import Warehouse

    url, engine_args, state_url = urls
    source = None if state_url == url else sa.create_engine(url, **engine_args)
    warehouse = Warehouse(sa.create_engine(state_url), Tables(), source=source)
    try:
        limiter = WarehouseRateLimiter(warehouse, "aws:test", settings.rate_per_second)
        return dict(steps.create_batch(warehouse, settings, run, batch, PartnerCentralChannelHook(), limiter))
    finally:
        warehouse.close()
        warehouse.engine.dispose()


def test_two_runs_at_once_share_the_rate_and_create_each_relationship_once(test_warehouse, emulator):
    """Two DAG runs (a backfill and a manual run) over the same candidates, in parallel, each batch in its own process
    with its own connection and limiter object, as on workers: the warehouse claims and the shared schedule keep them
    honest. (Threads of one process would measure the GIL's scheduling as well: a thread kept waiting after taking
    its slot arrives late and bunches with the next, which separate worker processes do not do to each other.)"""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    emulator.emulator.configure({"create_rate": 5})
    test_warehouse.seed(sample_candidates(DAY, good=20))
    settings = SyncSettings(rate_per_second=5, batch_size=5)
    runs = [request("backfill", max_reject_ratio=0.5), request("manual", max_reject_ratio=0.5)]
    plans = {run.dag_run_id: steps.prepare(test_warehouse.warehouse(), settings, run) for run in runs}
    jobs = [(run, batch) for run in runs for batch in plans[run.dag_run_id]]
    urls = (test_warehouse.url, test_warehouse.engine_args, test_warehouse.state.url)

    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(send_batch_in_its_own_process, urls, settings, *job) for job in jobs]
        for future in futures:
            future.result(timeout=180)  # a batch's error is raised here
    # Each run's end writes back what its batches may have failed to (as record_run does): concurrent batch
    # write-backs to an analytical warehouse may fail or land out of order, and the state store has it all.
    test_warehouse.warehouse().write_back()

    assert len(emulator.emulator.relationship_list()) == 20
    calls = [c for c in emulator.emulator.call_log() if c["operation"] == "CreateRelationship"]
    assert [c for c in calls if c["error_code"]] == []
    assert max_in_any_second([c["started"] for c in calls]) <= 5
    done = test_warehouse.query(
        "SELECT dag_run_id, status FROM partner_relationship_attempts WHERE status IN ('created', 'already_exists')"
    )
    assert len(done) == 20


def test_batches_never_exceed_the_map_limit():
    assert steps.plan_batches(0, 50, 1024) == []
    batches = steps.plan_batches(1_000_000, 50, 1024)
    assert len(batches) <= 1024
    assert batches[0].first == 0 and batches[-1].end == 1_000_000
    assert all(a.end == b.first for a, b in itertools.pairwise(batches))
    assert len(steps.plan_batches(120, 50, 1024)) == 3


@pytest.mark.parametrize("name", ["x; DROP TABLE y", "1abc", "a.b.c", "", "a" * 64])
def test_table_names_from_configuration_are_validated(name):
    with pytest.raises(ValueError, match="outcomes_table must be a table name"):
        Tables(outcomes=name)


def test_settings_come_from_the_lookup_and_say_what_is_wrong():
    values = {"batch_size": "7", "outcomes_table": "sync.outcomes"}
    settings = SyncSettings.load(values.get)
    assert settings.batch_size == 7 and settings.tables.outcomes == "sync.outcomes"
    with pytest.raises(ValueError, match="partner_sync_batch_size must be a int"):
        SyncSettings.load({"batch_size": "many"}.get)
    assert identifier("analytics.candidates", "candidates_table") == "analytics.candidates"


def test_a_candidate_for_a_relationship_another_candidate_created_is_rejected_naming_it(test_warehouse):
    # Enough other accounts in the run that the look-up of created identities spans many of them.
    others = [one(f"other-{n:03d}", "2026-11-20T09:00:00+00:00", account=f"{500 + n:012d}") for n in range(40)]
    test_warehouse.seed([one("first", "2026-11-20T08:00:00+00:00"), *others])
    sync(test_warehouse, request("run-1"))
    assert statuses(test_warehouse)["first"] == "created"

    later_day = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(8), tzinfo=dt.timezone.utc).isoformat()
    test_warehouse.seed([one("second", later_day)])  # the same relationship as "first", under another id
    next_interval = (INTERVAL[1], INTERVAL[1] + dt.timedelta(days=1))
    sync(test_warehouse, steps.RunRequest(dag_run_id="run-2", interval=next_interval, max_reject_ratio=1.0))
    second = test_warehouse.query("SELECT * FROM partner_relationship_outcomes WHERE candidate_id = 'second'")[0]
    assert second["status"] == "rejected"
    assert "linked by another candidate" in second["error_message"]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"display_name": "  Padded Name  ", "sector": " COMMERCIAL"},
        {"resale_account_model": "   ", "account_scope": "", "tags": None},  # blank optional values count as missing
        {"display_name": "", "support_plan": '  {"resoldEnterprise": {}}  '},  # a blank required value stays blank
        {"associated_account_id": None, "tags": '{"team": "a"}'},
    ],
)
def test_the_quick_fingerprint_of_a_text_row_is_the_fingerprint_of_its_cleaned_row(changes):
    raw = {**sample_candidates(DAY, good=1)[0], **changes}
    assert cand.quick_fingerprint(raw) == cand.fingerprint(cand.clean_values(raw)[0])


@pytest.mark.parametrize("changes", [{"associated_account_id": 123456789012}, {"tags": {"team": "a"}}])
def test_a_row_with_a_value_that_is_not_text_takes_the_full_path(changes):
    assert cand.quick_fingerprint({**sample_candidates(DAY, good=1)[0], **changes}) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-08-01 10:00:00.000000", dt.datetime(2026, 8, 1, 10, tzinfo=dt.timezone.utc)),  # MariaDB's DATETIME(6)
        ("0000-00-00 00:00:00.000000", None),  # its zero date, read as NULL as mysqlclient reads it
        ("1763283600", dt.datetime(2025, 11, 16, 9, tzinfo=dt.timezone.utc)),
    ],
)
def test_updated_at_read_as_text_parses_as_the_driver_would_have_read_it(value, expected):
    assert cand.parse_timestamp(value) == (expected, None)
