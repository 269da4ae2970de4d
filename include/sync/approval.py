"""A person's approval of a run's plan before anything is applied: when the plan deletes relationships, or changes
more of them than `approval_threshold`, the run waits on Airflow's human-in-the-loop approval (standard provider),
showing the plan's counts and a sample (include.sync.plan). Approve applies the plan as it was staged; Reject, or no
answer within `approval_timeout_hours`, ends the run with nothing applied.

Imported by the DAG file when it is parsed: the sync's code (and botocore) is imported when the task runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator


class PlanApprovalOperator(ApprovalOperator):
    """Passes at once when the run's plan needs no approval (or is a dry run); else waits for Approve or Reject.
    Reject skips the calls (the downstream tasks) and is recorded with the run, so record_run ends it with nothing
    applied. The settings and the plan are read when the task runs, never at parse."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            subject="Apply the partner relationship sync's plan?",
            defaults=ApprovalOperator.REJECT,  # what no answer in time means
            **kwargs,
        )

    def execute(self, context: Any) -> Any:
        from include.sync import tasks

        waiting = tasks.plan_to_approve(context)
        if waiting is None:
            self.log.info("The plan needs no approval: applying it")
            return None
        self.body, timeout_hours = waiting
        self.response_timeout = dt.timedelta(hours=timeout_hours)
        self.log.info("Waiting for a person to approve the plan:\n%s", self.body)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from include.sync import tasks

        if "error" not in event:
            # Recorded first: on Reject the base class skips the calls by raising, and record_run reads the decision.
            self.validate_chosen_options(event["chosen_options"])
            tasks.record_approval(context, approved=event["chosen_options"] == [self.APPROVE], answer=event)
        return super().execute_complete(context, event)
