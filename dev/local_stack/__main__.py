"""A local Airflow for this project: API server (with the UI), scheduler, DAG processor and triggerer on the
LocalExecutor, the Partner Central emulator, and the pools, connections and variables of a settings file.

python -m dev.local_stack start|stop|status     (what `make airflow` and `make airflow-stop` run)

The end-to-end tests and the benchmark start the same stack, on their own Airflow home, ports and metadata database.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dev import PROJECT_DIR
from dev.local_stack.rest_client import USERNAME
from dev.local_stack.supervisor import LocalAirflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.local_stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    stack = LocalAirflow(
        home=Path(os.environ.get("AIRFLOW_HOME", PROJECT_DIR / ".airflow")),
        port=int(os.environ.get("AIRFLOW_PORT", "8080")),
        emulator_port=int(os.environ.get("EMULATOR_PORT", "4566")),
    )
    if args.command == "stop":
        stack.stop()
        print("local Airflow stopped")
        return 0
    if args.command == "status":
        running = stack.running()
        print(f"running: {', '.join(running) or 'nothing'}")
        return 0 if running else 1
    print(f"Starting the local Airflow (logs: {stack.home}/logs) ...", flush=True)
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
