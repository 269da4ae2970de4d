"""How long each DAG file takes to parse: as Airflow's DAG processor itself records it (`airflow dag-processor -n
PARSES` on a DAGs folder holding only that file, so that no file pays for another's imports, reading the
`last_parse_duration` each parse writes to the metadata database), as `airflow dags report` measures it (no
pre-import of the file's Airflow modules and no gc.freeze(), unlike the DAG processor), and as Airflow's
best-practices page measures it (the file run by a fresh interpreter, minus a bare interpreter). A throwaway Airflow
home and SQLite metadata database serve all of them."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dev import PROJECT_DIR

DAG_FILES = sorted((PROJECT_DIR / "dags").glob("*.py"))
PARSES = 6  # the first parse of a started processor is the slowest: the median is of them all


def airflow_env(home: Path, dags_folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
    }


def dag_processor(path: Path, env: dict[str, str], database: Path) -> list[float]:
    """Each `dag.last_parse_duration` the processor writes in PARSES parses of the file (the column keeps the last
    one only, so it is read while the processor runs)."""
    durations: dict[float, None] = {}
    query = "SELECT last_parse_duration FROM dag WHERE relative_fileloc = ? AND last_parse_duration IS NOT NULL"
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        process = subprocess.Popen(
            ["airflow", "dag-processor", "-n", str(PARSES)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            done = process.poll() is not None
            durations.update((value, None) for (value,) in db.execute(query, (path.name,)))
            if done:
                break
            time.sleep(0.02)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args)
    return list(durations)


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def dags_report(env: dict[str, str]) -> float:
    done = subprocess.run(
        ["airflow", "dags", "report", "-o", "json"], env=env, capture_output=True, text=True, check=True
    )
    rows = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[{")))
    return sum(_seconds(row["duration"]) for row in rows)


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def interpreter_cost(path: Path, env: dict[str, str], repeats: int = 3) -> float:
    """Median of `python file` minus median of `python -c pass`."""
    bare = statistics.median(_timed([sys.executable, "-c", "pass"], env) for _ in range(repeats))
    full = statistics.median(_timed([sys.executable, str(path)], env) for _ in range(repeats))
    return full - bare


def run() -> dict[str, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as temporary:
        home = Path(temporary)
        subprocess.run(["airflow", "db", "migrate"], env=airflow_env(home, home), check=True, capture_output=True)
        for path in DAG_FILES:
            folder = home / path.stem
            folder.mkdir()
            (folder / path.name).symlink_to(path)
            env = airflow_env(home, folder)
            parses = dag_processor(path, env, home / "airflow.db")
            results[path.name] = {
                "dag_processor": statistics.median(parses),
                "parses": parses,
                "dags_report": dags_report(env),
                "python_minus_bare": interpreter_cost(path, env),
            }
    return results
