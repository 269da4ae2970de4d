"""A running Airflow for the end-to-end tests: API server, scheduler, DAG processor and triggerer on the LocalExecutor
(dev/local_stack, as `make airflow` starts it), its metadata database and the warehouse on the local
PostgreSQL server, and the emulator. Started once per session; each test gets an empty warehouse and a fresh
emulator. The Airflow home, with every component's log and the task logs, is kept in test-artifacts/e2e-airflow/."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from dev import PROJECT_DIR
from dev.local_stack.databases import free_port, fresh_postgres_database
from dev.local_stack.supervisor import LocalAirflow
from tests.warehouses import POSTGRES_DSN, TestWarehouse

DAG_ID = "partner_relationship_sync"
METADATA_DB = "partner_sync_e2e_airflow"
WAREHOUSE_DB = "partner_sync_e2e_warehouse"
ARTIFACTS = PROJECT_DIR / "test-artifacts"
TERMINAL = ("success", "failed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.postgres)


class Stack(LocalAirflow):
    """The local Airflow, plus what the tests ask of it about the sync DAG: runs, backfills, the emulator's log."""

    def trigger_sync(self, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """POST /dags/{dag_id}/dagRuns as the UI's trigger form sends it: every Param in conf."""
        form = {"dry_run": False, "candidate_ids": [], "include_all_pending": False, "limit": None}
        return self.trigger(DAG_ID, form | {"max_reject_ratio": 0.2} | conf, logical_date)

    def runs(self) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100&order_by=-id")["dag_runs"]

    def sync_run(self, run_id: str) -> dict[str, Any]:
        return self.run(DAG_ID, run_id)

    def sync_task_instances(self, run_id: str) -> list[dict[str, Any]]:
        return self.task_instances(DAG_ID, run_id)

    def wait_sync_runs(self, run_ids: list[str], timeout: float) -> dict[str, str]:
        return self.wait_runs(DAG_ID, run_ids, timeout)

    # -- backfills ---------------------------------------------------------------------------------------------------
    def backfill(self, first: dt.date, last: dt.date, *reprocess: str) -> int:
        """`airflow backfill create` over the logical dates first..last, as a user runs it; the backfill's id."""
        command = ["airflow", "backfill", "create", "--dag-id", DAG_ID]
        command += ["--from-date", first.isoformat(), "--to-date", last.isoformat(), *reprocess]
        done = subprocess.run(command, env=self.env(), cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        backfills = self.call("GET", f"/api/v2/backfills?dag_id={DAG_ID}&limit=100")["backfills"]
        return max(backfill["id"] for backfill in backfills)

    def wait_backfill(self, backfill_id: int, timeout: float) -> dict[str, str]:
        """Until the scheduler completes the backfill; the states of its runs by logical date."""
        deadline = time.monotonic() + timeout
        while self.call("GET", f"/api/v2/backfills/{backfill_id}")["completed_at"] is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} not complete after {timeout:.0f} s")
            time.sleep(2)
        backfill = self.call("GET", f"/api/v2/backfills/{backfill_id}")
        first, last = backfill["from_date"][:10], backfill["to_date"][:10]
        return {
            run["logical_date"][:10]: run["state"]
            for run in self.runs()
            if run["run_type"] == "backfill" and first <= run["logical_date"][:10] <= last
        }

    def wait_for_scheduled_run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(run["run_type"] == "scheduled" for run in self.runs()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduled run {timeout:.0f} s after unpausing; logs in {self.home}/logs")
            time.sleep(1)
        self.wait_until_no_run_in_flight(timeout)

    def wait_until_no_run_in_flight(self, timeout: float) -> None:
        """Until no run of the sync DAG is queued or running, listed afresh each time: the scheduler may add one
        at any moment (the first after unpausing, the next at midnight UTC)."""
        deadline = time.monotonic() + timeout
        while busy := [run["dag_run_id"] for run in self.runs() if run["state"] not in TERMINAL]:
            if time.monotonic() > deadline:
                pytest.fail(f"runs {busy} still in flight after {timeout:.0f} s; logs in {self.home}/logs")
            time.sleep(1)

    def creates(self) -> list[dict[str, Any]]:
        return [call for call in self.emulator("calls") if call["operation"] == "CreateRelationship"]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    home = ARTIFACTS / "e2e-airflow"
    Stack(home=home).stop()  # what a killed earlier session may have left running
    shutil.rmtree(home, ignore_errors=True)
    fresh_postgres_database(METADATA_DB)
    fresh_postgres_database(WAREHOUSE_DB)
    airflow = Stack(
        home=home,
        settings_file=Path(__file__).with_name("airflow_settings.yaml"),
        port=free_port(),
        emulator_port=free_port(),
        metadata_db=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{METADATA_DB}",
        extra_env={"WAREHOUSE_DB": WAREHOUSE_DB},
    )
    airflow.start(timeout=300)
    try:
        airflow.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        # Unpausing makes the scheduler create the latest interval's run a moment later; let it come and finish
        # before the first test, so that it never joins a test's race half-way.
        airflow.wait_for_scheduled_run(timeout=180)
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture
def e2e(stack: Stack) -> Iterator[Stack]:
    """The running stack with an empty warehouse, a fresh emulator and no run in flight."""
    stack.emulator("reset", {})
    stack.emulator("config", {"create_rate": 3.0, "latency_ms": 0, "internal_error_rate": 0.0})
    stack.wait_until_no_run_in_flight(timeout=180)
    fresh_postgres_database(WAREHOUSE_DB)
    yield stack


@pytest.fixture
def warehouse(e2e: Stack) -> Iterator[TestWarehouse]:
    dsn = {**POSTGRES_DSN, "dbname": WAREHOUSE_DB}
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{WAREHOUSE_DB}"
    result = TestWarehouse("postgres", lambda: psycopg2.connect(**dsn), url, {})
    yield result
    result.close()


def outcomes(warehouse: TestWarehouse) -> dict[str, dict[str, Any]]:
    return {row["candidate_id"]: row for row in warehouse.query("SELECT * FROM partner_relationship_outcomes")}
