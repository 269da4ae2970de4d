"""A local Airflow for this project: API server (with the UI), scheduler, DAG processor and triggerer on the
LocalExecutor, the Partner Central emulator, and the pools, connections and variables of a settings file.

python -m dev.local_stack start|stop|status     (what `make airflow` and `make airflow-stop` run)

With EXECUTOR=celery (`make airflow EXECUTOR=celery`): the CeleryExecutor with two workers, Redis on 127.0.0.1:6379 as
the broker and the PostgreSQL database `partner_sync_airflow` on 127.0.0.1:5432 as the metadata database (created when
missing), as a distributed Airflow runs it; the Airflow home is then `.airflow-celery`.

The end-to-end tests and the benchmark start the same stack, on their own Airflow home, ports and metadata database.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dev import PROJECT_DIR
from dev.local_stack.databases import ensure_postgres_database, postgres_url
from dev.local_stack.rest_client import USERNAME
from dev.local_stack.supervisor import EXECUTORS, LocalAirflow

CELERY_HOME = PROJECT_DIR / ".airflow-celery"
CELERY_METADATA_DB = "partner_sync_airflow"


def local_stack(executor: str) -> LocalAirflow:
    """`make airflow`'s stack on this executor: the LocalExecutor's home is AIRFLOW_HOME (SQLite metadata), the
    CeleryExecutor's its own, with PostgreSQL."""
    celery = executor == "celery"
    return LocalAirflow(
        home=CELERY_HOME if celery else Path(os.environ.get("AIRFLOW_HOME", PROJECT_DIR / ".airflow")),
        port=int(os.environ.get("AIRFLOW_PORT", "8080")),
        emulator_port=int(os.environ.get("EMULATOR_PORT", "4566")),
        executor=executor,
        metadata_db=postgres_url(CELERY_METADATA_DB) if celery else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.local_stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    stack = local_stack(os.environ.get("EXECUTOR") or "local")
    if args.command == "stop":
        for executor in EXECUTORS:  # whichever runs
            local_stack(executor).stop()
        print("local Airflow stopped")
        return 0
    if args.command == "status":
        running = stack.running()
        print(f"running: {', '.join(running) or 'nothing'}")
        return 0 if running else 1
    print(f"Starting the local Airflow on the {EXECUTORS[stack.executor]} (logs: {stack.home}/logs) ...", flush=True)
    if stack.executor == "celery":
        ensure_postgres_database(CELERY_METADATA_DB)
    stack.start()
    print(
        f"\nThe local Airflow is up: {stack.url}\n"
        f"  log in as {USERNAME}, password {stack.password()}   (kept in {stack.passwords_file})\n"
        f"  emulator: {stack.emulator_url}    settings: {stack.settings_file.name}\n"
        f"  stop it with: make airflow-stop"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
