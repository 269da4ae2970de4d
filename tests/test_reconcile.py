"""The reconcile: AWS's relationships and PMAs mirrored into each real warehouse, drift reported, and a relationship
deleted in the console created again by the next sync. Real boto3 over HTTP against the emulator."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dev.demo_data import PMA
from dev.emulator.service import account_id_for
from include.partner_central.api_errors import ApiError
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.relationship_request import build_create_request
from include.sync import reconcile as reconciling
from include.sync.shared_rate_limit import WarehouseRateLimiter
from include.vocabulary import FIELDS_DIFFER, MISSING_REMOTE, REMOTE_WITHOUT_CANDIDATE
from tests.conftest import ACCESS_KEY
from tests.factories import relationship_fields
from tests.test_convergence import creates, outcome_rows, run_sync
from tests.test_sync_steps import SETTINGS, one, request

NOW = "2026-11-20T10:00:00+00:00"
SETTLED = dataclasses.replace(SETTINGS, reconcile_grace_seconds=0)


def reconcile(test_warehouse, run_id: str = "reconcile-1", settings=SETTLED) -> dict:
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    limiter = WarehouseRateLimiter(warehouse, "aws:test:read", settings.read_rate_per_second)
    return reconciling.reconcile(warehouse, PartnerCentralChannelHook(), settings, run_id, limiter)


def drift_rows(test_warehouse) -> dict[tuple[str, str], dict]:
    rows = test_warehouse.query("SELECT * FROM partner_relationship_drift")
    return {(row["kind"], row["relationship_id"]): row for row in rows}


def three_created(test_warehouse) -> dict[str, dict]:
    test_warehouse.seed([one(f"c{n}", NOW, f"00000000000{n}") for n in (1, 2, 3)])
    run_sync(test_warehouse, request("sync-1"))
    rows = outcome_rows(test_warehouse)
    assert {row["status"] for row in rows.values()} == {"created"}
    return rows


@pytest.fixture(autouse=True)
def _fast_reads(emulator):
    emulator.emulator.configure({"read_rate": 100, "create_rate": 100, "delete_rate": 100})


def test_a_relationship_deleted_in_the_console_is_found_and_created_again_by_the_next_sync(
    test_warehouse, emulator, raw_client
):
    outcomes = three_created(test_warehouse)
    gone = outcomes["c2"]["relationship_id"]
    raw_client.delete_relationship(catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=gone)

    counts = reconcile(test_warehouse)

    assert (counts["relationships"], counts[MISSING_REMOTE], counts["reopened"]) == (2, 1, 1)
    drift = drift_rows(test_warehouse)
    assert drift[(MISSING_REMOTE, gone)]["candidate_id"] == "c2"
    reopened = outcome_rows(test_warehouse)["c2"]
    assert (reopened["status"], reopened["relationship_id"]) == ("pending", None)
    assert gone in reopened["error_message"] and "reconcile-1" in reopened["error_message"]

    before = len(creates(emulator))
    run = run_sync(test_warehouse, request("sync-2"))

    assert (run["selected"], run["created"], run["failed"]) == (1, 1, None)
    assert len(creates(emulator)) == before + 1
    again = outcome_rows(test_warehouse)["c2"]
    assert again["status"] == "created" and again["relationship_id"] not in (None, gone)
    assert sorted(r["id"] for r in emulator.emulator.relationship_list()) == sorted(
        row["relationship_id"] for row in outcome_rows(test_warehouse).values()
    )
    # A second reconcile finds nothing missing: converged.
    assert MISSING_REMOTE not in reconcile(test_warehouse, "reconcile-2")


def test_the_mirror_and_the_drift_show_what_aws_holds_and_how_it_differs(test_warehouse, emulator, raw_client):
    outcomes = three_created(test_warehouse)
    console = raw_client.create_relationship(
        **build_create_request(
            **relationship_fields(
                associated_account_id="000000000099", display_name="Console", program_management_account_identifier=PMA
            )
        )
    )["relationshipDetail"]["id"]
    test_warehouse.execute(
        "UPDATE partner_relationship_candidates SET display_name = 'Renamed' WHERE candidate_id = 'c1'"
    )
    test_warehouse.execute("DELETE FROM partner_relationship_candidates WHERE candidate_id = 'c3'")

    counts = reconcile(test_warehouse)

    assert (counts["relationships"], counts["program_management_accounts"]) == (4, 1)
    assert (counts[REMOTE_WITHOUT_CANDIDATE], counts[FIELDS_DIFFER], counts["reopened"]) == (2, 1, 0)
    mirror = {row["id"]: row for row in test_warehouse.query("SELECT * FROM partner_relationships_remote")}
    assert set(mirror) == {*(row["relationship_id"] for row in outcomes.values()), console}
    assert mirror[console]["display_name"] == "Console" and mirror[console]["revision"] == "1"
    assert mirror[console]["program_management_account_id"] == PMA
    [account] = test_warehouse.query("SELECT * FROM partner_program_management_accounts")
    assert (account["id"], account["status"], account["relationship_count"]) == (PMA, "ACTIVE", 4)

    drift = drift_rows(test_warehouse)
    assert drift[(REMOTE_WITHOUT_CANDIDATE, console)]["candidate_id"] is None
    assert drift[(REMOTE_WITHOUT_CANDIDATE, outcomes["c3"]["relationship_id"])]["candidate_id"] == "c3"
    renamed = drift[(FIELDS_DIFFER, outcomes["c1"]["relationship_id"])]
    shown = mirror[outcomes["c1"]["relationship_id"]]["display_name"]
    assert shown != "Renamed"
    assert json.loads(renamed["differences"]) == {"displayName": {"aws": shown, "candidate": "Renamed"}}


def test_a_relationship_created_within_the_grace_is_not_judged_missing(test_warehouse, emulator, raw_client):
    outcomes = three_created(test_warehouse)
    gone = outcomes["c1"]["relationship_id"]
    raw_client.delete_relationship(catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=gone)

    counts = reconcile(test_warehouse, settings=SETTINGS)  # the default grace: 10 minutes

    assert MISSING_REMOTE not in counts and counts["reopened"] == 0
    assert outcome_rows(test_warehouse)["c1"]["status"] == "created"


def test_a_listing_that_fails_writes_nothing_and_names_the_fix(test_warehouse, emulator):
    three_created(test_warehouse)
    reconcile(test_warehouse)
    emulator.emulator.configure({"access_denied_reason": "ACCESS_DENIED"})

    with pytest.raises(ApiError) as denied:
        reconcile(test_warehouse, "reconcile-2")

    assert denied.value.code == "AccessDeniedException" and "partnercentral:" in denied.value.fix
    runs = {row["reconcile_run_id"] for row in test_warehouse.query("SELECT * FROM partner_relationships_remote")}
    assert runs == {"reconcile-1"}  # the mirror of the last listing that succeeded


def test_a_long_listing_pages_at_the_read_rate_without_a_throttle(test_warehouse, emulator, raw_client):
    test_warehouse.seed([one("c1", NOW, "000000000001")])
    emulator.emulator.configure({"create_rate": 10_000})  # the setup's unpaced creates
    for n in range(2, 252):
        raw_client.create_relationship(
            **build_create_request(
                **relationship_fields(associated_account_id=f"{n:012d}", program_management_account_identifier=PMA)
            )
        )
    # A burst of 2: a caller that does not pace is throttled from its third call on; one that does never is, whatever
    # the jitter between sending and arriving.
    emulator.emulator.configure({"read_rate": 20, "burst": 2})

    counts = reconcile(test_warehouse, settings=dataclasses.replace(SETTLED, read_rate_per_second=20))

    assert counts["relationships"] == 250
    lists = [c for c in emulator.emulator.call_log() if c["operation"].startswith("List")]
    assert not [c["error_code"] for c in lists if c["error_code"]]
    assert len(lists) == 3 + 1  # 250 relationships in pages of 100, and one page of PMAs
    assert len(test_warehouse.query("SELECT * FROM partner_relationships_remote")) == 250


# -- the sync refuses what a PMA cannot take, before any call -------------------------------------------------------
def set_pma_status(emulator, status: str) -> None:
    emulator.emulator.set_program_management_account(account_id_for(ACCESS_KEY), PMA, status=status)


def test_creates_against_a_pma_that_is_not_active_are_left_pending_without_a_call(test_warehouse, emulator):
    three_created(test_warehouse)
    set_pma_status(emulator, "INACTIVE")
    reconcile(test_warehouse)
    test_warehouse.seed([one("c4", NOW, "000000000004")])
    before = len(creates(emulator))

    run = run_sync(test_warehouse, request("sync-2"))

    assert len(creates(emulator)) == before
    held = outcome_rows(test_warehouse)["c4"]
    assert (held["status"], held["error_code"]) == ("pending", "ProgramManagementAccountNotActive")
    assert f"{PMA} is INACTIVE" in held["error_message"] and "reconcile-1" in held["error_message"]
    assert run["pending"] == 1 and "1 candidate(s) were not sent and are pending" in run["failed"]

    # Active again, and listed so: the next run sends it.
    set_pma_status(emulator, "ACTIVE")
    reconcile(test_warehouse, "reconcile-2")
    again = run_sync(test_warehouse, request("sync-3"))
    assert (again["created"], again["failed"]) == (1, None)
    assert outcome_rows(test_warehouse)["c4"]["status"] == "created"


def test_creates_past_a_pmas_quota_are_left_pending_counting_the_creates_since_the_listing(test_warehouse, emulator):
    three_created(test_warehouse)
    reconcile(test_warehouse)  # the PMA holds 3
    test_warehouse.seed([one(f"c{n}", NOW, f"00000000000{n}") for n in (4, 5, 6)])
    quota_of_5 = dataclasses.replace(SETTINGS, relationships_per_pma=5)
    before = len(creates(emulator))

    first = run_sync(test_warehouse, request("sync-2", candidate_ids=("c4",)), quota_of_5)
    second = run_sync(test_warehouse, request("sync-3"), quota_of_5)

    assert first["created"] == 1
    assert (second["created"], second["pending"]) == (1, 1)
    assert len(creates(emulator)) == before + 2
    held = outcome_rows(test_warehouse)["c6"]
    assert held["error_code"] == "ProgramManagementAccountFull"
    assert "holds 5 relationships, its quota of 5" in held["error_message"]
    assert json.loads(second["quality_summary"])["plan"] == {"create": 1, "pending": 1}


def test_a_needs_recreate_candidate_is_created_anew_once_its_old_relationship_is_deleted(
    test_warehouse, emulator, raw_client
):
    three_created(test_warehouse)
    old = outcome_rows(test_warehouse)["c1"]["relationship_id"]
    test_warehouse.execute(
        "UPDATE partner_relationship_candidates SET sector = ? WHERE candidate_id = ?", ["COMMERCIAL", "c1"]
    )
    upsert = dataclasses.replace(SETTINGS, mode="upsert")
    run_sync(test_warehouse, request("sync-2", mode="upsert"), upsert)
    assert outcome_rows(test_warehouse)["c1"]["status"] == "needs_recreate"

    raw_client.delete_relationship(catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=old)
    reconcile(test_warehouse)
    run = run_sync(test_warehouse, request("sync-3", mode="upsert"), upsert)

    assert (run["created"], run["failed"]) == (1, None)
    again = outcome_rows(test_warehouse)["c1"]
    assert again["status"] == "created" and again["relationship_id"] != old
    sectors = {r["id"]: r["sector"] for r in emulator.emulator.relationship_list()}
    assert sectors[again["relationship_id"]] == "COMMERCIAL" and old not in sectors
