"""The three steps of a sync run, as plain functions on a Warehouse: the DAG's tasks only open connections and call
them.

1. prepare: select every candidate that is not converged (by its state and the fingerprint of what it would send,
   not by time), check them, stop at the reject-ratio gate, record rejections, stage the valid ones and plan the
   batches. Nothing is sent yet.
2. create_batch: for each staged candidate of one batch, claim it, call the API through the operator's code path,
   and record its outcome as soon as the call returns. An error that is no candidate's (credentials, access, clock,
   endpoint, sustained throttling) stops the batch and leaves its candidates pending.
3. finish: count what the run's history holds, write the run row, clean up, and fail the run when a later run must
   retry or a person must look.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from include.partner_central.api_errors import AccountLevelError, ApiError, stop_if_account_level
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.relationship_changes import delete_token_for
from include.partner_central.relationship_request import pma_id
from include.partner_central.retry_policy import RetryPolicy
from include.sync import candidates as cand
from include.sync import plan as planning
from include.sync.settings import SyncSettings
from include.sync.warehouse import Outcome, Warehouse
from include.vocabulary import (
    ABSENT,
    ACTION_CREATE,
    ACTION_DELETE,
    ACTION_NO_CHANGE,
    ALREADY_UPDATED,
    APPROVAL_REJECTED,
    CANDIDATE_COLUMNS,
    CHANGE_FAILED,
    CLAIMED,
    DEAD_LETTER,
    DESIRED_STATE_COLUMN,
    DONE,
    DRY_RUN,
    FAILED,
    GONE,
    MODE_CREATE,
    MODE_MIRROR,
    NEEDS_RECREATE,
    PENDING,
    PLAN_ACTIONS,
    PRESENT,
    REJECTED,
    RUN_COUNT_COLUMNS,
    SKIPPED,
    UPDATABLE_FIELDS,
    UPDATED,
)

if TYPE_CHECKING:  # the sync stays plain Python: Airflow is imported by the task that builds the hook
    from include.partner_central.hooks import PartnerCentralChannelHook

log = logging.getLogger(__name__)


class QualityGateError(Exception):
    """Too large a share of the run's candidates failed the data-quality rules: the feed looks broken."""


class DeleteGuardError(Exception):
    """Mode mirror would delete more relationships than max_deletes or max_delete_ratio allow: the feed may be
    truncated. Nothing is sent."""


# How a failed run is recovered, whatever failed it (README: "What fails a run, and how to recover").
RECOVERY = "The next run, or a backfill with --reprocess-behavior failed, sends what is left."


class SyncRunFailed(Exception):
    """The run left work that a later run (or a backfill with --reprocess-behavior failed) must retry."""


@dataclass(frozen=True)
class RunRequest:
    """What one DAG run is asked to do: its id, its data interval and the trigger form's Params."""

    dag_run_id: str
    interval: tuple[dt.datetime, dt.datetime] | None
    dry_run: bool = False
    candidate_ids: tuple[str, ...] = ()
    # Re-evaluate every rejected, permanently failed and dead-lettered candidate, whatever its interval.
    include_all_pending: bool = False
    limit: int | None = None
    max_reject_ratio: float = 0.2
    # A backfill: its interval's rejected, failed and dead-lettered candidates are evaluated again (so is a cleared
    # run's, which prepare recognises by its run row).
    backfill: bool = False
    # What the run may do to relationships (include.vocabulary.SYNC_MODES): the setting, or narrower.
    mode: str = MODE_CREATE

    @property
    def updates(self) -> bool:
        """Whether a changed row of a candidate that has its relationship is brought to it (upsert, mirror)."""
        return self.mode != MODE_CREATE

    @property
    def deletes(self) -> bool:
        """Whether the relationships of candidates that left the feed or are marked absent are deleted (mirror)."""
        return self.mode == MODE_MIRROR

    def in_interval(self, moment: dt.datetime | None) -> bool:
        return self.interval is not None and moment is not None and self.interval[0] <= moment < self.interval[1]


# Why a candidate is taken by a run. NEW and CHANGED are content the run checks for the first time: the reject-ratio
# gate judges only those, so old rejects never trip it.
NEW, CHANGED, RETRY, STALE_CLAIM, REEVALUATE = "new", "changed", "retry", "stale_claim", "reevaluate"
# A candidate whose relationship mode mirror deleted, and whose row is back (present): created anew.
RETURNED = "returned"
FIRST_CHECK = (NEW, CHANGED)
CONVERGED, CHANGED_AFTER_DONE, IN_FLIGHT, SETTLED = "converged", "changed_after_done", "in_flight", "settled"


def why_taken(prior: dict[str, Any], fingerprint: str, *, stale_before: dt.datetime) -> str:
    """Whether a candidate needs this run, and why, from its current state and the fingerprint of its row. The
    answers that take it: NEW, CHANGED, RETRY, STALE_CLAIM, RETURNED; the others leave it: CONVERGED, CHANGED_AFTER_DONE
    (created, and the row changed since: reported), IN_FLIGHT (another live run's claim), SETTLED (rejected or failed
    for good with an unchanged row, or a change that failed for good: a re-evaluation the run asks for turns it into
    REEVALUATE)."""
    status = prior.get("status")
    if status is None:
        return NEW
    changed = prior.get("fingerprint") != fingerprint
    if status in DONE:
        # A row created before fingerprints were recorded has none: it counts as unchanged.
        if changed and prior.get("fingerprint"):
            return CHANGED_AFTER_DONE
        return SETTLED if status == CHANGE_FAILED else CONVERGED
    if status in GONE:
        return RETURNED
    if status == CLAIMED:
        claimed_at = prior.get("claimed_at")
        return STALE_CLAIM if claimed_at is None or claimed_at < stale_before else IN_FLIGHT
    if changed:
        return CHANGED
    if status == PENDING or (status == FAILED and prior.get("retryable")):
        return RETRY
    return SETTLED


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


class Triage:
    """Which candidates of the feed this run takes, and why: one pass over the whole candidates table with each row's
    current state (a million rows on a large feed, most of them converged: only what is taken is parsed further)."""

    def __init__(
        self,
        warehouse: Warehouse,
        settings: SyncSettings,
        run: RunRequest,
        reevaluate_interval: bool,
        columns: tuple[str, ...] = CANDIDATE_COLUMNS,
    ):
        self.warehouse, self.settings, self.run, self.columns = warehouse, settings, run, columns
        self.reevaluate_interval = reevaluate_interval
        self.named = {key for cid in run.candidate_ids if (key := cand.candidate_key(cid))}
        self.stale_before = warehouse.db_now() - dt.timedelta(seconds=settings.claim_timeout_seconds)
        self.duplicate_ids, without_id = warehouse.duplicate_ids()
        self.counts: Counter = Counter(without_id=without_id)
        self.changed_after_done: list[str] = []
        self.type_problems: dict[str, list[str]] = {}
        self.duplicates: list[Outcome] = []  # rejections of duplicated ids, one per id, taken by the caller
        # Candidates marked absent that have their relationship: deleted in mode mirror, else reported.
        self.absent_with_relationship: list[str] = []

    def taken(self, timer: PhaseTimer) -> Iterator[dict[str, Any]]:
        """The rows to check, cleaned, in candidate_id order, each with its fingerprint and why it was taken."""
        limit = self.run.limit or math.inf
        chunks = self.warehouse.scan_candidates(self.columns, sorted(self.named), self.settings.chunk_rows)
        while True:
            with timer.phase("select"):
                chunk = next(chunks, None)
            if chunk is None:
                return
            with timer.phase("triage"):
                rows = [row for raw in chunk if (row := self._take(raw)) is not None]
            for row in rows:
                if self.counts["selected"] >= limit:
                    return
                self.counts["selected"] += 1
                self.counts[f"why:{row['why']}"] += 1
                self.counts["in_interval"] += self.run.in_interval(row["updated_at"])
                yield row

    def _take(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        key = cand.candidate_key(raw["candidate_id"])
        if key is None:
            return None  # no usable id: counted by duplicate_ids
        desired, desired_problem = cand.desired_state(raw.get(DESIRED_STATE_COLUMN))
        if desired == ABSENT and key not in self.duplicate_ids:
            # Never created; its relationship, if it has one, is the mirror's to delete.
            if raw["prior_status"] in DONE:
                self.absent_with_relationship.append(key)
            else:
                self.counts["absent"] += 1
            return None
        if (
            raw["prior_status"] in DONE
            and key not in self.duplicate_ids
            and desired_problem is None
            and self._done_and_left(key, raw)
        ):
            return None
        row, problems = cand.clean_values(raw)
        row["candidate_id"] = key
        prior = {name: raw[f"prior_{name}"] for name in ("status", "fingerprint", "retryable", "failed_runs")}
        prior["claimed_at"] = raw["prior_claimed_at"]
        copies = self.duplicate_ids.get(key)
        # All copies of a duplicated id are one rejection; its fingerprint says how many copies there were.
        fingerprint = f"duplicate-id:{copies}" if copies else cand.fingerprint(row)
        why = why_taken(prior, fingerprint, stale_before=self.stale_before)
        # A change that failed for good, whose row changed since: its failures start again from none.
        changed_since_failure = prior["status"] == CHANGE_FAILED and why == CHANGED_AFTER_DONE
        if desired_problem is not None:
            problems.append(desired_problem)
            if why in (CONVERGED, CHANGED_AFTER_DONE, SETTLED):
                why = REEVALUATE  # reported each run until the value is fixed
        # updated_at is parsed only where it matters: most rows of a large feed are converged.
        if why == SETTLED and (
            key in self.named
            or self.run.include_all_pending
            or (self.reevaluate_interval and self.run.in_interval(cand.parse_timestamp(raw["updated_at"])[0]))
        ):
            why = REEVALUATE
        if why == REEVALUATE and prior["status"] == CHANGE_FAILED:
            why = CHANGED_AFTER_DONE  # its change, planned again against the request applied
        if why == CONVERGED or (why == CHANGED_AFTER_DONE and not self.run.updates):
            self._count_done(key, why)
            return None
        if why == CHANGED_AFTER_DONE:
            self.changed_after_done.append(key)
        if why in (IN_FLIGHT, SETTLED):
            self.counts[why] += 1
            return None
        if copies:
            if key in self.type_problems:
                return None  # a further copy
            problems = [f"{cand.DUPLICATE_ID_RULE} (appears {copies} times)"]
        row["updated_at"], problem = cand.parse_timestamp(raw["updated_at"])
        row["client_token"] = cand.identity_token(row)  # once per row: the linked rule and the request use it
        if problem and not copies:
            problems.append(problem)
        if problems:
            self.type_problems[key] = problems
        row.update(
            why=why,
            fingerprint=fingerprint,
            prior_failed_runs=0 if why in (CHANGED, RETURNED) or changed_since_failure else (prior["failed_runs"] or 0),
            first_check=why in FIRST_CHECK,
        )
        return row

    def _done_and_left(self, key: str, raw: dict[str, Any]) -> bool:
        """The short path of a created candidate whose values are plain text (most of a converged feed): judged by
        its quick fingerprint, with no cleaned row built. False when the full path must judge it."""
        quick = cand.quick_fingerprint(raw)
        if quick is None:
            return False
        prior = {"status": raw["prior_status"], "fingerprint": raw["prior_fingerprint"]}
        why = why_taken(prior, quick, stale_before=self.stale_before)
        if (why == CHANGED_AFTER_DONE and self.run.updates) or why == SETTLED:
            return False  # taken, or a failed change the run may re-evaluate: the full path judges it
        self._count_done(key, why)
        return True

    def _count_done(self, key: str, why: str) -> None:
        self.counts["skipped_done"] += 1
        if why == CHANGED_AFTER_DONE:
            self.changed_after_done.append(key)


def prepare(warehouse: Warehouse, settings: SyncSettings, run: RunRequest) -> list[Batch]:
    from include.sync.quality import CandidateChecks, summary  # Great Expectations: seconds to import

    timer = PhaseTimer()
    warehouse.create_tables()
    rerun = warehouse.start_run(run.dag_run_id, run.interval, run.dry_run)
    present = warehouse.check_candidates_table()
    columns = (*CANDIDATE_COLUMNS, *((DESIRED_STATE_COLUMN,) if DESIRED_STATE_COLUMN in present else ()))
    warehouse.clear_staging(run.dag_run_id)
    warehouse.forget_unfinished(run.dag_run_id)
    with timer.phase("select"):
        triage = Triage(warehouse, settings, run, reevaluate_interval=run.backfill or rerun, columns=columns)
    checks = CandidateChecks()
    counts = triage.counts
    staged = 0
    plan: Counter = Counter()  # the plan's actions
    without_call: list[Outcome] = []  # recreates to report, rows that already match, creates a PMA refuses
    accounts = _program_management_accounts(warehouse, settings)
    # Checked in batches of chunk_rows taken rows, not per chunk read: on a converged feed a chunk takes a handful.
    for taken in _batched(triage.taken(timer), settings.chunk_rows):
        with timer.phase("quality"):
            duplicated = [row for row in taken if row["candidate_id"] in triage.duplicate_ids]
            taken = [row for row in taken if row["candidate_id"] not in triage.duplicate_ids]
            linked = warehouse.linked_identities([token for row in taken if (token := row["client_token"])])
            result = checks.check(taken, linked, triage.type_problems)
            for row in duplicated:
                result.reasons[row["candidate_id"]] = triage.type_problems[row["candidate_id"]]
                result.rule_failures[cand.DUPLICATE_ID_RULE] += 1
            counts["rejected"] += len(result.reasons)
            plan[REJECTED] += len(result.reasons)
            counts["first_check"] += sum(row["first_check"] for row in (*taken, *duplicated))
            counts["first_check_rejected"] += sum(
                row["first_check"] for row in (*taken, *duplicated) if row["candidate_id"] in result.reasons
            )
            counts.update({f"rule:{rule}": n for rule, n in result.rule_failures.items()})
        with timer.phase("record_rejections"):
            # History only, until the gate has passed: a run the gate stops changes no current state, so the next
            # run judges the same rows again.
            rejected = [
                _rejection(row, result.reasons[row["candidate_id"]])
                for row in (*duplicated, *taken)
                if row["candidate_id"] in result.reasons
            ]
            warehouse.record_many(run.dag_run_id, rejected, current_state=False)
        with timer.phase("stage"):
            rows = []
            valid = [row for row in taken if row["candidate_id"] not in result.reasons]
            applied = warehouse.applied([row["candidate_id"] for row in valid if row["why"] == CHANGED_AFTER_DONE])
            for row in valid:
                request = cand.request_for(row)
                change = applied.get(row["candidate_id"]) if row["why"] == CHANGED_AFTER_DONE else None
                if change is None:
                    refusal = accounts.refusal(pma_id(request["programManagementAccountIdentifier"]))
                    if refusal is not None:
                        plan[PENDING] += 1
                        without_call.append(_refused(row, request, *refusal))
                        continue
                    action, differences, relationship = ACTION_CREATE, None, (None, None)
                    plan[ACTION_CREATE] += 1
                else:
                    before = json.loads(change["request_json"]) if change["request_json"] else None
                    action, differences = planning.plan_change(before, request)
                    plan[action] += 1
                    if action in (NEEDS_RECREATE, ACTION_NO_CHANGE):
                        without_call.append(_settled_change(row, change, action, differences, request))
                        continue
                    relationship = (change["relationship_id"], change["relationship_arn"])
                    request["clientToken"] = change["client_token"]  # the relationship's own identity
                rows.append(
                    (
                        row["candidate_id"],
                        staged,
                        json.dumps(request),
                        request["clientToken"],
                        _text_time(row["updated_at"]),
                        row["fingerprint"],
                        row["prior_failed_runs"],
                        action,
                        *relationship,
                        None if differences is None else json.dumps(differences, sort_keys=True),
                    )
                )
                staged += 1
            warehouse.stage(run.dag_run_id, rows)

    without_id, duplicate_ids, changed_after_done = (
        counts["without_id"],
        triage.duplicate_ids,
        triage.changed_after_done,
    )
    failures = Counter({key[5:]: n for key, n in counts.items() if key.startswith("rule:")})
    first_checked = counts["first_check"]
    quality = {
        "checked": counts["selected"],
        "rejected": counts["rejected"],
        "first_checked": first_checked,
        "first_check_rejected": counts["first_check_rejected"],
        # Over the rows whose content this run checks for the first time: old rejects never trip the gate.
        "reject_ratio": round(counts["first_check_rejected"] / first_checked, 4) if first_checked else 0.0,
        "max_reject_ratio": run.max_reject_ratio,
        "rule_failures": dict(failures.most_common()),
        "why_taken": {key[4:]: n for key, n in sorted(counts.items()) if key.startswith("why:")},
        "rows_without_candidate_id": without_id,
        "duplicated_candidate_ids": len(duplicate_ids),
        "in_flight_elsewhere": counts[IN_FLIGHT],
        # Marked absent (desired_state): without a relationship (nothing to do), and with one (deleted in mode mirror).
        "absent": counts["absent"],
        "absent_with_relationship": len(triage.absent_with_relationship),
        "mode": run.mode,
        "plan": {action: plan[action] for action in PLAN_ACTIONS if plan[action]},
    }
    run_values: dict[str, Any] = {
        "selected": counts["selected"],
        "in_interval": counts["in_interval"],
        "rejected": counts["rejected"],
        "staged": staged,
        "skipped_done": counts["skipped_done"],
        "changed_after_done": len(changed_after_done),
        "quality_summary": quality,
        "phase_seconds": timer.rounded(),
    }
    if without_id:
        log.warning(
            "%d candidate row(s) have no candidate_id (NULL or blank) and cannot be synced or recorded; give every "
            "row an id in %s",
            without_id,
            warehouse.tables.candidates,
        )
    if duplicate_ids:
        log.warning(
            "%d candidate_id(s) appear more than once in %s (every copy is rejected): %s",
            len(duplicate_ids),
            warehouse.tables.candidates,
            _some(sorted(duplicate_ids)),
        )
    if changed_after_done and not run.updates:
        log.warning(
            "%d candidate(s) changed after their relationship was created; in mode create they are not sent again "
            "(partner_sync_mode upsert updates them): %s",
            len(changed_after_done),
            _some(changed_after_done),
        )
    if triage.absent_with_relationship and not run.deletes:
        log.warning(
            "%d candidate(s) are marked absent but keep their relationship; in mode %s it is not deleted "
            "(partner_sync_mode mirror deletes it): %s",
            len(triage.absent_with_relationship),
            run.mode,
            _some(triage.absent_with_relationship),
        )
    if quality["reject_ratio"] > run.max_reject_ratio:
        warehouse.update_run(run.dag_run_id, **{**run_values, "staged": 0})
        warehouse.clear_staging(run.dag_run_id)
        raise QualityGateError(
            f"{quality['reject_ratio']:.1%} of the candidates checked for the first time were rejected, more than "
            f"max_reject_ratio={run.max_reject_ratio:g}; nothing was sent and no current state changed.\n"
            + summary(failures, counts["rejected"], counts["selected"])
        )
    try:
        with timer.phase("plan_deletes"):
            deletes = _planned_deletes(warehouse, settings, run, triage, staged) if run.deletes else []
    except DeleteGuardError as guard:
        if not run.dry_run:
            warehouse.update_run(run.dag_run_id, **{**run_values, "staged": 0})
            warehouse.clear_staging(run.dag_run_id)
            raise
        # A dry run shows the plan the guard would stop, and says so.
        log.warning("A real run would stop here: %s", guard)
        quality["delete_guard"] = str(guard)
        deletes = _planned_deletes(warehouse, settings, run, triage, staged, guarded=False)
    plan[ACTION_DELETE] = len(deletes)
    quality["plan"] = {action: plan[action] for action in PLAN_ACTIONS if plan[action]}
    if deletes:
        warehouse.stage(run.dag_run_id, deletes)
        staged += len(deletes)
        run_values["staged"] = staged
    if not run.dry_run:
        warehouse.promote_rejections(run.dag_run_id)
    # What the plan settles with no call: recorded.
    warehouse.record_many(run.dag_run_id, without_call, current_state=not run.dry_run)
    recreate = [outcome.candidate_id for outcome in without_call if outcome.status == NEEDS_RECREATE]
    if recreate:
        log.warning(
            "%d candidate(s) now name another relationship than the one they have (a field the API cannot update "
            "changed; see error_message in %s): nothing is done to them: %s",
            len(recreate),
            warehouse.tables.outcomes,
            _some(recreate),
        )
    if counts["rejected"]:
        log.info(summary(failures, counts["rejected"], counts["selected"]))
    batches = plan_batches(staged, settings.batch_size, settings.max_batches)
    warehouse.update_run(run.dag_run_id, **run_values, staged_at=warehouse.db_now())
    log.info(
        "Took %d candidate(s) (%s; %d updated in the interval %s), rejected %d, staged %d in %d batch(es); "
        "%d already done. Mode %s, plan: %s. Phases (s): %s",
        counts["selected"],
        ", ".join(f"{n} {why}" for why, n in quality["why_taken"].items()) or "none",
        counts["in_interval"],
        "none" if run.interval is None else " .. ".join(t.isoformat() for t in run.interval),
        counts["rejected"],
        staged,
        len(batches),
        counts["skipped_done"],
        run.mode,
        quality["plan"] or "nothing to do",
        timer.rounded(),
    )
    write_back(warehouse)
    return batches


def write_back(warehouse: Warehouse, *, strict: bool = False) -> None:
    """Copy what changed into an analytical warehouse (nothing to do when it is the state store). A failed copy is
    made by the next task or run, since the state store keeps everything: only the run's last one (strict) fails."""
    try:
        copied = warehouse.write_back()
    except Exception as exc:
        if strict:
            raise SyncRunFailed(
                f"the outcomes could not be written back to the warehouse ({type(exc).__name__}: {exc}); they are "
                "kept in the state store and the next task or run writes them back (or clear this task)"
            ) from exc
        log.warning(
            "Writing back to the warehouse failed; the next task writes it back: %s: %s", type(exc).__name__, exc
        )
        return
    if copied:
        log.info("Wrote %d row(s) back to the warehouse", copied)


def _batched(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _rejection(row: dict[str, Any], reasons: list[str]) -> Outcome:
    return Outcome(
        candidate_id=row["candidate_id"],
        status=REJECTED,
        error_code="DataQuality",
        error_message="; ".join(reasons),
        retryable=False,
        candidate_updated_at=_text_time(row["updated_at"]),
        fingerprint=row["fingerprint"],
    )


def _program_management_accounts(warehouse: Warehouse, settings: SyncSettings) -> planning.ProgramManagementAccounts:
    """The PMAs as the last reconcile saw them, with the relationships the sync created since."""
    listed = warehouse.listed_program_management_accounts()
    since = min((account["listed_at"] for account in listed.values()), default=None)
    created = warehouse.created_per_pma(since) if since is not None else {}
    return planning.ProgramManagementAccounts(listed, created, settings.relationships_per_pma)


def _planned_deletes(
    warehouse: Warehouse, settings: SyncSettings, run: RunRequest, triage: Triage, first_seq: int, guarded: bool = True
) -> list[tuple]:
    """Mode mirror's deletes, as staging rows numbered from first_seq: the relationships the package created whose
    candidate left the feed or is marked absent (only those: a relationship it did not create has no outcome).
    Past max_deletes or max_delete_ratio, DeleteGuardError: nothing is staged, and the run sends nothing."""
    left = warehouse.left_the_feed(sorted(triage.named))
    applied = {
        candidate_id: relationship
        for candidate_id, relationship in warehouse.applied(sorted({*left, *triage.absent_with_relationship})).items()
        # A delete that failed for good is sent again only when the run asks for it.
        if relationship["status"] != CHANGE_FAILED or candidate_id in triage.named or run.include_all_pending
    }
    held = warehouse.held_relationships()
    ratio = len(applied) / held if held else 0.0
    if guarded and (len(applied) > settings.max_deletes or ratio > settings.max_delete_ratio):
        raise DeleteGuardError(
            f"mode mirror would delete {len(applied)} of the {held} relationship(s) the package holds ({ratio:.1%}: "
            f"{len(set(left) & set(applied))} candidate(s) left the feed, "
            f"{len(set(triage.absent_with_relationship) & set(applied))} are marked absent), past "
            f"max_deletes={settings.max_deletes} or max_delete_ratio={settings.max_delete_ratio:g}; nothing was "
            "sent and nothing deleted. If the feed is complete, raise partner_sync_max_deletes / "
            "partner_sync_max_delete_ratio; to apply the rest without deletes, trigger the run with mode upsert. "
            f"Some of them: {_some(sorted(applied))}"
        )
    rows = []
    for candidate_id, relationship in sorted(applied.items()):
        rid = relationship["relationship_id"]
        created_with = json.loads(relationship["request_json"]) if relationship["request_json"] else None
        if created_with is None:
            log.warning(
                "Candidate %s's relationship %s was created by an earlier version of the package (no request "
                "recorded): its catalog and PMA are unknown, so mode mirror cannot delete it; delete it with "
                "DeleteRelationshipOperator or the console",
                candidate_id,
                rid,
            )
            continue
        request = {
            "catalog": created_with["catalog"],
            "programManagementAccountIdentifier": created_with["programManagementAccountIdentifier"],
            "identifier": rid,
            "clientToken": delete_token_for(rid),
        }
        # Why, in the shape of a change's differences: the row was marked absent, or it is gone.
        why = (
            {DESIRED_STATE_COLUMN: {"from": PRESENT, "to": ABSENT}}
            if candidate_id in triage.absent_with_relationship
            else {"candidate_id": {"from": candidate_id, "to": None}}
        )
        rows.append(
            (
                candidate_id,
                first_seq + len(rows),
                json.dumps(request),
                relationship["client_token"],
                None,
                None,
                relationship["failed_runs"],
                ACTION_DELETE,
                rid,
                relationship["relationship_arn"],
                json.dumps(why),
            )
        )
    return rows


def _refused(row: dict[str, Any], request: dict[str, Any], code: str, message: str) -> Outcome:
    """A create its PMA cannot take now (not ACTIVE, or at its quota): nobody's data error, so pending, not
    rejected; the next run plans it again."""
    return Outcome(
        candidate_id=row["candidate_id"],
        status=PENDING,
        client_token=request["clientToken"],
        error_code=code,
        error_message=message,
        retryable=True,
        candidate_updated_at=_text_time(row["updated_at"]),
        fingerprint=row["fingerprint"],
    )


def _settled_change(
    row: dict[str, Any], change: dict[str, Any], action: str, differences: dict[str, Any], request: dict[str, Any]
) -> Outcome:
    """The outcome of a changed row whose plan needs no call: a recreate (reported; the relationship and the request
    applied to it are kept), or a row that already matches its relationship."""
    recreate = action == NEEDS_RECREATE
    return Outcome(
        candidate_id=row["candidate_id"],
        status=NEEDS_RECREATE if recreate else ALREADY_UPDATED,
        client_token=change["client_token"],
        relationship_id=change["relationship_id"],
        relationship_arn=change["relationship_arn"],
        error_code="NeedsRecreate" if recreate else None,
        error_message=(
            "the row names another relationship than "
            f"{change['relationship_id']}: {planning.describe(differences)} cannot be changed in place; delete the "
            "relationship (DeleteRelationshipOperator or the console; the reconcile DAG then reopens the candidate and "
            "the next run creates the new one), or restore the row"
            if recreate
            else None
        ),
        request_json=change["request_json"] if recreate else json.dumps(request),
        candidate_updated_at=_text_time(row["updated_at"]),
        fingerprint=row["fingerprint"],
    )


def _text_time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _some(ids: list[str], shown: int = 20) -> str:
    return ", ".join(ids[:shown]) + (f" ... ({len(ids) - shown} more)" if len(ids) > shown else "")


@dataclass(frozen=True)
class ChangeLimiters:
    """The account's quotas a change of an existing relationship goes through: its writes (UpdateRelationship,
    TagResource, UntagResource) and its reads (GetRelationship, ListTagsForResource)."""

    write: RateLimiter
    read: RateLimiter
    delete: RateLimiter | None = None  # DeleteRelationship's own quota; None: the write schedule


def create_batch(
    warehouse: Warehouse,
    settings: SyncSettings,
    run: RunRequest,
    batch: Batch,
    hook: PartnerCentralChannelHook,
    limiter: RateLimiter,
    logger: logging.Logger | logging.LoggerAdapter = log,
    changes: ChangeLimiters | None = None,
) -> Counter:
    """Send one batch. Each outcome is written when its call returns; rows this run already recorded are skipped,
    so a retried batch picks up where a killed one stopped. An account-level error stops the batch at once: the
    candidate in hand and the rest of the batch are left pending, saying why, and AccountLevelError propagates with
    the cause and the fix. What the batch recorded is written back to an analytical warehouse when it ends, however
    it ends."""
    try:
        policy = settings.retry_policy
        counts: Counter = Counter()
        rows = warehouse.batch(run.dag_run_id, batch.first, batch.end)
        for index, row in enumerate(rows):
            try:
                if run.dry_run:
                    outcome = Outcome(status=DRY_RUN, request_json=row["request_json"], **_staged(row))
                elif row["action"] == ACTION_CREATE:
                    outcome = _send(warehouse, settings, run, row, hook, limiter, policy, logger)
                elif row["action"] == ACTION_DELETE:
                    outcome = _delete(row, hook, changes or ChangeLimiters(limiter, limiter), settings, logger)
                else:
                    outcome = _change(row, hook, changes or ChangeLimiters(limiter, limiter), settings, logger)
            except AccountLevelError as stop:
                if not run.dry_run:
                    warehouse.leave_pending(run.dag_run_id, rows[index:], stop.error.code, str(stop))
                logger.error(
                    "%s stopped after %s; the rest of the batch stays pending: %s", batch.label, dict(counts), stop
                )
                raise
            except Exception as exc:
                # Not the API's answer (the warehouse, this process): nobody's outcome. Give the claim back if the
                # warehouse still answers, and fail the task with the error as it was raised.
                with contextlib.suppress(Exception):
                    warehouse.leave_pending(run.dag_run_id, [row], type(exc).__name__, str(exc))
                logger.error("%s stopped after %s: %s: %s", batch.label, dict(counts), type(exc).__name__, exc)
                raise
            warehouse.record(run.dag_run_id, outcome, current_state=outcome.status not in (DRY_RUN, SKIPPED))
            counts[
                outcome.status
                if outcome.status != FAILED
                else f"failed_{'retryable' if outcome.retryable else 'permanent'}"
            ] += 1
        logger.info("%s: %s", batch.label, dict(counts) or "nothing left to send")
        return counts
    finally:
        write_back(warehouse)


def _staged(row: dict[str, Any]) -> dict[str, Any]:
    """What every outcome of a staged candidate carries."""
    return {name: row[name] for name in ("candidate_id", "client_token", "candidate_updated_at", "fingerprint")}


def _send(
    warehouse: Warehouse,
    settings: SyncSettings,
    run: RunRequest,
    row: dict[str, Any],
    hook: PartnerCentralChannelHook,
    limiter: RateLimiter,
    policy: RetryPolicy,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Outcome:
    base = _staged(row)
    if not warehouse.claim(run.dag_run_id, row["candidate_id"], row["client_token"], settings.claim_timeout_seconds):
        return Outcome(status=SKIPPED, error_message="done or claimed by another run", **base)
    try:
        result = hook.create_relationship(
            json.loads(row["request_json"]), limiter=limiter, policy=policy, logger=logger
        )
    except ApiError as error:
        stop_if_account_level(error)
        return _failed(error, error.attempts, row["prior_failed_runs"], settings.retry_budget, base)
    holder = warehouse.relationship_holder(result.relationship_id, row["candidate_id"])
    if holder is not None:
        # The API answered with a relationship that another candidate already holds (the same identity, so the same
        # token): this candidate is a second row for it, not a second owner.
        return Outcome(
            status=REJECTED,
            error_code="AlreadyLinked",
            error_message=f"relationship not already linked by another candidate (already created for candidate "
            f"{holder} as {result.relationship_id})",
            retryable=False,
            attempts=result.attempts,
            **base,
        )
    return Outcome(
        status=result.status,
        relationship_id=result.relationship_id,
        relationship_arn=result.relationship_arn,
        attempts=result.attempts,
        request_json=row["request_json"],
        **base,
    )


def _change(
    row: dict[str, Any],
    hook: PartnerCentralChannelHook,
    limiters: ChangeLimiters,
    settings: SyncSettings,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Outcome:
    """Bring an existing relationship to the row: UpdateRelationship at its current revision (a conflict re-reads
    and sends once more), then its tags. No claim: an update carries the revision it read, so a second sender of the
    same change meets a conflict and finds it made. A candidate's own error is its outcome (history only: the
    relationship and its recorded state stay as they were, and the next run tries again)."""
    policy = settings.retry_policy
    desired, differences = json.loads(row["request_json"]), json.loads(row["differences"] or "{}")
    rid, arn = row["relationship_id"], row["relationship_arn"]
    base = {**_staged(row), "relationship_id": rid, "relationship_arn": arn}
    names = {
        "catalog": desired["catalog"],
        "programManagementAccountIdentifier": desired["programManagementAccountIdentifier"],
        "identifier": rid,
    }
    status, attempts = ALREADY_UPDATED, 0
    try:
        update = {f: desired[f] for f in UPDATABLE_FIELDS if f in differences and desired.get(f) is not None}
        if update:
            limiters.read.acquire()
            current = policy.call(
                lambda: hook.get_relationship(
                    catalog=names["catalog"],
                    program_management_account_identifier=names["programManagementAccountIdentifier"],
                    identifier=rid,
                )
            )
            request = {**names, "revision": current["revision"], **update}
            result = hook.update_relationship(request, limiter=limiters.write, policy=policy, logger=logger)
            status, attempts = result.status, result.attempts
        if "tags" in differences:
            before = differences["tags"]["from"]
            if before is None:  # the tags last applied are not known: what the relationship shows
                limiters.read.acquire()
                before = hook.list_tags_for_resource(arn, policy=policy)
            to_set, to_remove = planning.tag_changes(before, planning.tags_of(desired))
            if to_set:
                limiters.write.acquire()
                hook.tag_resource(arn, to_set, policy=policy)
            if to_remove:
                limiters.write.acquire()
                hook.untag_resource(arn, to_remove, policy=policy)
            if to_set or to_remove:
                status, attempts = UPDATED, attempts + bool(to_set) + bool(to_remove)
    except ApiError as error:
        return _change_failed(error, attempts, row, base, settings.retry_budget, logger)
    return Outcome(status=status, attempts=attempts, request_json=row["request_json"], **base)


def _delete(
    row: dict[str, Any],
    hook: PartnerCentralChannelHook,
    limiters: ChangeLimiters,
    settings: SyncSettings,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Outcome:
    """Delete a relationship of a candidate that left the feed or is marked absent, with the relationship's own
    delete token: a retry, a re-run or a second run deleting it too is the same delete, and a relationship already
    gone is already_deleted. No claim, for that reason. A candidate's own error is its outcome in the history only:
    the relationship stays recorded, and the next run tries again."""
    base = {**_staged(row), "relationship_id": row["relationship_id"], "relationship_arn": row["relationship_arn"]}
    try:
        result = hook.delete_relationship(
            json.loads(row["request_json"]),
            limiter=limiters.delete or limiters.write,
            policy=settings.retry_policy,
            logger=logger,
        )
    except ApiError as error:
        return _change_failed(error, 0, row, base, settings.retry_budget, logger)
    return Outcome(status=result.status, attempts=result.attempts, request_json=row["request_json"], **base)


def _failed(
    error: ApiError, attempts: int, prior_failed_runs: int | None, budget: int, base: dict[str, Any]
) -> Outcome:
    """A candidate's own error, as its outcome: failed (retryable or not), or dead-lettered when a retryable error
    has now failed it in `budget` runs."""
    failed_runs = (prior_failed_runs or 0) + error.retryable
    dead = error.retryable and failed_runs >= budget
    message = error.message
    if dead:
        message += (
            f" [dead-lettered: failed in {failed_runs} runs (retry_budget {budget}); sent again when its row changes,"
            " when named in candidate_ids, when a run retries rejected and failed candidates, or by a backfill over"
            " its interval]"
        )
    return Outcome(
        status=DEAD_LETTER if dead else FAILED,
        error_code=error.code,
        error_message=message,
        retryable=error.retryable and not dead,
        attempts=attempts,
        failed_runs=failed_runs,
        **base,
    )


def _change_failed(
    error: ApiError,
    attempts: int,
    row: dict[str, Any],
    base: dict[str, Any],
    budget: int,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Outcome:
    """A change of an existing relationship (update, tags, delete) the API refused: an account-level error stops the
    batch; a candidate's own is its outcome. The relationship stays recorded as it was; a failure for good (a
    permanent error, or a retryable one in `budget` runs) makes its state change_failed, sent again only when asked."""
    stop_if_account_level(error)
    logger.error(
        "Changing relationship %s of candidate %s failed: %s", base["relationship_id"], base["candidate_id"], error
    )
    return _failed(error, attempts + error.attempts, row["prior_failed_runs"], budget, base)


def finish(
    warehouse: Warehouse,
    run: RunRequest,
    logger: logging.Logger | logging.LoggerAdapter = log,
    retention_days: float = 0.0,
) -> dict:
    """Write the run row, log its counts, delete its staging and old history; raise SyncRunFailed when a later run
    has work to retry or candidates were dead-lettered."""
    counts = warehouse.run_counts(run.dag_run_id)
    warehouse.update_run(run.dag_run_id, **counts, ended_at=warehouse.db_now())
    write_back(warehouse, strict=True)
    row = warehouse.run(run.dag_run_id) or {}
    warehouse.prune(retention_days)
    logger.info("Sync run %s%s:\n%s", run.dag_run_id, " (dry run)" if run.dry_run else "", counts_table(row))
    approval = json.loads(row.get("approval") or "null")
    if approval and approval["decision"] == APPROVAL_REJECTED:
        # A person's decision, not a fault: the run ends, and the next one plans again (and waits again).
        logger.warning(
            "The plan was rejected by %s at %s: nothing was applied (%d staged candidate(s) left as they were)",
            approval["by"],
            approval["at"],
            counts["unfinished"],
        )
        return {key: row.get(key) for key in RUN_COUNT_COLUMNS}
    problems = []
    if not row.get("staged_at"):
        # Why check_and_stage stopped, when it said so.
        problems += json.loads(row.get("problems") or "null") or [
            "candidates were not checked and staged (see the check_and_stage task)"
        ]
    if counts["failed_retryable"]:
        problems.append(f"{counts['failed_retryable']} candidate(s) failed with a retryable error")
    if counts["unfinished"]:
        stopped = warehouse.pending_reason(run.dag_run_id)
        cause = f": {stopped}" if stopped else " (see the create_relationships tasks' logs)"
        problems.append(f"{counts['unfinished']} staged candidate(s) were not sent; a batch stopped{cause}")
    if counts[PENDING] and not run.dry_run:
        problems.append(
            f"{counts[PENDING]} candidate(s) were not sent and are pending: {warehouse.pending_reason(run.dag_run_id)}"
        )
    if counts[DEAD_LETTER]:
        problems.append(
            f"{counts[DEAD_LETTER]} candidate(s) were dead-lettered after failing in too many runs: "
            f"{_some(warehouse.run_candidates(run.dag_run_id, DEAD_LETTER))}; fix the cause, then trigger a run with "
            "their candidate ids"
        )
    warehouse.update_run(run.dag_run_id, problems=problems or None)
    if problems:
        raise SyncRunFailed("; ".join(problems) + ". " + RECOVERY)
    return {key: row.get(key) for key in RUN_COUNT_COLUMNS}


def counts_table(row: dict[str, Any]) -> str:
    return "\n".join(f"  {key:<20} {row.get(key) or 0:>9}" for key in RUN_COUNT_COLUMNS)
