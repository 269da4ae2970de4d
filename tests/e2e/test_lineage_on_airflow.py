"""OpenLineage on the running Airflow, through the provider's file transport: a sync run's task events name the
candidates table as input, Partner Central's relationships and the outcome tables as outputs."""

from __future__ import annotations

import datetime as dt
import time

from dev.demo_data import distinct_candidates as candidates
from tests.e2e.conftest import DAG_ID, Stack
from tests.warehouses import TestWarehouse

WAREHOUSE = "postgres://127.0.0.1:5432"


def table(stack: Stack, name: str) -> dict:
    return {"namespace": WAREHOUSE, "name": f"{stack.warehouse_db}.public.{name}"}


def datasets(event: dict, key: str) -> list[dict]:
    return [{"namespace": item["namespace"], "name": item["name"]} for item in event[key]]


def completed_task_events(stack: Stack, seen: int, expected: set[str], timeout: float = 30) -> dict[str, dict]:
    """The sync's tasks' COMPLETE events after the first `seen`, by task, once `expected` are all there or `timeout`
    passed: the provider's listener writes a task's event as the task ends, which may be a moment after the run is
    shown done (record_run is its last task)."""
    deadline = time.monotonic() + timeout
    while True:
        completed = {
            event["job"]["name"].removeprefix(f"{DAG_ID}."): event
            for event in stack.lineage_events()[seen:]
            if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith(f"{DAG_ID}.")
        }
        if expected <= set(completed) or time.monotonic() > deadline:
            return completed
        time.sleep(0.5)


def test_a_sync_runs_task_events_name_what_it_read_and_wrote(e2e: Stack, warehouse: TestWarehouse):
    warehouse.seed(candidates(dt.date(2026, 6, 1), 3, first_account=6000))
    seen = len(e2e.lineage_events())

    run_id = e2e.trigger_sync({})
    assert e2e.wait_sync_runs([run_id], timeout=180) == {run_id: "success"}

    completed = completed_task_events(e2e, seen, {"check_and_stage", "create_relationships", "record_run"})
    assert {"check_and_stage", "create_relationships", "record_run"} <= set(completed)
    candidates_table = table(e2e, "partner_relationship_candidates")
    outcomes = table(e2e, "partner_relationship_outcomes")
    assert datasets(completed["check_and_stage"], "inputs") == [candidates_table]
    created = completed["create_relationships"]
    assert datasets(created, "inputs") == [candidates_table]
    assert datasets(created, "outputs") == [
        {"namespace": "awspartnercentral://us-east-1", "name": "relationships"},
        outcomes,
        table(e2e, "partner_relationship_attempts"),
    ]
    assert datasets(completed["record_run"], "outputs") == [table(e2e, "partner_relationship_sync_runs")]
