"""The sync's Asset on the running Airflow: a run that creates relationships emits an event with its counts, and the
scheduler triggers a DAG scheduled on the Asset (tests/e2e/dags/relationships_downstream.py), whose task reads the
counts from the triggering event; a dry run triggers nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse

import pytest

from dev.demo_data import distinct_candidates as candidates
from include.sync.assets import RELATIONSHIPS
from tests.e2e.conftest import Stack
from tests.warehouses import TestWarehouse

pytestmark = pytest.mark.timeout(600)
DOWNSTREAM = "partner_relationships_downstream"


def downstream_runs(stack: Stack) -> list[dict]:
    return stack.call("GET", f"/api/v2/dags/{DOWNSTREAM}/dagRuns?order_by=id")["dag_runs"]


def wait_downstream_done(stack: Stack, count: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = downstream_runs(stack)
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{DOWNSTREAM}: {count} finished run(s) expected after {timeout:.0f} s, have {runs}")
        time.sleep(1)


def test_a_run_that_creates_triggers_the_downstream_dag_with_its_counts(e2e: Stack, warehouse: TestWarehouse):
    e2e.call("PATCH", f"/api/v2/dags/{DOWNSTREAM}", {"is_paused": False})
    before = len(downstream_runs(e2e))
    warehouse.seed(candidates(dt.date(2026, 5, 1), 4, first_account=5000))

    dry = e2e.trigger_sync({"dry_run": True})
    assert e2e.wait_sync_runs([dry], timeout=180) == {dry: "success"}
    applied = e2e.trigger_sync({})
    assert e2e.wait_sync_runs([applied], timeout=180) == {applied: "success"}

    [triggered] = wait_downstream_done(e2e, before + 1)[before:]
    assert triggered["state"] == "success"
    path = f"/api/v2/dags/{DOWNSTREAM}/dagRuns/{urllib.parse.quote(triggered['dag_run_id'])}"
    returned = e2e.call("GET", f"{path}/taskInstances/read_events/xcomEntries/return_value")["value"]
    [extra] = json.loads(returned) if isinstance(returned, str) else returned  # stored as JSON text, or as JSON
    assert (extra["dag_run_id"], extra["changed"], extra["counts"]["created"]) == (applied, 4, 4)
    events = e2e.call("GET", "/api/v2/assets/events?source_dag_id=partner_relationship_sync&limit=100")
    mine = [event for event in events["asset_events"] if event["source_run_id"] in (dry, applied)]
    assert [(event["uri"], event["source_run_id"]) for event in mine] == [(RELATIONSHIPS.uri, applied)]
    time.sleep(5)  # what a second, wrong trigger would need to show
    assert len(downstream_runs(e2e)) == before + 1
