"""The approaches a user would otherwise take, for `make bench` only (it puts this file next to the project's DAGs
in the benchmark's own DAGs folder; it is not deployed)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import dag, task

from include.partner_central.operators import CreateRelationshipOperator

POOL = os.environ.get("PARTNER_SYNC_POOL", "partner_central_api")


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False, tags=["bench"])
def bench_operator_per_candidate():
    @task
    def candidate_fields() -> list[dict]:
        from bench.alternatives import operator_kwargs

        return operator_kwargs()

    CreateRelationshipOperator.partial(task_id="create_relationship", pool=POOL).expand_kwargs(candidate_fields())


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False, tags=["bench"])
def bench_boto3_loop():
    @task(pool=POOL)
    def create_all() -> dict[str, int]:
        from bench.alternatives import boto3_loop

        return boto3_loop()

    create_all()


bench_operator_per_candidate()
bench_boto3_loop()
