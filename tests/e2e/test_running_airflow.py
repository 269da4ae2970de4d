"""The sync on a running Airflow: REST triggers, backfills, concurrent runs sharing one pool and rate, and a worker
killed mid-batch. Every promise is checked in the warehouse and in the emulator's own log of calls."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from dev.demo_data import distinct_candidates as candidates
from dev.emulator.service import max_in_any_second
from dev.local_stack.rest_client import ApiCallError
from tests.e2e.conftest import Stack, outcomes
from tests.warehouses import TestWarehouse

# The stack's start counts against the first test; each test's own waits are bounded below this.
pytestmark = pytest.mark.timeout(900)
POOL_SLOTS = 3  # tests/e2e/airflow_settings.yaml
RATE = 3


def assert_created_once(stack: Stack, warehouse: TestWarehouse, expected: set[str]) -> None:
    """Each expected candidate has one relationship, made by one successful create, and a done outcome."""
    relationships = stack.emulator("relationships")
    assert len(relationships) == len(expected)
    successful = Counter(call["client_token"] for call in stack.creates() if call["status"] == 200)
    assert len(successful) == len(expected)
    states = outcomes(warehouse)
    done = {cid for cid, row in states.items() if row["status"] in ("created", "already_exists")}
    assert done == expected
    assert {states[cid]["relationship_id"] for cid in expected} == {r["id"] for r in relationships}


def assert_rate_and_in_flight_held(stack: Stack) -> None:
    calls = stack.emulator("calls")
    creates = [call for call in calls if call["operation"] == "CreateRelationship"]
    in_flight = max(call["in_flight"] for call in calls)
    assert 2 <= in_flight <= POOL_SLOTS, f"{in_flight} calls in flight at most"
    assert max_in_any_second([call["started"] for call in creates]) <= RATE
    assert not [call for call in calls if call["error_code"] == "ThrottlingException"]


def test_a_rest_trigger_with_the_forms_conf_syncs_and_a_bad_conf_is_refused(e2e: Stack, warehouse: TestWarehouse):
    day = dt.date(2026, 2, 2)
    rows = candidates(day, 8, first_account=100, bad=True)
    warehouse.seed(rows)
    run_id = e2e.trigger_sync({"include_all_pending": True, "max_reject_ratio": 0.5})
    assert e2e.wait_sync_runs([run_id], timeout=180) == {run_id: "success"}
    good = {row["candidate_id"] for row in rows if "bad" not in row["candidate_id"]}
    assert_created_once(e2e, warehouse, good)
    rejected = {cid: row for cid, row in outcomes(warehouse).items() if row["status"] == "rejected"}
    assert len(rejected) == 5 and all(row["error_message"] for row in rejected.values())

    runs_before = len(e2e.runs())
    with pytest.raises(ApiCallError) as refused:
        e2e.trigger_sync({"limit": 0})
    assert refused.value.status == 400
    assert "limit" in refused.value.detail and "minimum" in refused.value.detail
    with pytest.raises(ApiCallError) as refused:
        e2e.trigger_sync({"candidate_ids": "cand-1"})
    assert refused.value.status == 400 and "candidate_ids" in refused.value.detail
    assert len(e2e.runs()) == runs_before


def test_a_backfill_after_an_outage_creates_each_candidate_once_and_a_completed_reprocess_sends_nothing(
    e2e: Stack, warehouse: TestWarehouse
):
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=n) for n in range(3)]
    rows = [row for n, day in enumerate(days) for row in candidates(day, 4, first_account=1000 * (n + 1))]
    warehouse.seed(rows)
    expected = {row["candidate_id"] for row in rows}

    e2e.emulator("config", {"internal_error_rate": 1.0})
    first = e2e.wait_backfill(e2e.backfill(days[0], days[-1]), timeout=240)
    assert first == {day.isoformat(): "failed" for day in days}
    states = outcomes(warehouse)
    assert {cid for cid, row in states.items() if row["status"] == "failed" and row["retryable"]} == expected
    assert not e2e.emulator("relationships")

    e2e.emulator("config", {"internal_error_rate": 0.0})
    second = e2e.wait_backfill(e2e.backfill(days[0], days[-1], "--reprocess-behavior", "failed"), timeout=240)
    assert second == {day.isoformat(): "success" for day in days}
    assert_created_once(e2e, warehouse, expected)

    creates_before = len(e2e.creates())
    third = e2e.wait_backfill(e2e.backfill(days[0], days[-1], "--reprocess-behavior", "completed"), timeout=240)
    assert third == {day.isoformat(): "success" for day in days}
    assert len(e2e.creates()) == creates_before
    assert_created_once(e2e, warehouse, expected)


def test_a_backfill_and_a_manual_run_at_once_share_one_pool_and_one_rate(e2e: Stack, warehouse: TestWarehouse):
    # Every run takes every pending candidate, so to be sure that both sides send, the manual run starts alone on a
    # day of its own; the backfill's two days land while it is sending, and the backfill races it for what is left.
    manual_rows = candidates(dt.date(2026, 4, 10), 18, first_account=50_000)
    warehouse.seed(manual_rows)
    # Calls slower than slots ÷ rate: unbounded, more than POOL_SLOTS calls would be in flight at once.
    e2e.emulator("config", {"latency_ms": 1500})
    manual = e2e.trigger_sync({})
    deadline = time.monotonic() + 120
    while not e2e.creates():
        assert time.monotonic() < deadline, "the manual run did not start sending"
        time.sleep(0.2)
    days = [dt.date(2026, 4, 1) + dt.timedelta(days=n) for n in range(2)]
    backfill_rows = [row for n, day in enumerate(days) for row in candidates(day, 15, first_account=5000 * (n + 1))]
    warehouse.seed(backfill_rows)
    rows = manual_rows + backfill_rows
    backfill = e2e.backfill(days[0], days[-1])
    assert e2e.wait_sync_runs([manual], timeout=300) == {manual: "success"}
    assert set(e2e.wait_backfill(backfill, timeout=300).values()) == {"success"}

    assert_created_once(e2e, warehouse, {row["candidate_id"] for row in rows})
    assert_rate_and_in_flight_held(e2e)
    # Both sides really sent: the overlap was exercised, not one side finding everything done.
    created = warehouse.query("SELECT DISTINCT dag_run_id FROM partner_relationship_attempts WHERE status = 'created'")
    senders = {row["dag_run_id"] for row in created}
    # (The DAG's own scheduled run, made when the stack unpaused it, may take some of the manual run's share: it is
    # a third side of the same race.)
    assert any(not run_id.startswith("backfill__") for run_id in senders), senders
    assert any(run_id.startswith("backfill__") for run_id in senders), senders


def test_a_batch_task_killed_mid_batch_is_retried_without_duplicates_or_lost_outcomes(
    e2e: Stack, warehouse: TestWarehouse
):
    rows = candidates(dt.date(2026, 5, 5), 12, first_account=9000)
    warehouse.seed(rows)
    e2e.call("PATCH", "/api/v2/variables/partner_sync_batch_size", {"key": "partner_sync_batch_size", "value": "50"})
    try:
        run_id = e2e.trigger_sync({"include_all_pending": True})
        deadline = time.monotonic() + 120
        while len(e2e.creates()) < 5:  # about half of the single batch (3 calls a second)
            assert time.monotonic() < deadline, "the batch did not start sending"
            time.sleep(0.05)
        batch_ti = next(ti for ti in e2e.sync_task_instances(run_id) if ti["task_id"] == "create_relationships")
        pid = task_process(batch_ti["id"])
        os.kill(pid, signal.SIGKILL)
        sent_when_killed = len(e2e.creates())
        assert sent_when_killed < len(rows)

        assert e2e.wait_sync_runs([run_id], timeout=240) == {run_id: "success"}
    finally:
        e2e.call("PATCH", "/api/v2/variables/partner_sync_batch_size", {"key": "partner_sync_batch_size", "value": "6"})
    batch_ti = next(ti for ti in e2e.sync_task_instances(run_id) if ti["task_id"] == "create_relationships")
    assert batch_ti["try_number"] == 2
    assert_created_once(e2e, warehouse, {row["candidate_id"] for row in rows})


def task_process(ti_id: str) -> int:
    """The pid of the process running a task instance: the task runner names itself `airflow worker -- <ti id>`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.strip() == f"airflow worker -- {ti_id}":
            return int(proc.name)
    raise LookupError(f"no process runs task instance {ti_id}")
