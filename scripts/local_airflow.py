"""A local Airflow for this project: API server (with the UI), scheduler, DAG processor and triggerer on the
LocalExecutor, the Partner Central emulator, and the pools, connections and variables of a settings file.

python scripts/local_airflow.py start|stop|status     (what `make airflow` and `make airflow-stop` run)

The end-to-end tests start the same stack, on their own Airflow home, ports and metadata database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

PROJECT_DIR = Path(__file__).resolve().parent.parent
USERNAME = "admin"


@dataclass
class LocalAirflow:
    home: Path
    settings_file: Path = PROJECT_DIR / "airflow_settings.yaml"
    dags_folder: Path = PROJECT_DIR / "dags"
    port: int = 8080
    emulator_port: int = 4566
    # SQLAlchemy URL of the metadata database; None: SQLite in the Airflow home.
    metadata_db: str | None = None
    parallelism: int = 8
    extra_env: dict[str, str] = field(default_factory=dict)
    _token: str | None = field(default=None, init=False, repr=False)
    _token_at: float = field(default=0.0, init=False, repr=False)

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
        """The environment of every component: this project's DAGs and plugins, LocalExecutor, 127.0.0.1 only."""
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
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            }
        )
        if self.metadata_db:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.metadata_db
        env.update(self.extra_env)
        return env

    def settings(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The settings file's pools, connections and variables by name, with ${NAME} replaced from the env."""
        import yaml

        raw = yaml.safe_load(self.settings_file.read_text()) or {}
        section = raw.get("airflow") or {}
        variables = {"PROJECT_DIR": str(PROJECT_DIR), "AIRFLOW_HOME": str(self.home), "EMULATOR_URL": self.emulator_url}

        known = {**os.environ, **self.extra_env, **variables}

        def expand(value: Any) -> Any:
            if isinstance(value, str):
                expanded = re.sub(r"\$\{(\w+)\}", lambda match: known.get(match[1], match[0]), value)
                if unset := re.findall(r"\$\{(\w+)\}", expanded):
                    raise ValueError(f"{self.settings_file}: {value!r} uses ${{{unset[0]}}}, which is not set")
                return expanded
            if isinstance(value, dict):
                return {key: expand(item) for key, item in value.items()}
            return value

        result: dict[str, dict[str, dict[str, Any]]] = {}
        for kind, key in (("pools", "pool_name"), ("connections", "conn_id"), ("variables", "variable_name")):
            entries = section.get(kind) or []
            for entry in entries:
                if not isinstance(entry, dict) or not entry.get(key):
                    raise ValueError(f"{self.settings_file}: every entry of airflow.{kind} needs a {key}: {entry!r}")
            result[kind] = {entry[key]: expand(entry) for entry in entries}
        return result

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
        self._run(sys.executable, __file__, "_apply-settings", str(self.settings_file), log="apply-settings")
        # Task logs are files in this Airflow home, which the API server reads directly: the scheduler's and the
        # triggerer's log servers (fixed ports on every interface) are not started.
        commands = {
            "emulator": [sys.executable, "-m", "dev.emulator", "--port", str(self.emulator_port)],
            "api-server": ["airflow", "api-server"],
            "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
            "dag-processor": ["airflow", "dag-processor"],
            "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
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
                    if any(dag["dag_id"] == "partner_relationship_sync" for dag in dags):
                        return
                    last = "the DAGs are not parsed yet"
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

    # -- REST API v2 -------------------------------------------------------------------------------------------------
    def password(self) -> str:
        return json.loads(self.passwords_file.read_text())[USERNAME]

    def token(self) -> str:
        body = json.dumps({"username": USERNAME, "password": self.password()}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["access_token"]

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One REST API v2 call; an HTTP error raises ApiCallError with the status and Airflow's detail."""
        headers = {"Content-Type": "application/json"}
        if not path.startswith("/api/v2/monitor/"):
            headers["Authorization"] = f"Bearer {token or self.token()}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                content = response.read()
                return json.loads(content) if content else None
        except urllib.error.HTTPError as error:
            raise ApiCallError(error.code, error.read().decode(errors="replace")) from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """An API call with a token that is reused for ten minutes."""
        if self._token is None or time.monotonic() - self._token_at > 600:
            self._token, self._token_at = self.token(), time.monotonic()
        return self.api(method, path, body, token=self._token)

    def trigger(self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=1000"
        return self.call("GET", path)["task_instances"]

    def wait_runs(self, dag_id: str, run_ids: list[str], timeout: float) -> dict[str, str]:
        """Until every run is done; their states by id."""
        deadline = time.monotonic() + timeout
        while True:
            states = {run_id: self.run(dag_id, run_id)["state"] for run_id in run_ids}
            if all(state in ("success", "failed") for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs not done after {timeout:.0f} s: {states}; logs in {self.home}/logs")
            time.sleep(1)

    def emulator(self, path: str, body: Any = None) -> Any:
        """The emulator's admin API: GET calls|relationships|health, POST config|reset."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}", data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)


class ApiCallError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a second stack next to `make airflow` (the tests', the benchmark's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_postgres_database(name: str, server: str = "host=127.0.0.1 port=5432 user=postgres") -> None:
    """Drop and create a database on the local PostgreSQL server (a stack's metadata, a test warehouse)."""
    import psycopg2

    connection = psycopg2.connect(f"{server} dbname=postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()


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


def apply_settings(path: str) -> None:
    """Load the settings file's pools, connections and variables into the metadata database (run in the stack's
    environment: it imports Airflow)."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    stack = LocalAirflow(home=Path(os.environ["AIRFLOW_HOME"]), settings_file=Path(path))
    stack.emulator_port = int(os.environ["EMULATOR_URL"].rsplit(":", 1)[1])
    settings = stack.settings()
    for name, pool in settings["pools"].items():
        Pool.create_or_update_pool(
            name, int(pool.get("pool_slot", 1)), pool.get("pool_description", ""), include_deferred=False
        )
    with create_session() as session:
        for conn_id, item in settings["connections"].items():
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            extra = item.get("conn_extra")
            session.add(
                Connection(
                    conn_id=conn_id,
                    conn_type=item.get("conn_type"),
                    host=item.get("conn_host"),
                    schema=item.get("conn_schema"),
                    login=item.get("conn_login"),
                    password=item.get("conn_password"),
                    port=item.get("conn_port"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
    for name, item in settings["variables"].items():
        Variable.set(name, str(item.get("variable_value", "")))
    print(
        f"loaded {path}: pools {list(settings['pools'])}, connections {list(settings['connections'])}, "
        f"variables {list(settings['variables'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "_apply-settings"])
    parser.add_argument("settings_file", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "_apply-settings":
        apply_settings(args.settings_file)
        return 0
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
