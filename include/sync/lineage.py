"""OpenLineage for the sync's and the reconcile's tasks: what each reads and writes, named as OpenLineage names
them. Input: the warehouse's candidates table (or AWS's relationships, for the reconcile); outputs: Partner Central's
relationships and the warehouse's outcome, history and run tables. The table names are settings, so the datasets are
made when the task completes (the OpenLineage provider asks the task's operator, `LineageTaskOperator`).

`lineage_task` is the `@task` decorator with that: the DAG files import it when they are parsed; the sync's code and
OpenLineage's are imported only when the provider asks."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.bases.decorator import task_decorator_factory

# Each task's inputs and outputs: a table (a Tables field) or RELATIONSHIPS (Partner Central's relationships).
RELATIONSHIPS = "relationships"
TASK_DATASETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "check_and_stage": (("candidates",), ("outcomes", "attempts", "runs")),
    "create_relationships": (("candidates",), (RELATIONSHIPS, "outcomes", "attempts")),
    "record_run": (("attempts",), ("runs",)),
    "reconcile": ((RELATIONSHIPS,), ("remote", "program_management_accounts", "drift", "outcomes")),
}


def table_namespace_and_names(conn_id: str, tables: list[str]) -> tuple[str, list[str]]:
    """The warehouse's OpenLineage namespace (`postgres://host:port`, `mysql://host:port`, `snowflake://account`,
    `sqlite:///path`) and each table's qualified name in it, from the connection's own provider hook."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    hook = connection.get_hook()
    info = hook.get_openlineage_database_info(connection)
    if info is None:  # SQLite: one file, no schemas
        return f"sqlite://{connection.host}", tables
    from airflow.providers.openlineage.sqlparser import SQLParser

    database = info.database or connection.schema
    schema = hook.get_openlineage_default_schema() if connection.conn_type != "mysql" else None
    names = [".".join(part for part in (database, schema, table) if part) for table in tables]
    return SQLParser.create_namespace(info), [name.upper() if info.is_uppercase_names else name for name in names]


def task_lineage(task_id: str) -> Any:
    """The OperatorLineage of one of the sync's tasks, from the settings of now (None: a task with no datasets)."""
    if task_id not in TASK_DATASETS:
        return None
    from openlineage.client.event_v2 import Dataset

    from include.partner_central.hooks import PartnerCentralChannelHook
    from include.partner_central.lineage import operator_lineage, relationships_dataset
    from include.sync.tasks import sync_settings

    settings = sync_settings()
    inputs, outputs = TASK_DATASETS[task_id]
    tables = [name for name in (*inputs, *outputs) if name != RELATIONSHIPS]
    namespace, qualified = table_namespace_and_names(
        settings.warehouse_conn_id, [getattr(settings.tables, name) for name in tables]
    )
    by_name = dict(zip(tables, qualified, strict=True))
    region = PartnerCentralChannelHook(aws_conn_id=settings.aws_conn_id).region_name

    def dataset(name: str) -> Dataset:
        return relationships_dataset(region) if name == RELATIONSHIPS else Dataset(namespace, by_name[name])

    return operator_lineage(inputs=[dataset(name) for name in inputs], outputs=[dataset(name) for name in outputs])


class LineageTaskOperator(_PythonDecoratedOperator):
    """A `@task` whose OpenLineage events name the datasets of TASK_DATASETS."""

    custom_operator_name = "@task"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return task_lineage(self.task_id)


def lineage_task(python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
    """`@task`, with the task's datasets in its OpenLineage events."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=LineageTaskOperator,
        **kwargs,
    )
