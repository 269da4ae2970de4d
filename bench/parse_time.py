"""How long each DAG file takes to parse: as Airflow's DAG processor measures it (`airflow dags report`, one file per
DAGs folder so that no file pays for another's imports) and as Airflow's best-practices page measures it (the file
run by a fresh interpreter, minus a bare interpreter)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dev import PROJECT_DIR

DAG_FILES = sorted((PROJECT_DIR / "dags").glob("*.py"))


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def dags_report(path: Path) -> float:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / path.name).symlink_to(path)
        env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": folder}
        done = subprocess.run(
            ["airflow", "dags", "report", "-o", "json"], env=env, capture_output=True, text=True, check=True
        )
    rows = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[{")))
    return sum(_seconds(row["duration"]) for row in rows)


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def interpreter_cost(path: Path, repeats: int = 5) -> float:
    """Median of `python file` minus median of `python -c pass`."""
    bare = statistics.median(_timed([sys.executable, "-c", "pass"]) for _ in range(repeats))
    full = statistics.median(_timed([sys.executable, str(path)]) for _ in range(repeats))
    return full - bare


def run() -> dict[str, dict[str, float]]:
    return {
        path.name: {"dags_report": dags_report(path), "python_minus_bare": interpreter_cost(path)} for path in DAG_FILES
    }
