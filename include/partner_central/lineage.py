"""OpenLineage's name for Partner Central's relationships: the dataset the write operators and the sync output, and
the reconcile reads, so that a lineage graph joins them. The OpenLineage provider calls the operators'
`get_openlineage_facets_on_complete`; nothing here is imported when OpenLineage is not installed or not used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# An AWS account's Partner Central relationships in one region (OpenLineage's Naming.md: a namespace per service
# instance, a name per dataset in it).
NAMESPACE_SCHEME = "awspartnercentral"
DATASET_NAME = "relationships"


def relationships_dataset(region: str) -> Any:
    from openlineage.client.event_v2 import Dataset

    return Dataset(namespace=f"{NAMESPACE_SCHEME}://{region}", name=DATASET_NAME)


def operator_lineage(*, inputs: Sequence[Any] = (), outputs: Sequence[Any] = ()) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=list(inputs), outputs=list(outputs))
