"""A running Airflow for the end-to-end tests: API server, scheduler, DAG processor and triggerer on the LocalExecutor
(dev/local_stack, as `make airflow` starts it), its metadata database and the warehouse on the local
PostgreSQL server, and the emulator. Started once per session; each test gets an empty warehouse and a fresh
emulator. The Airflow home, with every component's log and the task logs, is kept in test-artifacts/e2e-airflow/."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from dev import PROJECT_DIR
from dev.emulator.service import Settings as EmulatorSettings
from dev.local_stack.databases import free_port, fresh_postgres_database
from dev.local_stack.rest_client import SYNC_DAG_ID, ApiCallError
from dev.local_stack.supervisor import LocalAirflow
from include.sync.preflight import is_probe
from tests.warehouses import POSTGRES_DSN, TestWarehouse

DAG_ID = SYNC_DAG_ID
METADATA_DB = "partner_sync_e2e_airflow"
WAREHOUSE_DB = "partner_sync_e2e_warehouse"
ARTIFACTS = PROJECT_DIR / "test-artifacts"
TEST_DAGS = Path(__file__).with_name("dags")
DEADLINE_MINUTES = "0.05"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.postgres)


@dataclasses.dataclass
class Stack(LocalAirflow):
    """The local Airflow, plus what the tests ask of it about the sync DAG: runs, backfills, the emulator's log."""

    warehouse_db: str = WAREHOUSE_DB  # the PostgreSQL database of its connection partner_warehouse

    def trigger_sync(self, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """POST /dags/{dag_id}/dagRuns as the UI's trigger form sends it: every Param in conf."""
        form = {"dry_run": False, "candidate_ids": [], "include_all_pending": False, "limit": None}
        return self.trigger(DAG_ID, form | {"max_reject_ratio": 0.2} | conf, logical_date)

    def set_variables(self, variables: dict[str, str]) -> None:
        """Create or change Airflow Variables, as a user does in the UI (Admin → Variables)."""
        for key, value in variables.items():
            try:
                self.call("PATCH", f"/api/v2/variables/{key}", {"key": key, "value": value})
            except ApiCallError as missing:
                assert missing.status == 404
                self.call("POST", "/api/v2/variables", {"key": key, "value": value})

    def delete_variables(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.call("DELETE", f"/api/v2/variables/{key}")

    def set_connection(self, conn_id: str, connection: dict[str, Any]) -> None:
        """Create or replace a connection given as in AIRFLOW_CONN_* JSON, as a user does in the UI."""
        body = {"connection_id": conn_id, **connection}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        with contextlib.suppress(ApiCallError):
            self.call("DELETE", f"/api/v2/connections/{conn_id}")
        self.call("POST", "/api/v2/connections", body)

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

    def lineage_events(self) -> list[dict[str, Any]]:
        """The OpenLineage events written so far (the file transport's, oldest first)."""
        return [json.loads(path.read_text()) for path in sorted((self.home / "openlineage").glob("event-*.json"))]

    def creates(self) -> list[dict[str, Any]]:
        """The sync's CreateRelationship calls (the preflight's probe, which can create nothing, left out)."""
        return [
            call
            for call in self.emulator("calls")
            if call["operation"] == "CreateRelationship" and not is_probe(call["request"])
        ]


@contextlib.contextmanager
def running_stack(name: str, metadata_db: str, warehouse_db: str, **options: Any) -> Iterator[Stack]:
    """A stack of its own (Airflow home test-artifacts/<name>, fresh metadata and warehouse databases, free ports),
    with the sync DAG unpaused and its first scheduled run done; stopped at the end."""
    home = ARTIFACTS / name
    Stack(home=home).stop()  # what a killed earlier session may have left running
    shutil.rmtree(home, ignore_errors=True)
    fresh_postgres_database(metadata_db)
    fresh_postgres_database(warehouse_db)
    # The project's DAGs, and the test DAGs beside them (a DAG downstream of the sync's Asset).
    dags_folder = home / "dags"
    dags_folder.mkdir(parents=True)
    for dag_file in [*(PROJECT_DIR / "dags").glob("*.py"), *TEST_DAGS.glob("*.py")]:
        shutil.copy(dag_file, dags_folder)
    lineage = home / "openlineage"
    lineage.mkdir()
    airflow = Stack(
        home=home,
        dags_folder=dags_folder,
        settings_file=Path(__file__).with_name("airflow_settings.yaml"),
        port=free_port(),
        emulator_port=free_port(),
        metadata_db=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{metadata_db}",
        warehouse_db=warehouse_db,
        # Every run has a deadline a few seconds after it is queued, so that a test sees one missed (without alert
        # channels set, a missed deadline is only logged by the triggerer).
        extra_env={
            "WAREHOUSE_DB": warehouse_db,
            "PARTNER_SYNC_DEADLINE_MINUTES": DEADLINE_MINUTES,
            # OpenLineage's events, each in a file of its own (the provider's file transport).
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(lineage / "event")}),
            **options.pop("extra_env", {}),
        },
        **options,
    )
    airflow.start(timeout=300)
    try:
        airflow.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        airflow.wait_for_scheduled_run(timeout=180)
        yield airflow
    finally:
        airflow.stop()


def ready_for_a_test(stack: Stack) -> Stack:
    """The running stack with an empty warehouse, a fresh emulator and no run in flight."""
    stack.emulator("reset", {})
    # Every setting back to its default: a fault an earlier test configured (denied operations, latency) ends here.
    stack.emulator("config", dataclasses.asdict(EmulatorSettings()))
    stack.wait_until_no_run_in_flight(timeout=180)
    fresh_postgres_database(stack.warehouse_db)
    return stack


@contextlib.contextmanager
def warehouse_of(stack: Stack) -> Iterator[TestWarehouse]:
    dsn = {**POSTGRES_DSN, "dbname": stack.warehouse_db}
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{stack.warehouse_db}"
    result = TestWarehouse("postgres", lambda: psycopg2.connect(**dsn), url, {})
    try:
        yield result
    finally:
        result.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The LocalExecutor's stack, shared by the session's tests."""
    with running_stack("e2e-airflow", METADATA_DB, WAREHOUSE_DB) as airflow:
        yield airflow


@pytest.fixture
def e2e(stack: Stack) -> Stack:
    return ready_for_a_test(stack)


@pytest.fixture
def warehouse(e2e: Stack) -> Iterator[TestWarehouse]:
    with warehouse_of(e2e) as result:
        yield result


def outcomes(warehouse: TestWarehouse) -> dict[str, dict[str, Any]]:
    return {row["candidate_id"]: row for row in warehouse.query("SELECT * FROM partner_relationship_outcomes")}
