"""
### Partner relationship sync

Turns each valid candidate of the warehouse table `partner_relationship_candidates` into exactly one AWS Partner
Central relationship, and records what happened to every row back in the warehouse.

1. **preflight**: the credentials and their account, the PMAs' statuses, and every permission the run's mode needs
   (a probe per operation that cannot change anything); what is missing fails the run before any candidate is
   claimed.
2. **check_and_stage**: every candidate that is not converged (never sent, changed since its last outcome, a
   retryable failure, a stale claim) is checked with Great Expectations; rejected rows are recorded with their
   reasons; the run stops before any API call when too many new rows are rejected; valid rows are staged in batches.
3. **approve_plan**: a plan that deletes relationships, or changes more of them than the approval threshold, waits
   for a person (Airflow's required actions: Approve applies it, Reject ends the run with nothing applied); any
   other plan passes at once.
4. **create_relationships**: one mapped task per batch, all in the `partner_central_api` pool, sharing the AWS
   account's rate; each outcome is written as its call returns. An account-level error (credentials, access,
   clock, endpoint) stops the batch and leaves its candidates pending.
5. **record_run**: the run's counts; the run fails when candidates are left to retry or were dead-lettered.
6. **publish_changes** (beside record_run): when the run changed relationships, even if it fails for others, the
   Asset `partner_central_relationships` gets an event with the run's counts, for the DAGs scheduled on it.

The data interval labels what is new; a backfill or a cleared run also re-evaluates its interval's rejected and
failed candidates. Trigger it by hand for a dry run, for given candidates, or to retry every rejected and failed one.
A failed run, a run with a warning and a run past its deadline alert the channels the `partner_sync_alert_*`
settings name (email, Slack, SNS).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, Param, TriggerRule, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from include.sync.approval import PlanApprovalOperator
from include.sync.assets import RELATIONSHIPS, upstream
from include.sync.lineage import lineage_task

# Read at parse time because Airflow needs them to build the DAG; everything else is read inside the tasks.
POOL = os.environ.get("PARTNER_SYNC_POOL", "partner_central_api")
SCHEDULE = os.environ.get("PARTNER_SYNC_SCHEDULE", "@daily")
# An Asset (its URI or name) whose events trigger the sync instead of SCHEDULE: the candidates table, refreshed by
# another DAG.
UPSTREAM_ASSET = upstream(os.environ.get("PARTNER_SYNC_SCHEDULE_ASSET"))
# Minutes after a run is queued by which it should be done; past them the alert channels are told (unset: none).
DEADLINE_MINUTES = os.environ.get("PARTNER_SYNC_DEADLINE_MINUTES")


def alert_failed(context):
    from include.sync import tasks

    tasks.alert_failed(context)


def alert_succeeded(context):
    from include.sync import tasks

    tasks.alert_succeeded(context)


@dag(
    dag_id="partner_relationship_sync",
    description="Warehouse candidates → data-quality checks → Partner Central relationships → outcomes",
    schedule=UPSTREAM_ASSET or CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["partner-central", "warehouse", "sync"],
    default_args={"owner": "partner-data", "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    on_failure_callback=alert_failed,
    on_success_callback=alert_succeeded,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=float(DEADLINE_MINUTES)),
        callback=AsyncCallback("include.sync.tasks.deadline_missed"),
    )
    if DEADLINE_MINUTES
    else None,
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
    # DAG processor parses this file. A @lineage_task names what it reads and writes in its OpenLineage events.
    @task(pool=POOL)  # it calls the API: like the batches, it takes a slot
    def preflight() -> dict:
        from include.sync import tasks

        return tasks.preflight()

    @lineage_task
    def check_and_stage() -> list[dict[str, int]]:
        from include.sync import tasks

        return tasks.check_and_stage()

    @lineage_task(pool=POOL, map_index_template="{{ batch_label }}", retries=3)
    def create_relationships(batch: dict[str, int]) -> dict[str, int]:
        from include.sync import tasks

        return tasks.create_batch(batch)

    @lineage_task(trigger_rule=TriggerRule.ALL_DONE)
    def record_run() -> dict:
        from include.sync import tasks

        return tasks.record_run()

    # Emits no event (skipped) when the run changed nothing, or was a dry run.
    @task(outlets=[RELATIONSHIPS], trigger_rule=TriggerRule.ALL_DONE)
    def publish_changes() -> dict:
        from include.sync import tasks

        return tasks.publish_changes()

    batches = check_and_stage()
    preflight() >> batches
    # Waits for a person only when the plan deletes, or changes more than partner_sync_approval_threshold.
    approve_plan = PlanApprovalOperator(task_id="approve_plan")
    applied = create_relationships.expand(batch=batches)
    batches >> approve_plan >> applied >> [record_run(), publish_changes()]


partner_relationship_sync()
