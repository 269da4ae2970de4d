"""The local Airflow's REST API v2 (token, calls, DAG runs, task instances) and the emulator's admin API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

USERNAME = "admin"
SYNC_DAG_ID = "partner_relationship_sync"
TERMINAL_STATES = ("success", "failed")


class ApiCallError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class AirflowRestClient:
    """Calls to a running Airflow as the simple auth manager's admin, and to its emulator. Mixed into a class that
    says where they run: `url`, `emulator_url`, `passwords_file` and `home` (LocalAirflow)."""

    url: str
    emulator_url: str
    passwords_file: Path
    home: Path
    _token: str | None = None
    _token_at: float = 0.0

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
            if all(state in TERMINAL_STATES for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs not done after {timeout:.0f} s: {states}; logs in {self.home}/logs")
            time.sleep(1)

    def runs(self, dag_id: str = SYNC_DAG_ID) -> list[dict[str, Any]]:
        """The DAG's latest 100 runs, newest first."""
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=-id")["dag_runs"]

    def wait_for_scheduled_run(self, timeout: float, dag_id: str = SYNC_DAG_ID) -> None:
        """Unpausing makes the scheduler create the latest interval's run a moment later: until it came and ended,
        so that it never joins a test's or a measurement's runs half-way."""
        deadline = time.monotonic() + timeout
        while not any(run["run_type"] == "scheduled" for run in self.runs(dag_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduled run {timeout:.0f} s after unpausing; logs in {self.home}/logs")
            time.sleep(1)
        self.wait_until_no_run_in_flight(timeout, dag_id)

    def wait_until_no_run_in_flight(self, timeout: float, dag_id: str = SYNC_DAG_ID) -> None:
        """Until no run of the DAG is queued or running, listed afresh each time: the scheduler may add one at any
        moment (the first after unpausing, the next at midnight UTC)."""
        deadline = time.monotonic() + timeout
        while busy := [run["dag_run_id"] for run in self.runs(dag_id) if run["state"] not in TERMINAL_STATES]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs {busy} still in flight after {timeout:.0f} s; logs in {self.home}/logs")
            time.sleep(1)

    def emulator(self, path: str, body: Any = None) -> Any:
        """The emulator's admin API: GET calls|relationships|health, POST config|reset."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}", data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
