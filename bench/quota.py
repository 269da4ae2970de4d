"""The sync at the API's quota, on running Airflow components (the e2e tests' stack: scheduler, metadata and
warehouse on the local PostgreSQL server), on the LocalExecutor and on the CeleryExecutor with two workers, side by
side with what a user would otherwise write.

Each scenario gets an emptied warehouse with N valid candidates and a reset emulator limited to Q creates per
second per account, with about 50 ms latency and 1% injected 500s; its figures come from the emulator's call log,
the warehouse and the REST API."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from dev import PROJECT_DIR
from dev.demo_data import candidate_table_ddl, distinct_candidates, insert_candidates
from dev.emulator.service import max_in_any_second
from dev.local_stack.databases import free_port, fresh_postgres_database
from dev.local_stack.rest_client import SYNC_DAG_ID
from dev.local_stack.supervisor import LocalAirflow
from include.sync.preflight import is_probe

SYNC = SYNC_DAG_ID
# Per executor: its Airflow metadata database, and the Redis database of the Celery stack (one of its own, so that
# no other stack on this machine takes its tasks).
METADATA_DB = {"local": "partner_sync_bench_airflow", "celery": "partner_sync_bench_celery_airflow"}
CELERY_REDIS_URL = "redis://127.0.0.1:6379/6"
CELERY_WORKERS = 2
# The sync's tasks before its first create, in order: the start-up's breakdown names each.
BEFORE_FIRST_CREATE = ("preflight", "check_and_stage", "approve_plan")
WAREHOUSE_DB = "partner_sync_bench_warehouse"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
LATENCY_MS = 50
ERROR_RATE = 0.01


@dataclass
class Result:
    name: str
    n: int
    quota: float
    state: str = ""
    seconds: float = 0.0  # trigger → every run done
    startup_seconds: float = 0.0  # trigger → first create request
    startup: dict[str, float] = field(default_factory=dict)  # where the start-up went (the first run's)
    creation_seconds: float = 0.0  # first create request → last one
    relationships: int = 0
    create_requests: int = 0
    throttled: int = 0
    duplicates: int = 0  # candidates with more than one relationship
    repeats: int = 0  # create requests for a candidate that already had its relationship (answered or refused)
    max_per_second: int = 0
    peak_task_rss_mib: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def rate_ratio(self) -> float:
        """Creates per second while creating, ÷ Q."""
        return (self.relationships - 1) / self.creation_seconds / self.quota if self.creation_seconds else 0.0

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.create_requests if self.create_requests else 0.0

    @property
    def run_ratio(self) -> float:
        """The whole run's time ÷ (N ÷ Q)."""
        return self.seconds / (self.n / self.quota)


class TaskMemory:
    """Peak resident memory of any one task process (`airflow worker -- <ti id>`), sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TaskMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = process.info["cmdline"] or []
                if cmdline[:3] == ["airflow", "worker", "--"] or " ".join(cmdline).startswith("airflow worker --"):
                    self.peak = max(self.peak, process.info["memory_info"].rss)


def candidates(n: int) -> list[dict[str, Any]]:
    """N valid candidates with distinct accounts."""
    return distinct_candidates(dt.date(2026, 7, 1), n, first_account=700_000)


def ts(text: str | None) -> float:
    """An instant of the REST API (ISO 8601) in seconds since the epoch; 0 for none."""
    return dt.datetime.fromisoformat(text).timestamp() if text else 0.0


class QuotaBench:
    def __init__(self, n: int, quota: float, executor: str = "local") -> None:
        self.n, self.quota = n, quota
        self.dags = Path(tempfile.mkdtemp(prefix="bench-dags-"))
        for source in [*(PROJECT_DIR / "dags").glob("*.py"), PROJECT_DIR / "bench" / "dags" / "bench_alternatives.py"]:
            (self.dags / source.name).symlink_to(source)
        home = (
            PROJECT_DIR / "test-artifacts" / ("bench-airflow" if executor == "local" else f"bench-airflow-{executor}")
        )
        LocalAirflow(home=home).stop()  # what a killed earlier run may have left running
        shutil.rmtree(home, ignore_errors=True)
        fresh_postgres_database(METADATA_DB[executor])
        fresh_postgres_database(WAREHOUSE_DB)
        self.stack = LocalAirflow(
            home=home,
            settings_file=PROJECT_DIR / "bench" / "airflow_settings.yaml",
            dags_folder=self.dags,
            port=free_port(),
            emulator_port=free_port(),
            metadata_db=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{METADATA_DB[executor]}",
            executor=executor,
            celery_workers=CELERY_WORKERS,
            redis_url=CELERY_REDIS_URL,
            extra_env={"WAREHOUSE_DB": WAREHOUSE_DB, "BENCH_QUOTA": f"{quota:g}"},
        )

    def __enter__(self) -> QuotaBench:
        try:
            self.stack.start(timeout=300)
            for dag_id in (SYNC, "bench_operator_per_candidate", "bench_boto3_loop"):
                self._wait_for_dag(dag_id)
                self.stack.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            # The run unpausing creates would otherwise race the first measurement's (it fails at its preflight:
            # the warehouse has no candidates table yet).
            self.stack.wait_for_scheduled_run(timeout=300)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()
        shutil.rmtree(self.dags, ignore_errors=True)

    def _wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stack.call("GET", f"/api/v2/dags/{dag_id}")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _reset(self, emulator: dict[str, Any]) -> list[dict[str, Any]]:
        fresh_postgres_database(WAREHOUSE_DB)
        connection = psycopg2.connect(**POSTGRES, dbname=WAREHOUSE_DB)
        with connection.cursor() as cursor:
            cursor.execute(candidate_table_ddl("partner_relationship_candidates", "TIMESTAMPTZ"))
        rows = candidates(self.n)
        insert_candidates(connection, rows, "partner_relationship_candidates", "%s")
        connection.close()
        self.stack.emulator("reset", {})
        self.stack.emulator(
            "config",
            {
                "create_rate": self.quota,
                "read_rate": self.quota,
                "latency_ms": LATENCY_MS,
                "internal_error_rate": ERROR_RATE,
                "seed": 7,
                **emulator,
            },
        )
        return rows

    def measure(self, name: str, runs: list[tuple[str, dict]], emulator: dict[str, Any] | None = None) -> Result:
        """Trigger the runs (dag_id, conf) at once, wait for all of them, and read the figures."""
        self._reset(emulator or {})
        result = Result(name, self.n, self.quota)
        with TaskMemory() as memory:
            started = time.time()
            run_ids = [(dag_id, self.stack.trigger(dag_id, conf)) for dag_id, conf in runs]
            states = [self.stack.wait_runs(dag_id, [run_id], timeout=3600)[run_id] for dag_id, run_id in run_ids]
        # Until the last run ended, as Airflow recorded it (the poll above sees it up to a second late).
        ended = [ts(self.stack.run(dag_id, run_id)["end_date"]) for dag_id, run_id in run_ids]
        result.seconds = max(ended) - started
        result.state = ", ".join(sorted(set(states)))
        result.peak_task_rss_mib = memory.peak / 2**20
        calls = self.stack.emulator("calls")
        # The sync's creates: its preflight's probe (refused for its content, before the batches) is left out.
        creates = [c for c in calls if c["operation"] == "CreateRelationship" and not is_probe(c["request"])]
        ok = [call for call in creates if call["status"] == 200]
        result.create_requests = len(creates)
        result.throttled = sum(1 for call in creates if call["error_code"] == "ThrottlingException")
        relationships = self.stack.emulator("relationships")
        result.relationships = len(relationships)
        per_account = Counter(r.get("associatedAccountId") for r in relationships)
        result.duplicates = sum(n - 1 for n in per_account.values())
        conflicts = sum(1 for call in creates if call["error_code"] == "ConflictException")
        result.repeats = len(ok) + conflicts - result.relationships
        if creates:
            first = min(call["started"] for call in creates)
            last = max(call["started"] for call in ok) if ok else first
            result.startup_seconds = first - started
            dag_id, run_id = run_ids[0]
            if dag_id == SYNC:
                result.startup = self.startup_breakdown(run_id, started, first)
            result.creation_seconds = last - first
            result.max_per_second = max_in_any_second([call["admitted"] or call["started"] for call in ok])
        return result

    def startup_breakdown(self, run_id: str, triggered: float, first_create: float) -> dict[str, float]:
        """Trigger → first create, by what happened in it: the scheduler starting the run, each task before the
        batches (its process's start-up included), the scheduler's hand-offs between them, and the batch tasks' own
        start (process, settings, client, claims) up to their first call."""
        instances = self.stack.task_instances(SYNC, run_id)
        phases = {"trigger → first task starts": 0.0, "hand-offs between tasks": 0.0}
        previous_end = None
        for task_id in (*BEFORE_FIRST_CREATE, "create_relationships"):
            starts = [ts(ti["start_date"]) for ti in instances if ti["task_id"] == task_id and ti["start_date"]]
            ends = [ts(ti["end_date"]) for ti in instances if ti["task_id"] == task_id and ti["end_date"]]
            if not starts:
                continue
            if previous_end is None:
                phases["trigger → first task starts"] = min(starts) - triggered
            else:
                phases["hand-offs between tasks"] += min(starts) - previous_end
            if task_id == "create_relationships":
                phases["batch task start → first create"] = first_create - min(starts)
            else:
                phases[task_id] = max(ends) - min(starts)
                previous_end = max(ends)
        return {name: round(seconds, 2) for name, seconds in phases.items()}

    def sync_phases(self, result: Result) -> None:
        connection = psycopg2.connect(**POSTGRES, dbname=WAREHOUSE_DB)
        with connection.cursor() as cursor:
            cursor.execute("SELECT dag_run_id, phase_seconds FROM partner_relationship_sync_runs")
            rows = cursor.fetchall()
        connection.close()
        phases: Counter = Counter()
        for run_id, text in rows:
            phases.update(json.loads(text or "{}"))
            for ti in self.stack.task_instances(SYNC, run_id):
                if ti["task_id"] == "record_run":
                    phases["recording (record_run task)"] += ti["duration"] or 0
        phases["creation"] = result.creation_seconds
        result.phases = {name: round(value, 2) for name, value in phases.items()}


def sync_rows(bench: QuotaBench, label: str) -> list[Result]:
    """The sync alone, then as two runs of half the candidates at once, on this stack."""
    n = bench.n
    one = bench.measure(f"sync DAG (one run), {label}", [(SYNC, {"include_all_pending": True})])
    bench.sync_phases(one)
    ids = [row["candidate_id"] for row in candidates(n)]
    halves = [ids[: n // 2], ids[n // 2 :]]
    two = bench.measure(f"sync DAG (two runs at once), {label}", [(SYNC, {"candidate_ids": h}) for h in halves])
    two.note = "two manual runs of N/2 candidates each, sharing the pool and the rate"
    return [one, two]


def run(n: int, quota: float) -> list[Result]:
    results = []
    with QuotaBench(n, quota) as bench:
        results += sync_rows(bench, "LocalExecutor")
        per_task = bench.measure("(a) operator per candidate", [("bench_operator_per_candidate", {})])
        per_task.note = "one mapped CreateRelationshipOperator task instance per candidate, same pool"
        results.append(per_task)
        loop = bench.measure("(b) boto3 loop", [("bench_boto3_loop", {})], emulator={"lose_next_responses": 5})
        loop.note = "one task, boto3 defaults (random token, botocore retries, no limiter), 5 lost responses"
        results.append(loop)
    with QuotaBench(n, quota, executor="celery") as bench:
        results += sync_rows(bench, f"CeleryExecutor, {CELERY_WORKERS} workers")
    return results
