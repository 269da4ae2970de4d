"""The sync on a distributed Airflow: the CeleryExecutor with two workers (Redis as the broker, PostgreSQL as the
metadata database and result backend), as `make airflow EXECUTOR=celery` runs it. A manual run and a backfill race
across both workers for the same candidates, one worker is killed (SIGKILL to its process group: the worker, its
pool and the task processes) while batches are sending; the scheduler finds the task without heartbeat and the
other worker retries it. Then every candidate is created exactly once, no outcome is lost, and the emulator's call
log shows no second with more creates than the rate."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator

import psutil
import pytest

from dev.demo_data import distinct_candidates as candidates
from tests.e2e.conftest import Stack, ready_for_a_test, running_stack, warehouse_of
from tests.e2e.test_running_airflow import assert_created_once, assert_rate_and_in_flight_held

pytestmark = pytest.mark.timeout(900)
WORKERS = ("celery-worker-1", "celery-worker-2")


@pytest.fixture(scope="module")
def celery_stack() -> Iterator[Stack]:
    with running_stack(
        "e2e-celery",
        "partner_sync_e2e_celery",
        "partner_sync_e2e_celery_warehouse",
        executor="celery",
        redis_url="redis://127.0.0.1:6379/7",  # a Redis database of its own: no other stack takes its tasks
        # A task whose worker died is found (no heartbeat) in seconds, not the default 5 minutes.
        extra_env={"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15"},
    ) as stack:
        yield stack


def tasks_received(stack: Stack, worker: str) -> int:
    """How many Airflow workloads the worker took from the broker (its log's `received` lines)."""
    return (stack.home / "logs" / f"{worker}.log").read_text(errors="replace").count("received")


def worker_running_a_batch(stack: Stack, run_ids: list[str]) -> str:
    """The worker one of whose processes runs a batch task of these runs now (the task's pid, from the REST API)."""
    workers = {pid: name for name, pid in stack.running().items() if name in WORKERS}
    for run_id in run_ids:
        for ti in stack.sync_task_instances(run_id):
            if ti["task_id"] != "create_relationships" or ti["state"] != "running" or not ti.get("pid"):
                continue
            with contextlib.suppress(psutil.Error):
                for ancestor in psutil.Process(ti["pid"]).parents():
                    if ancestor.pid in workers:
                        return workers[ancestor.pid]
    raise LookupError("no batch task is running on a worker")


def kill_worker(stack: Stack, worker: str) -> None:
    """SIGKILL to the worker and everything it started (its pool, the task supervisors, the task processes, which
    run in process groups of their own), as when its machine goes away."""
    main = psutil.Process(stack.running()[worker])
    for process in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def test_a_run_and_a_backfill_across_two_workers_survive_a_killed_worker_exactly_once(celery_stack: Stack):
    stack = ready_for_a_test(celery_stack)
    assert len(stack.celery_workers_answering()) == len(WORKERS)
    with warehouse_of(stack) as warehouse:
        manual_rows = candidates(dt.date(2026, 7, 10), 18, first_account=70_000)
        warehouse.seed(manual_rows)
        stack.emulator("config", {"latency_ms": 1000})  # batches overlap: several tasks on both workers at once
        manual = stack.trigger_sync({})
        deadline = time.monotonic() + 120
        while not stack.creates():
            assert time.monotonic() < deadline, "the manual run did not start sending"
            time.sleep(0.2)
        days = [dt.date(2026, 7, 1) + dt.timedelta(days=n) for n in range(2)]
        backfill_rows = [row for n, day in enumerate(days) for row in candidates(day, 15, first_account=7000 * (n + 1))]
        warehouse.seed(backfill_rows)
        backfill = stack.backfill(days[0], days[-1])

        deadline = time.monotonic() + 120
        while True:  # a batch task sending, and still candidates to send after it
            try:
                victim = worker_running_a_batch(stack, [manual, *(run["dag_run_id"] for run in stack.runs())])
                if len(stack.creates()) >= 6:
                    break
            except LookupError:
                pass
            assert time.monotonic() < deadline, "no batch task ran on a worker"
            time.sleep(0.2)
        kill_worker(stack, victim)
        assert len(stack.creates()) < len(manual_rows) + len(backfill_rows)

        assert stack.wait_sync_runs([manual], timeout=420) == {manual: "success"}
        assert set(stack.wait_backfill(backfill, timeout=420).values()) == {"success"}

        assert_created_once(stack, warehouse, {row["candidate_id"] for row in manual_rows + backfill_rows})
        assert_rate_and_in_flight_held(stack)
        assert victim not in stack.running()
        assert all(tasks_received(stack, worker) for worker in WORKERS), "both workers ran tasks"
