"""
### Partner relationship reconcile

Lists every relationship and program management account that AWS Partner Central holds for the account (in the
catalogs the candidates name) into the warehouse tables `partner_relationships_remote` and
`partner_program_management_accounts`, and reports how AWS differs from the candidates and their outcomes in
`partner_relationship_drift`: relationships no candidate names, created relationships that AWS no longer has (their
candidates become pending, so the next sync creates them again) and fields that differ. Read calls only, paced at the
account's read quota.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import dag

from include.sync.lineage import lineage_task

# Read at parse time because Airflow needs it to build the DAG; everything else is read inside the task.
SCHEDULE = os.environ.get("PARTNER_RECONCILE_SCHEDULE", "@daily")


@dag(
    dag_id="partner_relationship_reconcile",
    description="Partner Central relationships and PMAs → warehouse mirror → drift",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["partner-central", "warehouse", "reconcile"],
    default_args={"owner": "partner-data", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    doc_md=__doc__,
)
def partner_relationship_reconcile():
    @lineage_task  # its OpenLineage events: AWS's relationships in, the remote and drift tables out
    def reconcile() -> dict:
        from include.sync import tasks  # boto3 and the warehouse drivers: imported when the task runs

        return tasks.reconcile()

    reconcile()


partner_relationship_reconcile()
