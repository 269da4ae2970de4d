"""The package's words, each defined once: the statuses of a candidate's outcome, the API fields and the candidates
table's columns (from the installed botocore model, where the API defines them), and a run's counts."""

from __future__ import annotations

from include.partner_central.service_model import create_request_fields, snake_case

# -- statuses --------------------------------------------------------------------------------------------------------
# What a create call ends in: a new relationship, or the one an earlier call (same client token) already made.
CREATED = "created"
ALREADY_EXISTS = "already_exists"
# A candidate's outcome besides those. `claimed` (current state only): its call is under way in the named DAG run;
# `pending` (current state only): its call was stopped by an account-level error (credentials, access, clock,
# endpoint, throttling) and the next run sends it; `dead_letter`: it failed in `retry_budget` runs; `skipped`
# (history only): another run had claimed or finished it first.
REJECTED = "rejected"
FAILED = "failed"
DEAD_LETTER = "dead_letter"
DRY_RUN = "dry_run"
CLAIMED = "claimed"
PENDING = "pending"
SKIPPED = "skipped"
# A done state is never overwritten, and never sent again.
DONE = (CREATED, ALREADY_EXISTS)
# What an update or a delete ends in: the change made by this call, or found already made (a lost response's retry,
# another caller's change with the same result, a relationship already gone).
UPDATED = "updated"
ALREADY_UPDATED = "already_updated"
DELETED = "deleted"
ALREADY_DELETED = "already_deleted"

# -- drift: how what AWS holds differs from the warehouse (the reconcile DAG) ----------------------------------------
# A relationship of the account that no candidate's outcome names (made in the console, or by another tool).
REMOTE_WITHOUT_CANDIDATE = "remote_without_candidate"
# A candidate's created relationship that AWS no longer has (deleted in the console): the candidate is pending again.
MISSING_REMOTE = "missing_remote"
# Both exist, and the candidate's row sends other values than AWS shows.
FIELDS_DIFFER = "fields_differ"
DRIFT_KINDS = (REMOTE_WITHOUT_CANDIDATE, MISSING_REMOTE, FIELDS_DIFFER)

# -- the API's fields and the candidates table's columns -------------------------------------------------------------
# CreateRelationship's request members, in the model's order.
REQUEST_FIELDS = tuple(create_request_fields())
# Fields a candidate row does not give: the token is derived from the relationship's identity; the start date is
# left to the API's default.
NOT_FROM_A_COLUMN = ("clientToken", "startDate")
# Columns holding JSON, and the field each one fills.
JSON_COLUMNS = {"support_plan": "requestedSupportPlan", "tags": "tags"}
# Columns named after the field they fill (snake_case), one to one.
COLUMN_FIELDS = {
    snake_case(field): field
    for field in REQUEST_FIELDS
    if field not in NOT_FROM_A_COLUMN and field not in JSON_COLUMNS.values()
}
# The candidates table, as the sync reads it.
CANDIDATE_COLUMNS = ("candidate_id", *COLUMN_FIELDS, *JSON_COLUMNS, "updated_at")

# -- a run's counts, in the order a reader follows a run -------------------------------------------------------------
RUN_COUNT_COLUMNS = (
    "selected",
    "in_interval",
    "skipped_done",
    "changed_after_done",
    "rejected",
    "staged",
    CREATED,
    ALREADY_EXISTS,
    "failed_retryable",
    "failed_permanent",
    DEAD_LETTER,
    DRY_RUN,
    SKIPPED,
    "unfinished",
)
