"""The three steps of a sync run, as plain functions on a Warehouse: the DAG's tasks only open connections and call
them.

1. prepare: select the run's candidates, check them, record rejections, stop at the reject-ratio gate, stage the
   valid ones and plan the batches. Nothing is sent yet.
2. create_batch: for each staged candidate of one batch, claim it, call the API through the operator's code path,
   and record its outcome as soon as the call returns.
3. finish: count what the run's history holds, write the run row, and fail the run when a later run must retry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from include.partner_central.api_errors import ApiError
from include.partner_central.create_relationship import create_relationship
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.retry_policy import RetryPolicy
from include.sync import candidates as cand
from include.sync.settings import SyncSettings
from include.sync.warehouse import (
    DONE,
    DRY_RUN,
    FAILED,
    REJECTED,
    RUN_COUNT_COLUMNS,
    SKIPPED,
    Outcome,
    Warehouse,
)

log = logging.getLogger(__name__)


class QualityGateError(Exception):
    """Too large a share of the run's candidates failed the data-quality rules: the feed looks broken."""


class SyncRunFailed(Exception):
    """The run left work that a later run (or a backfill with --reprocess-behavior failed) must retry."""


@dataclass(frozen=True)
class RunRequest:
    """What one DAG run is asked to do: its id, its data interval and the trigger form's Params."""

    dag_run_id: str
    interval: tuple[dt.datetime, dt.datetime] | None
    dry_run: bool = False
    candidate_ids: tuple[str, ...] = ()
    include_all_pending: bool = False
    limit: int | None = None
    max_reject_ratio: float = 0.2

    @property
    def selection_interval(self) -> tuple[dt.datetime, dt.datetime] | None:
        return None if self.include_all_pending or self.candidate_ids else self.interval


@dataclass(frozen=True)
class Batch:
    number: int
    first: int
    end: int

    @property
    def label(self) -> str:
        return f"batch {self.number}: rows {self.first}-{self.end - 1}"


def plan_batches(rows: int, batch_size: int, max_batches: int) -> list[Batch]:
    """Batches of `batch_size`, grown when needed so that there are never more than `max_batches`."""
    if rows == 0:
        return []
    size = max(batch_size, math.ceil(rows / max_batches))
    return [Batch(n, first, min(first + size, rows)) for n, first in enumerate(range(0, rows, size))]


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: Counter = Counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}


def prepare(warehouse: Warehouse, settings: SyncSettings, run: RunRequest) -> list[Batch]:
    from include.sync.quality import CandidateChecks, summary  # Great Expectations: seconds to import

    timer = PhaseTimer()
    warehouse.create_tables()
    warehouse.start_run(run.dag_run_id, run.interval, run.dry_run)
    warehouse.clear_staging(run.dag_run_id)
    warehouse.forget_retryable(run.dag_run_id)
    checks = CandidateChecks()
    counts: Counter = Counter()
    changed: list[str] = []
    staged = 0
    selection = warehouse.select_candidates(
        interval=run.selection_interval,
        candidate_ids=run.candidate_ids,
        limit=run.limit,
        claim_timeout_seconds=settings.claim_timeout_seconds,
        chunk_rows=settings.chunk_rows,
    )
    while True:
        with timer.phase("select"):
            chunk = next(selection, None)
        if chunk is None:
            break
        counts["selected"] += len(chunk)
        with timer.phase("quality"):
            pending = []
            for raw in chunk:
                row = cand.normalise(raw)
                if row["prior_status"] in DONE:
                    if str(raw["updated_at"]) != str(row["prior_candidate_updated_at"]):
                        changed.append(row["candidate_id"])
                    counts["skipped_done"] += 1
                else:
                    pending.append(row)
            linked = warehouse.linked_identities([key for row in pending if (key := cand.identity(row))])
            result = checks.check(pending, linked)
            counts["checked"] += len(pending)
            counts["rejected"] += len(result.reasons)
            counts.update({f"rule:{rule}": n for rule, n in result.rule_failures.items()})
        with timer.phase("record_rejections"):
            rejected = [
                Outcome(
                    candidate_id=row["candidate_id"],
                    status=REJECTED,
                    error_code="DataQuality",
                    error_message="; ".join(result.reasons[row["candidate_id"]]),
                    retryable=False,
                    candidate_updated_at=row["updated_at"],
                )
                for row in pending
                if row["candidate_id"] in result.reasons
            ]
            warehouse.record_many(run.dag_run_id, rejected, current_state=not run.dry_run)
        with timer.phase("stage"):
            rows = []
            for row in pending:
                if row["candidate_id"] in result.reasons:
                    continue
                request = cand.request_for(row)
                rows.append(
                    (
                        row["candidate_id"],
                        staged,
                        json.dumps(request),
                        request["clientToken"],
                        None if row["updated_at"] is None else str(row["updated_at"]),
                    )
                )
                staged += 1
            warehouse.stage(run.dag_run_id, rows)

    failures = Counter({key[5:]: n for key, n in counts.items() if key.startswith("rule:")})
    quality = {
        "checked": counts["checked"],
        "rejected": counts["rejected"],
        # Over every row the run selected, done ones included, so that re-running an interval judges the same feed.
        "reject_ratio": round(counts["rejected"] / counts["selected"], 4) if counts["selected"] else 0.0,
        "max_reject_ratio": run.max_reject_ratio,
        "rule_failures": dict(failures.most_common()),
    }
    run_values: dict[str, Any] = {
        "selected": counts["selected"],
        "rejected": counts["rejected"],
        "staged": staged,
        "skipped_done": counts["skipped_done"],
        "changed_after_done": len(changed),
        "quality_summary": quality,
        "phase_seconds": timer.rounded(),
    }
    if changed:
        log.warning(
            "%d candidate(s) changed after their relationship was created; updating relationships is out of scope, "
            "so they are not sent again: %s%s",
            len(changed),
            ", ".join(changed[:20]),
            " ..." if len(changed) > 20 else "",
        )
    if quality["reject_ratio"] > run.max_reject_ratio:
        warehouse.update_run(run.dag_run_id, **{**run_values, "staged": 0})
        warehouse.clear_staging(run.dag_run_id)
        raise QualityGateError(
            f"{quality['reject_ratio']:.1%} of the run's candidates were rejected, more than max_reject_ratio="
            f"{run.max_reject_ratio:g}; nothing was sent.\n" + summary(failures, counts["rejected"], counts["selected"])
        )
    if counts["rejected"]:
        log.info(summary(failures, counts["rejected"], counts["selected"]))
    batches = plan_batches(staged, settings.batch_size, settings.max_batches)
    warehouse.update_run(run.dag_run_id, **run_values, staged_at=warehouse.now())
    log.info(
        "Selected %d (interval %s), rejected %d, staged %d in %d batch(es); %d already done. Phases (s): %s",
        counts["selected"],
        "none" if run.selection_interval is None else " .. ".join(t.isoformat() for t in run.selection_interval),
        counts["rejected"],
        staged,
        len(batches),
        counts["skipped_done"],
        timer.rounded(),
    )
    return batches


def create_batch(
    warehouse: Warehouse,
    settings: SyncSettings,
    run: RunRequest,
    batch: Batch,
    client: Any,
    limiter: RateLimiter,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> Counter:
    """Send one batch. Each outcome is written when its call returns; rows this run already recorded are skipped,
    so a retried batch picks up where a killed one stopped."""
    policy = RetryPolicy(max_attempts=settings.max_attempts, max_seconds=settings.max_retry_seconds)
    counts: Counter = Counter()
    for row in warehouse.batch(run.dag_run_id, batch.first, batch.end):
        outcome = _send(warehouse, settings, run, row, client, limiter, policy, logger)
        warehouse.record(run.dag_run_id, outcome, current_state=outcome.status not in (DRY_RUN, SKIPPED))
        counts[
            outcome.status
            if outcome.status != FAILED
            else f"failed_{'retryable' if outcome.retryable else 'permanent'}"
        ] += 1
    logger.info("%s: %s", batch.label, dict(counts) or "nothing left to send")
    return counts


def _send(
    warehouse: Warehouse,
    settings: SyncSettings,
    run: RunRequest,
    row: dict[str, Any],
    client: Any,
    limiter: RateLimiter,
    policy: RetryPolicy,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Outcome:
    base = {
        "candidate_id": row["candidate_id"],
        "client_token": row["client_token"],
        "candidate_updated_at": row["candidate_updated_at"],
    }
    if run.dry_run:
        return Outcome(status=DRY_RUN, request_json=row["request_json"], **base)
    if not warehouse.claim(run.dag_run_id, row["candidate_id"], row["client_token"], settings.claim_timeout_seconds):
        return Outcome(status=SKIPPED, error_message="done or claimed by another run", **base)
    try:
        result = create_relationship(
            client, json.loads(row["request_json"]), limiter=limiter, policy=policy, logger=logger
        )
    except ApiError as error:
        return Outcome(
            status=FAILED,
            error_code=error.code,
            error_message=error.message,
            retryable=error.retryable,
            attempts=error.attempts,
            **base,
        )
    return Outcome(
        status=result.status,
        relationship_id=result.relationship_id,
        relationship_arn=result.relationship_arn,
        attempts=result.attempts,
        **base,
    )


def finish(warehouse: Warehouse, run: RunRequest, logger: logging.Logger | logging.LoggerAdapter = log) -> dict:
    """Write the run row and log its counts; raise SyncRunFailed when a later run has work to retry."""
    counts = warehouse.run_counts(run.dag_run_id)
    warehouse.update_run(run.dag_run_id, **counts, ended_at=warehouse.now())
    row = warehouse.run(run.dag_run_id) or {}
    logger.info("Sync run %s%s:\n%s", run.dag_run_id, " (dry run)" if run.dry_run else "", counts_table(row))
    problems = []
    if not row.get("staged_at"):
        problems.append("candidates were not checked and staged (see the check_and_stage task)")
    if counts["failed_retryable"]:
        problems.append(f"{counts['failed_retryable']} candidate(s) failed with a retryable error")
    if counts["unfinished"]:
        problems.append(f"{counts['unfinished']} staged candidate(s) have no outcome (a batch did not finish)")
    if problems:
        raise SyncRunFailed(
            "; ".join(problems) + ". A later run, or a backfill with --reprocess-behavior failed, retries them."
        )
    return {key: row.get(key) for key in RUN_COUNT_COLUMNS}


def counts_table(row: dict[str, Any]) -> str:
    return "\n".join(f"  {key:<20} {row.get(key) or 0:>9}" for key in RUN_COUNT_COLUMNS)
