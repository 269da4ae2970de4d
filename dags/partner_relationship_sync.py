"""
### Partner relationship sync

Turns each valid candidate of the warehouse table `partner_relationship_candidates` into exactly one AWS Partner
Central relationship, and records what happened to every row back in the warehouse.

1. **check_and_stage**: every candidate that is not converged (never sent, changed since its last outcome, a
   retryable failure, a stale claim) is checked with Great Expectations; rejected rows are recorded with their
   reasons; the run stops before any API call when too many new rows are rejected; valid rows are staged in batches.
2. **approve_plan**: a plan that deletes relationships, or changes more of them than the approval threshold, waits
   for a person (Airflow's required actions: Approve applies it, Reject ends the run with nothing applied); any
   other plan passes at once.
3. **create_relationships**: one mapped task per batch, all in the `partner_central_api` pool, sharing the AWS
   account's rate; each outcome is written as its call returns. An account-level error (credentials, access,
   clock, endpoint) stops the batch and leaves its candidates pending.
4. **record_run**: the run's counts; the run fails when candidates are left to retry or were dead-lettered.

The data interval labels what is new; a backfill or a cleared run also re-evaluates its interval's rejected and
failed candidates. Trigger it by hand for a dry run, for given candidates, or to retry every rejected and failed one.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Param, TriggerRule, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from include.sync.approval import PlanApprovalOperator

# Read at parse time because Airflow needs them to build the DAG; everything else is read inside the tasks.
POOL = os.environ.get("PARTNER_SYNC_POOL", "partner_central_api")
SCHEDULE = os.environ.get("PARTNER_SYNC_SCHEDULE", "@daily")


@dag(
    dag_id="partner_relationship_sync",
    description="Warehouse candidates → data-quality checks → Partner Central relationships → outcomes",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["partner-central", "warehouse", "sync"],
    default_args={"owner": "partner-data", "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Check and stage the candidates and record what would be sent in the history table, "
            "without calling the API or changing the current state.",
        ),
        "candidate_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Candidate ids",
            description="Only these candidates (one per line), whatever their state: rejected, failed and "
            "dead-lettered ones are evaluated and sent again. Empty: every candidate that is not converged.",
        ),
        "include_all_pending": Param(
            False,
            type="boolean",
            title="Retry rejected and failed",
            description="Also evaluate again every rejected, failed and dead-lettered candidate whose row has not "
            "changed (after a fix outside the feed, such as a raised quota). Pending and changed candidates are "
            "always taken.",
        ),
        "limit": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Limit",
            description="At most this many candidates taken by the run (in candidate_id order). Empty: no limit.",
        ),
        "mode": Param(
            None,
            type=["null", "string"],
            enum=[None, "create", "upsert", "mirror"],
            title="Mode",
            description="Narrow what this run may do to relationships: create (only create), upsert (also update "
            "changed display names, support plans and tags), mirror (also delete the relationships of candidates "
            "that left the feed or are marked absent). Empty: the setting partner_sync_mode.",
        ),
        "max_reject_ratio": Param(
            0.2,
            type="number",
            minimum=0,
            maximum=1,
            title="Max reject ratio",
            description="Stop before any API call when a larger share of the candidates fails data-quality rules.",
        ),
    },
    doc_md=__doc__,
)
def partner_relationship_sync():
    # The tasks' code (boto3, the Amazon provider, Great Expectations) is imported when a task runs, not when the
    # DAG processor parses this file.
    @task
    def check_and_stage() -> list[dict[str, int]]:
        from include.sync import tasks

        return tasks.check_and_stage()

    @task(pool=POOL, map_index_template="{{ batch_label }}", retries=3)
    def create_relationships(batch: dict[str, int]) -> dict[str, int]:
        from include.sync import tasks

        return tasks.create_batch(batch)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def record_run() -> dict:
        from include.sync import tasks

        return tasks.record_run()

    batches = check_and_stage()
    # Waits for a person only when the plan deletes, or changes more than partner_sync_approval_threshold.
    approve_plan = PlanApprovalOperator(task_id="approve_plan")
    applied = create_relationships.expand(batch=batches)
    batches >> approve_plan >> applied >> record_run()


partner_relationship_sync()
