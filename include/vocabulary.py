"""The package's words, each defined once: the statuses of a candidate's outcome, the API fields and the candidates
table's columns (from the installed botocore model, where the API defines them), and a run's counts."""

from __future__ import annotations

from include.partner_central.service_model import create_request_fields, snake_case, update_request_fields

# -- statuses --------------------------------------------------------------------------------------------------------
# What a create call ends in: a new relationship, or the one an earlier call (same client token) already made.
CREATED = "created"
ALREADY_EXISTS = "already_exists"
# A candidate's outcome besides those. `claimed` (current state only): its call is under way in the named DAG run;
# `pending`: its call was stopped by an account-level error (credentials, access, clock, endpoint, throttling), or
# its PMA cannot take a create now (not ACTIVE, at its quota), and the next run sends it; `dead_letter`: it failed
# in `retry_budget` runs; `skipped` (history only): another run had claimed or finished it first.
REJECTED = "rejected"
FAILED = "failed"
DEAD_LETTER = "dead_letter"
DRY_RUN = "dry_run"
CLAIMED = "claimed"
PENDING = "pending"
SKIPPED = "skipped"
# What an update or a delete ends in: the change made by this call, or found already made (a lost response's retry,
# another caller's change with the same result, a relationship already gone).
UPDATED = "updated"
ALREADY_UPDATED = "already_updated"
DELETED = "deleted"
ALREADY_DELETED = "already_deleted"
# A candidate whose relationship exists but whose row now names another relationship (a field the API cannot update
# in place changed): reported with the fields that differ, never re-created silently.
NEEDS_RECREATE = "needs_recreate"
# A candidate whose relationship exists but whose change (an update, its tags, a delete) failed for good: with a
# permanent error, or with a retryable one in `retry_budget` runs. The relationship stays as it was; the change is
# sent again when the row changes, when the candidate is named in candidate_ids, or when a run retries rejected and
# failed candidates (error_message says why it failed).
CHANGE_FAILED = "change_failed"
# The candidate has its relationship: a done state is never overwritten by a failure, a rejection or a stale run,
# and never created again. Only an upsert (a later change of the row) moves it from one done state to another.
DONE = (CREATED, ALREADY_EXISTS, UPDATED, ALREADY_UPDATED, NEEDS_RECREATE, CHANGE_FAILED)
# The candidate's relationship was deleted by the sync (mode mirror): the candidate left the feed or is marked absent.
# Its row, if it comes back present, is created anew.
GONE = (DELETED, ALREADY_DELETED)

# -- sync modes and plan actions --------------------------------------------------------------------------------------
# create: relationships are only created (a row changed after its creation is reported); upsert: also updated to the
# row's display name, support plan and tags; mirror: also deleted, when the package created them and their candidate
# left the feed or is marked absent. Each mode does everything the ones before it do: a run may narrow the
# configured mode, never widen it.
MODE_CREATE, MODE_UPSERT, MODE_MIRROR = "create", "upsert", "mirror"
SYNC_MODES = (MODE_CREATE, MODE_UPSERT, MODE_MIRROR)
# What a run's plan does with each candidate it takes.
ACTION_CREATE, ACTION_UPDATE, ACTION_TAG, ACTION_DELETE = "create", "update", "tag", "delete"
ACTION_NO_CHANGE = "no_change"
# `pending`: a create its PMA cannot take now (not ACTIVE, or at its quota of relationships), planned again next run.
PLAN_ACTIONS = (
    ACTION_CREATE,
    ACTION_UPDATE,
    ACTION_TAG,
    ACTION_DELETE,
    ACTION_NO_CHANGE,
    NEEDS_RECREATE,
    PENDING,
    REJECTED,
)
# A person's answer to a plan that waited for approval (the run row's `approval`).
APPROVAL_APPROVED, APPROVAL_REJECTED = "approved", "rejected"
# The candidates table's optional column saying whether a candidate's relationship should exist. NULL or empty:
# present. An absent candidate is never created; in mode mirror its relationship is deleted.
DESIRED_STATE_COLUMN = "desired_state"
PRESENT, ABSENT = "present", "absent"
DESIRED_STATES = (PRESENT, ABSENT)

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
# What UpdateRelationship changes in place (its model's members besides those that name the relationship).
UPDATABLE_FIELDS = tuple(
    name
    for name in update_request_fields()
    if name not in ("catalog", "identifier", "programManagementAccountIdentifier", "revision")
)
# A change of any other field a candidate sends names another relationship: it needs a new one.
RECREATE_FIELDS = tuple(
    field for field in REQUEST_FIELDS if field not in (*NOT_FROM_A_COLUMN, *UPDATABLE_FIELDS, "tags")
)

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
    UPDATED,
    ALREADY_UPDATED,
    NEEDS_RECREATE,
    DELETED,
    ALREADY_DELETED,
    PENDING,
    "failed_retryable",
    "failed_permanent",
    DEAD_LETTER,
    DRY_RUN,
    SKIPPED,
    "unfinished",
)
