"""The local Airflow's processes: API server (with the UI), scheduler, DAG processor and triggerer on the
LocalExecutor, or on the CeleryExecutor with Celery workers (Redis as the broker, the PostgreSQL metadata database as
the result backend), and the Partner Central emulator, each started as its own process group and remembered (pid and
start time) in a state file in the Airflow home, so that stop() ends exactly what start() began, children included."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dev import PROJECT_DIR
from dev.local_stack.rest_client import USERNAME, AirflowRestClient, ApiCallError
from dev.local_stack.settings import Settings, read_settings, stack_variables

EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
SCHEDULER_IDLE_SLEEP_SECONDS = 0.2


@dataclass
class LocalAirflow(AirflowRestClient):
    home: Path
    settings_file: Path = PROJECT_DIR / "airflow_settings.yaml"
    dags_folder: Path = PROJECT_DIR / "dags"
    port: int = 8080
    emulator_port: int = 4566
    # SQLAlchemy URL of the metadata database; None: SQLite in the Airflow home.
    metadata_db: str | None = None
    parallelism: int = 8
    # "local" (LocalExecutor) or "celery" (CeleryExecutor: `celery_workers` workers of `worker_concurrency` slots,
    # a PostgreSQL metadata database, Redis at `redis_url`; each stack its own Redis database, so that a second stack
    # (the tests', the benchmark's) never takes another's tasks).
    executor: str = "local"
    celery_workers: int = 2
    worker_concurrency: int = 4
    redis_url: str = "redis://127.0.0.1:6379/1"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r}: one of {', '.join(EXECUTORS)}")
        if self.executor == "celery" and not (self.metadata_db or "").startswith("postgresql"):
            raise ValueError("the CeleryExecutor needs a PostgreSQL metadata database (metadata_db)")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    @property
    def _state_file(self) -> Path:
        return self.home / "local_airflow.json"

    def env(self) -> dict[str, str]:
        """The environment of every component: this project's DAGs, LocalExecutor, 127.0.0.1 only."""
        env = dict(os.environ)
        # Connections of the settings file live in the metadata database (visible and editable in the UI); an
        # AIRFLOW_CONN_ variable of the same id, such as the defaults of scripts/env.sh, would shadow them.
        for conn_id in self.settings().get("connections", {}):
            env.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
        env.update(
            {
                "PROJECT_DIR": str(PROJECT_DIR),
                "AIRFLOW_HOME": str(self.home),
                "EMULATOR_URL": self.emulator_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # An idle scheduler loop sleeps this long (Airflow's default 1 s): each hand-off from a task to the
                # next, and the run's end, waits up to one loop.
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(SCHEDULER_IDLE_SLEEP_SECONDS),
            }
        )
        if self.metadata_db:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.metadata_db
        if self.executor == "celery":
            env["AIRFLOW__CELERY__BROKER_URL"] = self.redis_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + str(self.metadata_db)
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(self.worker_concurrency)
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        """The settings file's pools, connections and variables by name, with ${NAME} replaced from the env."""
        known = {**os.environ, **self.extra_env, **stack_variables(self.home, self.emulator_url)}
        return read_settings(self.settings_file, known)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def _started(self) -> dict[str, tuple[int, float]]:
        """What this launcher started: name -> (pid, process start time), from the state file."""
        if not self._state_file.exists():
            return {}
        return {name: (pid, created) for name, (pid, created) in json.loads(self._state_file.read_text()).items()}

    def running(self) -> dict[str, int]:
        """The components started by this launcher that are still alive (the same processes, not reused pids)."""
        return {name: pid for name, (pid, created) in self._started().items() if _alive(pid, created)}

    def start(self, timeout: float = 180.0) -> None:
        if self.running():
            self.wait_ready(timeout)
            return
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        if not self.passwords_file.exists():
            descriptor = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as passwords:
                passwords.write(json.dumps({USERNAME: secrets.token_urlsafe(12)}) + "\n")
        self._run("airflow", "db", "migrate", log="db-migrate")
        self._run(sys.executable, "-m", "dev.local_stack.settings", str(self.settings_file), log="apply-settings")
        # Task logs are files in this Airflow home, which the API server reads directly: the scheduler's and the
        # triggerer's log servers (fixed ports on every interface) are not started.
        commands = {
            "emulator": [sys.executable, "-m", "dev.emulator", "--port", str(self.emulator_port)],
            "api-server": ["airflow", "api-server"],
            "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
            "dag-processor": ["airflow", "dag-processor"],
            "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
            **self._workers(),
        }
        pids: dict[str, tuple[int, float]] = {}
        try:
            for name, command in commands.items():
                with open(self.home / "logs" / f"{name}.log", "ab") as log:
                    process = subprocess.Popen(
                        command,
                        cwd=PROJECT_DIR,
                        env=self.env(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: stop() ends its children too
                    )
                pids[name] = (process.pid, psutil.Process(process.pid).create_time())
                self._state_file.write_text(json.dumps(pids))
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _workers(self) -> dict[str, list[str]]:
        """The Celery workers' commands, by component name (`celery-worker-1`, ...); none on the LocalExecutor."""
        if self.executor != "celery":
            return {}
        return {
            f"celery-worker-{number}": [
                *("airflow", "celery", "worker", "--skip-serve-logs", "--without-mingle", "--without-gossip"),
                *("--celery-hostname", f"worker{number}@%h", "--concurrency", str(self.worker_concurrency)),
            ]
            for number in range(1, self.celery_workers + 1)
        }

    def celery_workers_answering(self) -> list[str]:
        """The Celery workers that answer a ping through the broker (none on the LocalExecutor)."""
        if self.executor != "celery":
            return []
        from celery import Celery

        app = Celery(broker=self.redis_url)
        try:
            return sorted(name for reply in app.control.ping(timeout=1.0) or [] for name in reply)
        finally:
            app.close()

    def wait_ready(self, timeout: float) -> None:
        """Until every component reports healthy and the project's DAGs are parsed."""
        deadline = time.monotonic() + timeout
        last = "nothing answered yet"
        while time.monotonic() < deadline:
            dead = set(self._started()) - set(self.running())
            if dead:
                raise RuntimeError(f"{', '.join(sorted(dead))} stopped; see {self.home / 'logs'}/<component>.log")
            try:
                health = self.api("GET", "/api/v2/monitor/health")
                unhealthy = [name for name, item in health.items() if item.get("status") != "healthy"]
                if unhealthy:
                    last = f"not healthy yet: {', '.join(unhealthy)}"
                else:
                    dags = self.api("GET", "/api/v2/dags")["dags"]
                    answering = self.celery_workers_answering()
                    if not any(dag["dag_id"] == "partner_relationship_sync" for dag in dags):
                        last = "the DAGs are not parsed yet"
                    elif len(answering) < len(self._workers()):
                        last = f"Celery workers answering: {', '.join(answering) or 'none'}"
                    else:
                        return
            except (OSError, KeyError, ValueError, ApiCallError) as error:
                last = str(error)
            time.sleep(1)
        raise TimeoutError(f"the local Airflow was not ready after {timeout:.0f} s ({last}); logs: {self.home}/logs")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to each component's process group, SIGKILL to what is left after `timeout`. A group whose leader
        died is still signalled (its workers and tasks may live on); one whose pid now names another process is not."""
        started = self._started().values()
        groups = [pid for pid, created in started if _alive(pid, created) or not psutil.pid_exists(pid)]
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_group_alive(pgid) for pgid in groups):
            time.sleep(0.2)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        self._state_file.unlink(missing_ok=True)

    def _run(self, *command: str, log: str) -> None:
        path = self.home / "logs" / f"{log}.log"
        with open(path, "wb") as out:
            done = subprocess.run(command, cwd=PROJECT_DIR, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command[:3])} failed; its output:\n{path.read_text()[-4000:]}")


def _alive(pid: int, created: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and abs(process.create_time() - created) < 1
    except psutil.Error:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
