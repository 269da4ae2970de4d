"""OpenLineage: each sync task's datasets, named as OpenLineage names them on every real warehouse (the namespace
and the qualified name its provider hook gives), Partner Central's relationships as the operators' output, and the
DAGs' tasks built to report them. The events themselves, through the provider's file transport on a running Airflow:
tests/e2e/test_lineage_on_airflow.py."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
from openlineage.client.event_v2 import Dataset

from include.partner_central.operators import CreateRelationshipOperator, DeleteRelationshipOperator
from include.sync.lineage import TASK_DATASETS, LineageTaskOperator, task_lineage
from tests.conftest import SNOWFLAKE_DATABASE
from tests.test_dag_integrity import DAGS_FOLDER

RELATIONSHIPS = Dataset("awspartnercentral://us-east-1", "relationships")


def expected_table(test_warehouse, table: str) -> Dataset:
    """How OpenLineage's naming (spec/Naming.md) names a table of each warehouse of the suite."""
    conn = test_warehouse.airflow_conn
    if test_warehouse.kind == "sqlite":
        return Dataset(f"sqlite://{conn['host']}", table)
    if test_warehouse.kind == "postgres":
        return Dataset("postgres://127.0.0.1:5432", f"{conn['schema']}.public.{table}")
    if test_warehouse.kind == "mariadb":
        return Dataset("mysql://127.0.0.1:3306", f"{conn['schema']}.{table}")
    # The account's host as the Snowflake provider names it (for the fakesnow server: its host and region).
    account = SnowflakeHook(snowflake_conn_id="partner_warehouse")._get_openlineage_authority(None)
    return Dataset(f"snowflake://{account}", f"{SNOWFLAKE_DATABASE}.PUBLIC.{table}".upper())


def test_the_sync_reads_the_candidates_and_writes_partner_central_and_the_outcome_tables(test_warehouse):
    staged, created, recorded = (
        task_lineage(task) for task in ("check_and_stage", "create_relationships", "record_run")
    )

    candidates = expected_table(test_warehouse, "partner_relationship_candidates")
    outcomes = expected_table(test_warehouse, "partner_relationship_outcomes")
    history = expected_table(test_warehouse, "partner_relationship_attempts")
    runs = expected_table(test_warehouse, "partner_relationship_sync_runs")
    assert (staged.inputs, staged.outputs) == ([candidates], [outcomes, history, runs])
    assert (created.inputs, created.outputs) == ([candidates], [RELATIONSHIPS, outcomes, history])
    assert (recorded.inputs, recorded.outputs) == ([history], [runs])


def test_table_names_come_from_the_settings(test_warehouse, monkeypatch):
    monkeypatch.setenv("PARTNER_SYNC_CANDIDATES_TABLE", "crm_partner_candidates")

    assert task_lineage("check_and_stage").inputs == [expected_table(test_warehouse, "crm_partner_candidates")]


def test_the_reconcile_reads_partner_central_and_writes_the_remote_and_drift_tables(test_warehouse):
    lineage = task_lineage("reconcile")

    assert lineage.inputs == [RELATIONSHIPS]
    assert [dataset.name.lower().rsplit(".", 1)[-1] for dataset in lineage.outputs] == [
        "partner_relationships_remote",
        "partner_program_management_accounts",
        "partner_relationship_drift",
        "partner_relationship_outcomes",
    ]


def test_a_task_without_datasets_reports_none():
    assert task_lineage("preflight") is None


@pytest.mark.parametrize(
    "operator",
    [
        CreateRelationshipOperator(
            task_id="create",
            catalog="Sandbox",
            association_type="DOWNSTREAM_SELLER",
            program_management_account_identifier="pma-1",
            display_name="x",
            sector="COMMERCIAL",
        ),
        DeleteRelationshipOperator(
            task_id="delete", catalog="Sandbox", identifier="rs-1", program_management_account_identifier="pma-1"
        ),
    ],
    ids=["create", "delete"],
)
def test_the_write_operators_output_partner_centrals_relationships(operator):
    lineage = operator.get_openlineage_facets_on_complete(None)

    assert (lineage.inputs, lineage.outputs) == ([], [RELATIONSHIPS])


def test_the_dags_tasks_that_touch_datasets_report_them():
    dags = DagBag(dag_folder=DAGS_FOLDER).dags
    reporting = {
        task.task_id
        for dag_id in ("partner_relationship_sync", "partner_relationship_reconcile")
        for task in dags[dag_id].tasks
        # A mapped task (the batches) is a MappedOperator of the operator class.
        if issubclass(getattr(task, "operator_class", type(task)), LineageTaskOperator)
    }
    assert reporting == set(TASK_DATASETS)
