"""Reconcile: list what AWS really holds, mirror it into the warehouse, and report how it differs from the candidates
and their outcomes. A relationship deleted outside the sync (in the console) makes its candidate pending again, so
the next sync run creates it again: the sync converges on the feed whatever happened in AWS.

Plain functions on a Warehouse and the hook, tested without Airflow; the reconcile DAG only opens connections.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.relationship_request import pma_id
from include.partner_central.service_model import member_shape
from include.partner_central.validation import validate_value
from include.sync import candidates as cand
from include.sync.settings import SyncSettings
from include.sync.warehouse import Warehouse
from include.vocabulary import CANDIDATE_COLUMNS, FIELDS_DIFFER, MISSING_REMOTE, REMOTE_WITHOUT_CANDIDATE

log = logging.getLogger(__name__)
# The most items a List call returns per page (the model's maxResults maximum for both listings).
PAGE_SIZE = 100
# The request members a listed relationship shows back, compared with what the candidate's row would send.
COMPARED_FIELDS = (
    "catalog",
    "programManagementAccountIdentifier",
    "associatedAccountId",
    "associationType",
    "displayName",
    "sector",
)


def list_remote(
    hook: PartnerCentralChannelHook, catalogs: Sequence[str], limiter: RateLimiter, settings: SyncSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every program management account and every relationship of the account in these catalogs, each page paced
    by the limiter and retried on its own; each PMA with its relationship count (a quota of 1,000 per PMA)."""
    accounts: list[dict[str, Any]] = []
    relationships: list[dict[str, Any]] = []
    for catalog in catalogs:
        listed = hook.list_relationships(
            catalog=catalog, page_size=PAGE_SIZE, limiter=limiter, policy=settings.retry_policy
        )
        per_pma = Counter(item["programManagementAccountId"] for item in listed)
        for account in hook.list_program_management_accounts(
            catalog=catalog, page_size=PAGE_SIZE, limiter=limiter, policy=settings.retry_policy
        ):
            accounts.append({**account, "relationship_count": per_pma.get(account["id"], 0)})
        relationships += listed
    return accounts, relationships


def find_drift(
    relationships: Sequence[dict[str, Any]],
    created: Sequence[dict[str, Any]],
    rows: Mapping[str, dict[str, Any]],
    catalogs: Sequence[str],
    judged_before: dt.datetime,
) -> list[dict[str, Any]]:
    """How AWS differs from the warehouse:

    - REMOTE_WITHOUT_CANDIDATE: a relationship no outcome names, or whose candidate left the feed;
    - MISSING_REMOTE: a candidate's created relationship that AWS does not list (in a listed catalog, and recorded
      before `judged_before`: a listing lags behind the newest creates);
    - FIELDS_DIFFER: a candidate's relationship whose row would send other values than AWS shows.

    `created`: the outcomes that name a relationship; `rows`: the candidates' rows (as read) by id."""
    by_id = {item["id"]: item for item in relationships}
    owners = {outcome["relationship_id"]: outcome for outcome in created}
    drift: list[dict[str, Any]] = []
    for rid, item in by_id.items():
        outcome = owners.get(rid)
        if outcome is None:
            drift.append(_drift(REMOTE_WITHOUT_CANDIDATE, rid, None, "no candidate's outcome names it"))
        elif outcome["candidate_id"] not in rows:
            drift.append(_drift(REMOTE_WITHOUT_CANDIDATE, rid, outcome["candidate_id"], "its candidate left the feed"))
        else:
            differences = fields_differing(item, rows[outcome["candidate_id"]])
            if differences:
                detail = "the candidate would send " + ", ".join(differences)
                drift.append(_drift(FIELDS_DIFFER, rid, outcome["candidate_id"], detail, differences))
    for rid, outcome in owners.items():
        if rid in by_id or outcome["updated_at"] >= judged_before:
            continue
        if _catalog_of(outcome.get("relationship_arn")) not in (None, *catalogs):
            continue  # a catalog this reconcile did not list
        drift.append(_drift(MISSING_REMOTE, rid, outcome["candidate_id"], "is no longer in AWS"))
    return drift


def fields_differing(item: Mapping[str, Any], row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compared fields whose listed value differs from what the candidate's cleaned row would send."""
    clean, _ = cand.clean_values(row)
    request = cand.request_for({**clean, "support_plan": None, "tags": None})  # not shown by a listing
    shown = {**item, "programManagementAccountIdentifier": item.get("programManagementAccountId")}
    sent = {**request, "programManagementAccountIdentifier": pma_id(request["programManagementAccountIdentifier"])}
    return {
        name: {"aws": shown.get(name), "candidate": sent.get(name)}
        for name in COMPARED_FIELDS
        if shown.get(name) != sent.get(name)
    }


def reconcile(
    warehouse: Warehouse, hook: PartnerCentralChannelHook, settings: SyncSettings, run_id: str, limiter: RateLimiter
) -> dict[str, Any]:
    """List AWS, write the mirror and the drift to the warehouse, reopen the candidates whose relationship is gone;
    the counts. Nothing is written unless the whole listing succeeded (a partial listing would report drift that is
    not there). The sync's tables exist (create_tables: the shared limiter's schedule is one of them)."""
    # Catalogs a request could name (a misspelt one in the feed is the sync's rejection, not a listing to fail).
    catalogs = [c for c in warehouse.candidate_catalogs() if not validate_value(member_shape("catalog"), c, "catalog")]
    listed_at = warehouse.db_now()
    accounts, relationships = list_remote(hook, catalogs, limiter, settings)
    created = warehouse.created_relationships()
    ids = sorted({outcome["candidate_id"] for outcome in created})
    rows = {}
    for row in warehouse.candidate_rows(CANDIDATE_COLUMNS, ids):
        key = cand.candidate_key(row["candidate_id"])
        if key is not None:
            rows[key] = row
    judged_before = listed_at - dt.timedelta(seconds=settings.reconcile_grace_seconds)
    drift = find_drift(relationships, created, rows, catalogs, judged_before)
    warehouse.replace_listing(run_id, listed_at, accounts, relationships, drift)
    missing = [row for row in drift if row["kind"] == MISSING_REMOTE]
    reopened = warehouse.reopen(
        run_id, missing, f"was not found in AWS by reconcile run {run_id}: the next sync creates it again"
    )
    warehouse.write_back()
    counts: dict[str, Any] = {
        "catalogs": catalogs,
        "program_management_accounts": len(accounts),
        "relationships": len(relationships),
        **Counter(row["kind"] for row in drift),
        "reopened": reopened,
    }
    full = [a["id"] for a in accounts if a["relationship_count"] >= settings.relationships_per_pma]
    inactive = [f"{a['id']} ({a['status']})" for a in accounts if a.get("status") != "ACTIVE"]
    log.info("Reconciled: %s", counts)
    if full:
        log.warning("Program management account(s) at the quota of relationships: %s", ", ".join(full))
    if inactive:
        log.warning("Program management account(s) not ACTIVE: %s", ", ".join(inactive))
    return counts


def _drift(
    kind: str, relationship_id: str, candidate_id: str | None, detail: str, differences: dict | None = None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "relationship_id": relationship_id,
        "candidate_id": candidate_id,
        "differences": json.dumps(differences, sort_keys=True, default=str) if differences else None,
        "detail": detail,
    }


def _catalog_of(arn: str | None) -> str | None:
    """The catalog a relationship's ARN names (…:catalog/<catalog>/program-management-account/…)."""
    if not arn or "catalog/" not in arn:
        return None
    return arn.split("catalog/", 1)[1].split("/", 1)[0]
