"""What a user would otherwise write instead of the sync DAG: the task code of bench/dags/, which `make bench` runs
side by side with the sync at the same N and quota. Not part of the package."""

from __future__ import annotations

from collections import Counter
from typing import Any

from include.sync import candidates as cand
from include.vocabulary import CANDIDATE_COLUMNS


def valid_candidates() -> list[dict[str, Any]]:
    """Every candidate of the warehouse, normalised (the benchmark's candidates are all valid)."""
    from include.sync.tasks import open_warehouse, sync_settings

    settings = sync_settings()
    with open_warehouse(settings) as warehouse:
        warehouse.create_tables()
        chunks = warehouse.scan_candidates(CANDIDATE_COLUMNS, (), chunk_rows=10_000)
        return [cand.normalise(row)[0] for chunk in chunks for row in chunk]


def operator_kwargs() -> list[dict[str, Any]]:
    """(a) one CreateRelationshipOperator per candidate: the arguments of each mapped task instance, via XCom."""
    return [cand.fields_for(row) for row in valid_candidates()]


def boto3_loop() -> dict[str, int]:
    """(b) one task looping over boto3 with its defaults: the Amazon provider's plain hook (botocore's retries),
    botocore's random clientToken, no rate limiter."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.exceptions import BotoCoreError, ClientError

    client = AwsBaseHook(aws_conn_id="aws_default", client_type="partnercentral-channel").conn
    counts: Counter = Counter()
    for row in valid_candidates():
        request = cand.request_for(row)
        request.pop("clientToken")
        try:
            client.create_relationship(**request)
            counts["created"] += 1
        except ClientError as error:
            counts[error.response["Error"]["Code"]] += 1
        except BotoCoreError as error:
            counts[type(error).__name__] += 1
    return dict(counts)
