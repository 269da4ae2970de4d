"""The reconcile at scale: 10 program management accounts holding 1,000 relationships each (the quota per PMA), every
one the relationship of a candidate, listed at the API's read quota (5 calls per second, 50 ms latency) by the
reconcile's own code (hook, shared read schedule, retries), mirrored into the warehouse (PostgreSQL) and compared
with the candidates. The figure is the time ÷ the ideal: the pages the listing took ÷ the read rate.

The emulator runs in its own process, as a remote API would; the relationships are created through it (unpaced,
before the measure), and their outcomes written as the sync would have recorded them. Then 1% drifts: a hundredth of
the relationships deleted (as in the console), and another hundredth of the candidates renamed in the feed.

python -m bench.reconcile_scale [--pmas 10] [--per-pma 1000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dev.demo_data import candidate_table_ddl, insert_candidates
from dev.local_stack.databases import free_port, fresh_postgres_database

DATABASE = "partner_sync_bench_reconcile"
POSTGRES_URL = sa.URL.create("postgresql+psycopg", "postgres", None, "127.0.0.1", 5432, DATABASE)
ACCESS_KEY = "AKIABENCHRECONCILE01"
SECRET_KEY = "bench-emulator-secret"  # noqa: S105 - the emulator takes any secret
LATENCY_MS = 50
SEEDING_THREADS = 8
# One relationship in this many is deleted in AWS, and one candidate in this many renamed in the feed.
DRIFT_EVERY = 100
UPDATED = dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)


@dataclass
class Result:
    pmas: int
    relationships: int
    seconds: float
    pages: int
    read_rate: float
    throttled: int
    drift: dict[str, int]

    @property
    def ideal_seconds(self) -> float:
        return self.pages / self.read_rate

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal_seconds


def pma(n: int) -> str:
    return f"pma-bench{n:08d}"


def candidates(pmas: int, per_pma: int) -> list[dict[str, Any]]:
    return [
        {
            "candidate_id": f"r{p:02d}-{k:04d}",
            "catalog": "Sandbox",
            "association_type": "END_CUSTOMER",
            "program_management_account_identifier": pma(p),
            "associated_account_id": f"{p * per_pma + k + 1:012d}",
            "display_name": f"Company {p}-{k}",
            "resale_account_model": None,
            "sector": "COMMERCIAL",
            "account_scope": None,
            "support_plan": None,
            "tags": None,
            "updated_at": UPDATED.isoformat(),
        }
        for p in range(pmas)
        for k in range(per_pma)
    ]


class Emulator:
    """The emulator in a process of its own, and its admin API."""

    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dev.emulator", "--port", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.admin("health")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def admin(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}", data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def seed(emulator: Emulator, rows: list[dict[str, Any]]) -> None:
    """The candidates table, one relationship per candidate in the emulator, and their outcomes as the sync records
    them (created, with the request applied), an hour before the reconcile."""
    import boto3
    from botocore.config import Config

    from include.sync import candidates as cand
    from include.sync.settings import SyncSettings
    from include.sync.warehouse import Warehouse

    emulator.admin(
        "reset", {"create_rate": 1_000_000, "delete_rate": 1_000_000, "read_rate": 1_000_000, "latency_ms": 0}
    )
    requests = [cand.request_for(cand.clean_values(row)[0]) for row in rows]
    client = boto3.client(
        "partnercentral-channel",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=SEEDING_THREADS),
    )
    with concurrent.futures.ThreadPoolExecutor(SEEDING_THREADS) as pool:
        created = list(pool.map(lambda request: client.create_relationship(**request)["relationshipDetail"], requests))

    fresh_postgres_database(DATABASE)
    engine = sa.create_engine(POSTGRES_URL)
    with engine.raw_connection() as connection:
        connection.cursor().execute(candidate_table_ddl("partner_relationship_candidates", "TIMESTAMPTZ"))
        insert_candidates(connection, rows, "partner_relationship_candidates", "%s")
    warehouse = Warehouse(engine, SyncSettings().tables)
    warehouse.create_tables()
    recorded = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    outcomes = [
        {
            "candidate_id": row["candidate_id"],
            "status": "created",
            "relationship_id": detail["id"],
            "relationship_arn": detail["arn"],
            "attempts": 1,
            "client_token": request["clientToken"],
            "dag_run_id": "bench-seed",
            "updated_at": recorded,
            "request_json": json.dumps(request),
        }
        for row, request, detail in zip(rows, requests, created, strict=True)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(warehouse.schema.outcomes), outcomes)
    warehouse.close()

    # 1% deleted in AWS, 1% renamed in the feed.
    for detail, request in list(zip(created, requests, strict=True))[::DRIFT_EVERY]:
        client.delete_relationship(
            catalog=request["catalog"],
            programManagementAccountIdentifier=request["programManagementAccountIdentifier"],
            identifier=detail["id"],
        )
    renamed = [row["candidate_id"] for row in rows[1::DRIFT_EVERY]]
    candidates = sa.table("partner_relationship_candidates", sa.column("candidate_id"), sa.column("display_name"))
    with engine.begin() as connection:
        connection.execute(
            sa.update(candidates)
            .where(candidates.c.candidate_id.in_(renamed))
            .values(display_name=candidates.c.display_name + " II")
        )
    engine.dispose()


def measure(emulator: Emulator, pmas: int) -> Result:
    """One reconcile through the hook on the shared read schedule, at the emulator's read quota."""
    from include.partner_central.hooks import PartnerCentralChannelHook
    from include.sync.reconcile import reconcile
    from include.sync.settings import SyncSettings
    from include.sync.shared_rate_limit import WarehouseRateLimiter
    from include.sync.warehouse import Warehouse

    settings = SyncSettings()
    connection = {"login": ACCESS_KEY, "password": SECRET_KEY, "extra": {"endpoint_url": emulator.url}}
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps({"conn_type": "aws", **connection})
    emulator.admin("config", {"read_rate": settings.read_rate_per_second, "latency_ms": LATENCY_MS})
    calls_before = len(emulator.admin("calls"))
    warehouse = Warehouse(sa.create_engine(POSTGRES_URL), settings.tables)
    hook = PartnerCentralChannelHook(aws_conn_id=settings.aws_conn_id)
    hook.get_conn()  # the client is built before the clock starts, as the reconcile task does
    limiter = WarehouseRateLimiter(warehouse, f"aws:{settings.aws_conn_id}:read", settings.read_rate_per_second)
    start = time.perf_counter()
    counts = reconcile(warehouse, hook, settings, "bench-reconcile", limiter)
    seconds = time.perf_counter() - start
    warehouse.close()
    lists = [call for call in emulator.admin("calls")[calls_before:] if call["operation"].startswith("List")]
    listed = ("catalogs", "program_management_accounts", "relationships")
    drift = {kind: n for kind, n in counts.items() if kind not in listed}
    return Result(
        pmas=counts["program_management_accounts"],
        relationships=counts["relationships"],
        seconds=seconds,
        pages=sum(1 for call in lists if call["status"] == 200),
        read_rate=settings.read_rate_per_second,
        throttled=sum(1 for call in lists if call["error_code"] == "ThrottlingException"),
        drift=drift,
    )


def run(pmas: int = 10, per_pma: int = 1000) -> Result:
    emulator = Emulator()
    try:
        seed(emulator, candidates(pmas, per_pma))
        return measure(emulator, pmas)
    finally:
        emulator.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pmas", type=int, default=10)
    parser.add_argument("--per-pma", type=int, default=1000)
    args = parser.parse_args()
    result = run(args.pmas, args.per_pma)
    print(json.dumps({**vars(result), "ideal_seconds": result.ideal_seconds, "ratio": round(result.ratio, 3)}))
