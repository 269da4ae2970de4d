"""What a run plans: for a candidate whose relationship exists and whose row changed, compare the request last applied
with the one the row sends now, field by field, and name the action (update, tag, no change, or a recreate that is
reported and never done silently); what a PMA can take; and whether the plan waits for a person's approval, with
what the approver reads. Plain functions, tested without Airflow or a database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from include.vocabulary import (
    ACTION_CREATE,
    ACTION_DELETE,
    ACTION_NO_CHANGE,
    ACTION_TAG,
    ACTION_UPDATE,
    DESIRED_STATE_COLUMN,
    NEEDS_RECREATE,
    RECREATE_FIELDS,
    SYNC_MODES,
    UPDATABLE_FIELDS,
)

# The fields a change compares: the ones that name a relationship, the ones updated in place, and its tags.
COMPARED = (*RECREATE_FIELDS, *UPDATABLE_FIELDS, "tags")


def effective_mode(configured: str, requested: str | None) -> str:
    """The mode of one run: the configured one, or a narrower one the trigger asked for (never a wider one: a run
    cannot delete what the setting says must not be deleted)."""
    requested = requested or None  # the trigger form's empty field
    for name, value in (("partner_sync_mode", configured), ("the run's mode", requested)):
        if value is not None and value not in SYNC_MODES:
            raise ValueError(f"{name} must be one of {', '.join(SYNC_MODES)}, got {value!r}")
    if requested is None:
        return configured
    if SYNC_MODES.index(requested) > SYNC_MODES.index(configured):
        raise ValueError(
            f"the run asks for mode {requested!r}, wider than partner_sync_mode={configured!r}; a run may only "
            f"narrow the mode ({', '.join(SYNC_MODES[: SYNC_MODES.index(configured) + 1])}). Change the setting to "
            "allow it."
        )
    return requested


def tags_of(request: Mapping[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in request.get("tags") or ()}


def differences(applied: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The compared fields whose applied value differs from the desired one: {field: {"from": ..., "to": ...}}
    (tags as key → value)."""
    found: dict[str, dict[str, Any]] = {}
    for field in COMPARED:
        before, after = (
            (tags_of(applied), tags_of(desired)) if field == "tags" else (applied.get(field), desired.get(field))
        )
        # An updatable field the row leaves empty keeps its value: UpdateRelationship cannot clear it.
        if before != after and not (field in UPDATABLE_FIELDS and after is None):
            found[field] = {"from": before, "to": after}
    return found


def plan_change(applied: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The action for a candidate whose relationship exists, and the fields that differ. Without the request last
    applied (a relationship created by an earlier version of the package), an update of every updatable field and
    of the tags, which the apply step makes against what the relationship shows."""
    if applied is None:
        unknown = {field: {"from": None, "to": desired.get(field)} for field in (*UPDATABLE_FIELDS, "tags")}
        return ACTION_UPDATE, unknown
    found = differences(applied, desired)
    if any(field in found for field in RECREATE_FIELDS):
        return NEEDS_RECREATE, found
    if any(field in found for field in UPDATABLE_FIELDS):
        return ACTION_UPDATE, found
    if "tags" in found:
        return ACTION_TAG, found
    return ACTION_NO_CHANGE, found


def tag_changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The tags to set (new or changed values) and the keys to remove, to bring `before` to `after`."""
    to_set = {key: value for key, value in after.items() if before.get(key) != value}
    return to_set, sorted(set(before) - set(after))


def describe(found: Mapping[str, Mapping[str, Any]]) -> str:
    """The differences as a reader wants them in an outcome's message: `sector (Commercial → Government), ...`."""
    return ", ".join(f"{field} ({change['from']!r} → {change['to']!r})" for field, change in found.items())


class ProgramManagementAccounts:
    """Each PMA as the reconcile DAG last listed it, and the creates a run plans against it: a create against a PMA
    that is not ACTIVE, or past its quota of relationships, is refused before any call. A PMA never listed (no
    reconcile yet, or a new one) is left to the API."""

    def __init__(self, listed: Mapping[str, Mapping[str, Any]], created_since_listing: Mapping[str, int], quota: int):
        self.listed = listed
        self.quota = quota
        self.used = {
            pma: account["relationship_count"] + created_since_listing.get(pma, 0) for pma, account in listed.items()
        }

    def refusal(self, pma: str) -> tuple[str, str] | None:
        """(error code, message) when a create against this PMA must not be sent; else None, and the create counts
        against its quota."""
        account = self.listed.get(pma)
        if account is None:
            return None
        seen = f"as listed by run {account['reconcile_run_id']} at {account['listed_at']:%Y-%m-%d %H:%M} UTC"
        if account["status"] != "ACTIVE":
            return (
                "ProgramManagementAccountNotActive",
                f"program management account {pma} is {account['status']} ({seen}), and refuses creates; left "
                "pending: once it is ACTIVE, run the reconcile DAG and the next sync sends it",
            )
        if self.used[pma] >= self.quota:
            return (
                "ProgramManagementAccountFull",
                f"program management account {pma} holds {self.used[pma]} relationships, its quota of {self.quota} "
                f"({seen}, with the sync's creates since); left pending: raise the quota (partner_sync_"
                "relationships_per_pma once AWS has) or delete relationships, then run the reconcile DAG",
            )
        self.used[pma] += 1
        return None


# -- approval: when a plan waits for a person, and what the approver reads -------------------------------------------
# The actions that change something in Partner Central.
CHANGES = (ACTION_CREATE, ACTION_UPDATE, ACTION_TAG, ACTION_DELETE)


def approval_reason(plan: Mapping[str, int], *, approve_deletes: bool, threshold: int) -> str | None:
    """Why this plan must wait for a person, or None when it may be applied at once."""
    reasons = []
    if approve_deletes and plan.get(ACTION_DELETE):
        reasons.append(f"it deletes {plan[ACTION_DELETE]} relationship(s) (partner_sync_approve_deletes)")
    changes = sum(plan.get(action, 0) for action in CHANGES)
    if threshold and changes > threshold:
        reasons.append(f"it changes {changes} relationship(s), more than partner_sync_approval_threshold={threshold}")
    return "; ".join(reasons) or None


def approval_body(
    run_id: str, mode: str, plan: Mapping[str, int], reason: str, sample: Sequence[Mapping[str, Any]], staging: str
) -> str:
    """What the approver reads (Markdown): the plan's counts, why it waits, a sample, and where the whole plan is."""
    lines = [f"Sync run `{run_id}` in mode **{mode}** plans:", "", "| action | candidates |", "|---|---:|"]
    lines += [f"| {action} | {count} |" for action, count in plan.items()]
    lines += ["", f"It waits for you because {reason}.", "", "A sample:"]
    for row in sample:
        relationship = f" (relationship `{row['relationship_id']}`)" if row.get("relationship_id") else ""
        differences = row.get("differences") or {}
        if row["action"] == ACTION_DELETE:
            why = ": marked absent" if DESIRED_STATE_COLUMN in differences else ": no longer in the candidates table"
        else:
            why = ": " + describe(differences) if differences else ""
        lines.append(f"- {row['action']} `{row['candidate_id']}`{relationship}{why}")
    lines += [
        "",
        "The whole plan, in the warehouse:",
        f"`SELECT candidate_id, action, relationship_id, differences FROM {staging} WHERE dag_run_id = '{run_id}'"
        " ORDER BY seq`",
        "",
        "**Approve** applies it as staged; **Reject**, or no answer in time, ends the run with nothing applied (the "
        "next run plans again).",
    ]
    return "\n".join(lines)
