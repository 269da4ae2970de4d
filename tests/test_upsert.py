"""Upsert mode end to end, on every real warehouse and real boto3 against the emulator: a changed row updates its
relationship once, tags follow the row, a change the API cannot make in place is reported as needs_recreate, and the
create mode stays as it was. The plan's pure logic is tested without a database."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from include.sync import plan as planning
from include.sync import steps
from include.sync.settings import SyncSettings
from include.vocabulary import ACTION_NO_CHANGE, ACTION_TAG, ACTION_UPDATE, NEEDS_RECREATE
from tests.test_sync_steps import one, request, statuses, sync

UPSERT = "upsert"


def calls(emulator, operation: str) -> list[dict]:
    return [c for c in emulator.emulator.call_log() if c["operation"] == operation and c["status"] == 200]


def change_row(test_warehouse, column: str, value: str | None, at: str = "2026-11-20T11:00:00+00:00") -> None:
    test_warehouse.execute(
        f"UPDATE partner_relationship_candidates SET {column} = ?, updated_at = ?",
        [value, test_warehouse.moment(at)],
    )


def outcome(test_warehouse, candidate_id: str = "c1") -> dict:
    [row] = [
        r
        for r in test_warehouse.query("SELECT * FROM partner_relationship_outcomes")
        if r["candidate_id"] == candidate_id
    ]
    return row


def history(test_warehouse, run_id: str) -> dict[str, str]:
    return {
        r["candidate_id"]: r["status"]
        for r in test_warehouse.query("SELECT * FROM partner_relationship_attempts")
        if r["dag_run_id"] == run_id
    }


def planned(test_warehouse, run_id: str) -> dict[str, int]:
    """The plan the run recorded: candidates per action."""
    [run] = [
        r for r in test_warehouse.query("SELECT * FROM partner_relationship_sync_runs") if r["dag_run_id"] == run_id
    ]
    return json.loads(run["quality_summary"])["plan"]


def only_relationship(emulator) -> dict:
    [relationship] = emulator.emulator.relationship_list()
    return relationship


def test_a_renamed_candidate_is_updated_once_in_upsert_mode(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    created = only_relationship(emulator)
    change_row(test_warehouse, "display_name", "Renamed Inc")

    second = sync(test_warehouse, request("second", mode=UPSERT))
    third = sync(test_warehouse, request("third", mode=UPSERT))

    relationship = only_relationship(emulator)
    assert relationship["id"] == created["id"]
    assert relationship["displayName"] == "Renamed Inc"
    assert int(relationship["revision"]) == int(created["revision"]) + 1
    assert len(calls(emulator, "UpdateRelationship")) == 1
    assert len(calls(emulator, "CreateRelationship")) == 1
    assert second["updated"] == 1
    assert planned(test_warehouse, "second") == {ACTION_UPDATE: 1}
    assert third["updated"] == 0 and third["selected"] == 0
    state = outcome(test_warehouse)
    assert state["status"] == "updated"
    assert state["relationship_id"] == created["id"]
    assert json.loads(state["request_json"])["displayName"] == "Renamed Inc"


def test_in_create_mode_a_renamed_candidate_is_only_reported(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    change_row(test_warehouse, "display_name", "Renamed Inc")

    second = sync(test_warehouse, request("second"))

    assert second["changed_after_done"] == 1 and second["updated"] == 0
    assert calls(emulator, "UpdateRelationship") == []
    assert outcome(test_warehouse)["status"] == "created"


def test_tags_are_brought_to_the_row_without_an_update(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    test_warehouse.execute("UPDATE partner_relationship_candidates SET tags = ?", ['{"team": "a", "old": "x"}'])
    sync(test_warehouse, request("first"))
    change_row(test_warehouse, "tags", '{"team": "b", "region": "emea"}')

    sync(test_warehouse, request("second", mode=UPSERT))

    assert only_relationship(emulator)["tags"] == {"team": "b", "region": "emea"}
    assert calls(emulator, "UpdateRelationship") == []
    assert len(calls(emulator, "TagResource")) == 1 and len(calls(emulator, "UntagResource")) == 1
    assert planned(test_warehouse, "second") == {ACTION_TAG: 1}
    assert outcome(test_warehouse)["status"] == "updated"


def test_a_change_of_identity_is_recorded_as_needs_recreate_and_nothing_is_sent(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    created = only_relationship(emulator)
    before = len(emulator.emulator.call_log())
    change_row(test_warehouse, "sector", "COMMERCIAL")  # the row was GOVERNMENT

    second = sync(test_warehouse, request("second", mode=UPSERT))

    assert len(emulator.emulator.call_log()) == before  # no call at all
    assert second["needs_recreate"] == 1
    state = outcome(test_warehouse)
    assert state["status"] == NEEDS_RECREATE
    assert state["relationship_id"] == created["id"]
    assert "sector ('GOVERNMENT' → 'COMMERCIAL')" in state["error_message"]
    # What AWS holds stays the reference: restoring the row makes it match again, with no call.
    assert json.loads(state["request_json"])["sector"] == "GOVERNMENT"
    change_row(test_warehouse, "sector", "GOVERNMENT", at="2026-11-20T12:00:00+00:00")
    sync(test_warehouse, request("third", mode=UPSERT))
    assert len(emulator.emulator.call_log()) == before
    assert planned(test_warehouse, "third") == {ACTION_NO_CHANGE: 1}
    assert outcome(test_warehouse)["status"] == "already_updated"


def created_then_renamed_with_updates_failing(test_warehouse, emulator, retry_budget: int = 5) -> SyncSettings:
    """c1 created, then renamed; every attempt of an update answers a 500 (retryable), past the retry policy of the
    settings returned."""
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    change_row(test_warehouse, "display_name", "Renamed Inc")
    emulator.emulator.configure({"internal_error_rate": 1.0})
    return SyncSettings(
        rate_per_second=50, batch_size=10, max_attempts=2, max_retry_seconds=1, retry_budget=retry_budget
    )


def test_an_update_that_fails_keeps_the_relationship_and_is_tried_again(test_warehouse, emulator):
    failing = created_then_renamed_with_updates_failing(test_warehouse, emulator)

    second = sync(test_warehouse, request("second", mode=UPSERT), failing)

    assert second["failed_retryable"] == 1
    assert history(test_warehouse, "second") == {"c1": "failed"}
    assert outcome(test_warehouse)["status"] == "created"  # the relationship is still the candidate's
    emulator.emulator.configure({"internal_error_rate": 0.0})
    third = sync(test_warehouse, request("third", mode=UPSERT))
    assert third["updated"] == 1
    assert only_relationship(emulator)["displayName"] == "Renamed Inc"


def test_an_update_failing_in_every_run_is_dead_lettered_after_the_budget_and_sent_again_when_asked(
    test_warehouse, emulator
):
    failing = created_then_renamed_with_updates_failing(test_warehouse, emulator, retry_budget=2)
    created = outcome(test_warehouse)

    assert sync(test_warehouse, request("second", mode=UPSERT), failing)["failed_retryable"] == 1
    assert (outcome(test_warehouse)["status"], outcome(test_warehouse)["failed_runs"]) == ("created", 1)
    third = sync(test_warehouse, request("third", mode=UPSERT), failing)

    # The second failing run is the budget's last: dead-lettered, the run fails naming it, the relationship stays.
    assert third["dead_letter"] == 1
    with pytest.raises(steps.SyncRunFailed, match=re.escape("1 candidate(s) were dead-lettered")):
        steps.finish(test_warehouse.warehouse(), request("third", mode=UPSERT))
    assert history(test_warehouse, "third") == {"c1": "dead_letter"}
    state = outcome(test_warehouse)
    assert state["status"] == "change_failed" and "dead-lettered: failed in 2 runs" in state["error_message"]
    assert (state["relationship_id"], state["request_json"]) == (created["relationship_id"], created["request_json"])
    # Not sent again by the next run, even with the API healthy again, and that run does not fail.
    emulator.emulator.configure({"internal_error_rate": 0.0})
    sent = len(emulator.emulator.call_log())
    fourth = request("fourth", mode=UPSERT)
    steps.prepare(test_warehouse.warehouse(), SyncSettings(), fourth)
    steps.finish(test_warehouse.warehouse(), fourth)  # does not fail: the dead letter was the third run's to report
    assert len(emulator.emulator.call_log()) == sent
    # A run that retries rejected and failed candidates sends it, once.
    fifth = sync(test_warehouse, request("fifth", mode=UPSERT, include_all_pending=True))
    assert fifth["updated"] == 1 and len(calls(emulator, "UpdateRelationship")) == 1
    state = outcome(test_warehouse)
    assert (state["status"], state["failed_runs"], state["error_message"]) == ("updated", 0, None)
    assert only_relationship(emulator)["displayName"] == "Renamed Inc"


def test_a_dead_lettered_update_is_planned_again_when_its_row_changes_with_a_new_budget(test_warehouse, emulator):
    failing = created_then_renamed_with_updates_failing(test_warehouse, emulator, retry_budget=1)
    assert sync(test_warehouse, request("second", mode=UPSERT), failing)["dead_letter"] == 1

    change_row(test_warehouse, "display_name", "Renamed Again", at="2026-11-21T09:00:00+00:00")
    # Its failures start again from none: one more failing run, within a budget of 2, is not a dead letter yet.
    third = sync(test_warehouse, request("third", mode=UPSERT), dataclasses.replace(failing, retry_budget=2))
    assert (third["failed_retryable"], third["dead_letter"]) == (1, 0)
    emulator.emulator.configure({"internal_error_rate": 0.0})
    fourth = sync(test_warehouse, request("fourth", mode=UPSERT))

    assert fourth["updated"] == 1 and only_relationship(emulator)["displayName"] == "Renamed Again"


def test_a_dry_run_in_upsert_mode_plans_the_update_and_sends_nothing(test_warehouse, emulator):
    test_warehouse.seed(
        [one("c1", "2026-11-20T10:00:00+00:00"), one("c2", "2026-11-20T10:00:00+00:00", account="000000000002")]
    )
    sync(test_warehouse, request("first", candidate_ids=("c1",)))
    change_row(test_warehouse, "display_name", "Renamed Inc")
    before = len(emulator.emulator.call_log())

    sync(test_warehouse, request("dry", mode=UPSERT, dry_run=True))

    assert len(emulator.emulator.call_log()) == before
    assert planned(test_warehouse, "dry") == {"create": 1, ACTION_UPDATE: 1}
    assert statuses(test_warehouse) == {"c1": "created"}


def test_a_relationship_created_before_requests_were_recorded_is_updated_from_what_it_shows(test_warehouse, emulator):
    test_warehouse.seed([one("c1", "2026-11-20T10:00:00+00:00")])
    sync(test_warehouse, request("first"))
    test_warehouse.state.execute("UPDATE partner_relationship_outcomes SET request_json = NULL")
    change_row(test_warehouse, "display_name", "Renamed Inc")

    sync(test_warehouse, request("second", mode=UPSERT))

    assert only_relationship(emulator)["displayName"] == "Renamed Inc"
    assert len(calls(emulator, "ListTagsForResource")) == 1  # the tags it had, to bring them to the row's


# -- the plan, without a database ------------------------------------------------------------------------------------
REQUEST = {
    "catalog": "Sandbox",
    "associationType": "END_CUSTOMER",
    "programManagementAccountIdentifier": "pma-1",
    "associatedAccountId": "000000000001",
    "displayName": "Acme",
    "sector": "COMMERCIAL",
    "tags": [{"key": "team", "value": "a"}],
}


@pytest.mark.parametrize(
    ("change", "action", "fields"),
    [
        ({}, ACTION_NO_CHANGE, []),
        ({"displayName": "Acme 2"}, ACTION_UPDATE, ["displayName"]),
        (
            {"requestedSupportPlan": {"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION"}}},
            ACTION_UPDATE,
            ["requestedSupportPlan"],
        ),
        ({"tags": [{"key": "team", "value": "b"}]}, ACTION_TAG, ["tags"]),
        ({"displayName": "Acme 2", "sector": "GOVERNMENT"}, NEEDS_RECREATE, ["sector", "displayName"]),
        ({"associatedAccountId": "000000000002"}, NEEDS_RECREATE, ["associatedAccountId"]),
        ({"resaleAccountModel": "END_CUSTOMER"}, NEEDS_RECREATE, ["resaleAccountModel"]),
    ],
)
def test_plan_change_names_the_action_and_the_fields_that_differ(change, action, fields):
    planned, found = planning.plan_change(REQUEST, {**REQUEST, **change})
    assert planned == action
    assert sorted(found) == sorted(fields)


def test_a_support_plan_the_row_leaves_empty_is_kept_not_a_change():
    applied = {**REQUEST, "requestedSupportPlan": {"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION"}}}
    assert planning.plan_change(applied, REQUEST) == (ACTION_NO_CHANGE, {})


def test_tag_changes_set_new_and_changed_values_and_remove_the_rest():
    assert planning.tag_changes({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"}) == (
        {"b": "9", "d": "4"},
        ["c"],
    )


@pytest.mark.parametrize(
    ("configured", "requested", "expected"),
    [("create", None, "create"), ("upsert", None, "upsert"), ("upsert", "create", "create"), ("upsert", "", "upsert")],
)
def test_a_run_may_narrow_the_mode(configured, requested, expected):
    assert planning.effective_mode(configured, requested) == expected


def test_a_run_may_not_widen_the_mode_and_an_unknown_mode_is_named():
    with pytest.raises(ValueError, match="wider than partner_sync_mode='create'"):
        planning.effective_mode("create", "upsert")
    with pytest.raises(ValueError, match="must be one of create, upsert, mirror, got 'merge'"):
        planning.effective_mode("create", "merge")
    with pytest.raises(ValueError, match="partner_sync_mode must be one of"):
        SyncSettings(mode="replace")


def test_the_run_request_defaults_to_create_mode():
    assert steps.RunRequest(dag_run_id="r", interval=None).mode == "create"
