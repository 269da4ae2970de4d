"""Mirror mode end to end, on every real warehouse and real boto3 against the emulator: a relationship the package
created is deleted once when its candidate leaves the feed or is marked absent (desired_state), never one it did not
create, never past the guards; a candidate marked absent is never created, in any mode."""

from __future__ import annotations

import json

import pytest

from include.sync import steps
from include.sync.candidates import desired_state
from include.sync.settings import SyncSettings
from include.vocabulary import ACTION_DELETE, MODE_MIRROR, MODE_UPSERT
from tests.test_sync_steps import SETTINGS, one, request, statuses, sync
from tests.test_upsert import calls, history, outcome, planned

MIRROR = MODE_MIRROR


@pytest.fixture(autouse=True)
def _fast_emulator(emulator):
    emulator.emulator.configure({"create_rate": 100, "delete_rate": 100})


def three(test_warehouse) -> None:
    test_warehouse.seed([one(f"c{n}", "2026-11-20T10:00:00+00:00", account=f"00000000000{n}") for n in (1, 2, 3)])


def with_desired_state(test_warehouse, **states: str | None) -> None:
    test_warehouse.execute("ALTER TABLE partner_relationship_candidates ADD COLUMN desired_state VARCHAR(16)")
    for candidate_id, state in states.items():
        test_warehouse.execute(
            "UPDATE partner_relationship_candidates SET desired_state = ? WHERE candidate_id = ?", [state, candidate_id]
        )


def remove(test_warehouse, candidate_id: str) -> None:
    test_warehouse.execute("DELETE FROM partner_relationship_candidates WHERE candidate_id = ?", [candidate_id])


def relationship_ids(emulator) -> set[str]:
    return {relationship["id"] for relationship in emulator.emulator.relationship_list()}


def quality(test_warehouse, run_id: str) -> dict:
    [run] = [
        r for r in test_warehouse.query("SELECT * FROM partner_relationship_sync_runs") if r["dag_run_id"] == run_id
    ]
    return json.loads(run["quality_summary"])


def outcome_request(test_warehouse, candidate_id: str = "c1") -> dict:
    return json.loads(outcome(test_warehouse, candidate_id)["request_json"])


GUARDS_OFF = SyncSettings(rate_per_second=50, batch_size=10, max_delete_ratio=1.0)


def test_a_candidate_that_left_the_feed_has_its_relationship_deleted_once(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    gone = outcome(test_warehouse, "c2")["relationship_id"]
    remove(test_warehouse, "c2")

    second = sync(test_warehouse, request("second", mode=MIRROR), GUARDS_OFF)
    third = sync(test_warehouse, request("third", mode=MIRROR), GUARDS_OFF)

    assert gone not in relationship_ids(emulator) and len(relationship_ids(emulator)) == 2
    assert len(calls(emulator, "DeleteRelationship")) == 1
    assert second["deleted"] == 1 and third["deleted"] == 0 and third["staged"] == 0
    assert planned(test_warehouse, "second") == {ACTION_DELETE: 1}
    assert statuses(test_warehouse) == {"c1": "created", "c2": "deleted", "c3": "created"}
    assert json.loads(outcome(test_warehouse, "c2")["request_json"])["identifier"] == gone


def test_a_candidate_marked_absent_is_deleted_in_mirror_mode_and_only_reported_before(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    with_desired_state(test_warehouse, c1="present", c3="absent")

    upsert = sync(test_warehouse, request("upsert", mode=MODE_UPSERT), GUARDS_OFF)
    assert calls(emulator, "DeleteRelationship") == []
    assert outcome(test_warehouse, "c3")["status"] == "created"
    assert quality(test_warehouse, "upsert")["absent_with_relationship"] == 1 and upsert["deleted"] == 0

    sync(test_warehouse, request("mirror", mode=MIRROR), GUARDS_OFF)

    assert len(calls(emulator, "DeleteRelationship")) == 1
    assert statuses(test_warehouse) == {"c1": "created", "c2": "created", "c3": "deleted"}
    # Present again: created anew, once.
    test_warehouse.execute("UPDATE partner_relationship_candidates SET desired_state = NULL WHERE candidate_id = 'c3'")
    again = sync(test_warehouse, request("again", mode=MIRROR), GUARDS_OFF)
    assert again["created"] == 1 and len(relationship_ids(emulator)) == 3
    assert outcome(test_warehouse, "c3")["status"] == "created"


def test_a_candidate_marked_absent_is_never_created(test_warehouse, emulator):
    three(test_warehouse)
    with_desired_state(test_warehouse, c2="absent")

    run = sync(test_warehouse, request("first"))

    assert run["created"] == 2
    assert "c2" not in statuses(test_warehouse)
    assert len(calls(emulator, "CreateRelationship")) == 2


def test_an_unknown_desired_state_is_rejected_with_the_values_it_may_take(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first", candidate_ids=("c1", "c2")))
    with_desired_state(test_warehouse, c1="gone", c3="Absent")

    sync(test_warehouse, request("second", mode=MIRROR, max_reject_ratio=1.0), GUARDS_OFF)

    assert calls(emulator, "DeleteRelationship") == []
    assert history(test_warehouse, "second") == {"c1": "rejected", "c3": "rejected"}
    # c1 keeps its relationship; c3, never created, is rejected saying why.
    assert outcome(test_warehouse, "c1")["status"] == "created"
    message = outcome(test_warehouse, "c3")["error_message"]
    assert "desired_state: expected one of present, absent (or empty), got 'Absent'" in message


def test_past_max_deletes_nothing_is_deleted_or_sent_and_the_run_fails_with_the_counts(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first", candidate_ids=("c1", "c2")))
    remove(test_warehouse, "c1")
    remove(test_warehouse, "c2")
    guarded = SyncSettings(rate_per_second=50, batch_size=10, max_deletes=1, max_delete_ratio=1.0)
    before = len(emulator.emulator.call_log())

    with pytest.raises(steps.DeleteGuardError, match=r"would delete 2 of the 2 relationship\(s\).*max_deletes=1"):
        sync(test_warehouse, request("second", mode=MIRROR), guarded)

    assert len(emulator.emulator.call_log()) == before  # not even c3's create
    assert statuses(test_warehouse) == {"c1": "created", "c2": "created"}
    # Narrowed to upsert, the rest is applied and nothing deleted.
    narrowed = sync(test_warehouse, request("third", mode=MODE_UPSERT), guarded)
    assert narrowed["created"] == 1 and calls(emulator, "DeleteRelationship") == []


def test_past_max_delete_ratio_nothing_is_deleted(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    remove(test_warehouse, "c1")

    # One of three (33%) is past the default ratio of 10%, though under max_deletes.
    with pytest.raises(steps.DeleteGuardError, match=r"1 of the 3 .*33\.3%.*1 candidate\(s\) left the feed"):
        sync(test_warehouse, request("second", mode=MIRROR), SETTINGS)

    assert calls(emulator, "DeleteRelationship") == []


def test_a_dry_run_in_mirror_mode_plans_the_deletes_past_the_guard_and_deletes_nothing(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    remove(test_warehouse, "c1")

    sync(test_warehouse, request("dry", mode=MIRROR, dry_run=True), SETTINGS)

    assert calls(emulator, "DeleteRelationship") == []
    assert planned(test_warehouse, "dry") == {ACTION_DELETE: 1}
    assert history(test_warehouse, "dry") == {"c1": "dry_run"}
    assert outcome(test_warehouse, "c1")["status"] == "created"
    assert "max_delete_ratio=0.1" in quality(test_warehouse, "dry")["delete_guard"]


def test_a_relationship_the_package_did_not_create_is_never_deleted(test_warehouse, emulator, raw_client):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    console = raw_client.create_relationship(
        catalog="Sandbox",
        associationType="END_CUSTOMER",
        programManagementAccountIdentifier=outcome_request(test_warehouse)["programManagementAccountIdentifier"],
        associatedAccountId="000000000009",
        displayName="Made in the console",
        sector="COMMERCIAL",
        clientToken="console-made-0000000000000000001",
    )["relationshipDetail"]["id"]
    remove(test_warehouse, "c1")

    sync(test_warehouse, request("second", mode=MIRROR), GUARDS_OFF)

    assert console in relationship_ids(emulator)
    assert len(calls(emulator, "DeleteRelationship")) == 1


def test_a_delete_whose_answer_is_lost_is_made_once(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    remove(test_warehouse, "c1")
    emulator.emulator.configure({"lose_next_responses": 1})

    run = sync(test_warehouse, request("second", mode=MIRROR), GUARDS_OFF)

    deletes = [c for c in emulator.emulator.call_log() if c["operation"] == "DeleteRelationship"]
    assert len(deletes) == 2  # the lost answer's retry, with the same token
    assert len({c["request"]["clientToken"] for c in deletes}) == 1
    assert run["deleted"] + run["already_deleted"] == 1
    assert outcome(test_warehouse, "c1")["status"] in ("deleted", "already_deleted")
    assert len(relationship_ids(emulator)) == 2


def test_a_delete_that_fails_keeps_the_relationship_recorded_and_is_tried_again(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    remove(test_warehouse, "c1")
    emulator.emulator.configure({"internal_error_rate": 1.0})
    failing = SyncSettings(rate_per_second=50, batch_size=10, max_attempts=2, max_retry_seconds=1, max_delete_ratio=1)

    second = sync(test_warehouse, request("second", mode=MIRROR), failing)

    assert second["failed_retryable"] == 1 and history(test_warehouse, "second") == {"c1": "failed"}
    assert outcome(test_warehouse, "c1")["status"] == "created"
    emulator.emulator.configure({"internal_error_rate": 0.0})
    assert sync(test_warehouse, request("third", mode=MIRROR), GUARDS_OFF)["deleted"] == 1


def test_a_delete_failing_in_every_run_is_dead_lettered_and_sent_again_only_when_asked(test_warehouse, emulator):
    three(test_warehouse)
    sync(test_warehouse, request("first"))
    remove(test_warehouse, "c1")
    emulator.emulator.configure({"internal_error_rate": 1.0})
    failing = SyncSettings(
        rate_per_second=50, batch_size=10, max_attempts=2, max_retry_seconds=1, max_delete_ratio=1, retry_budget=2
    )

    assert sync(test_warehouse, request("second", mode=MIRROR), failing)["failed_retryable"] == 1
    third = sync(test_warehouse, request("third", mode=MIRROR), failing)

    assert third["dead_letter"] == 1 and history(test_warehouse, "third") == {"c1": "dead_letter"}
    assert outcome(test_warehouse, "c1")["status"] == "change_failed"
    emulator.emulator.configure({"internal_error_rate": 0.0})
    fourth = sync(test_warehouse, request("fourth", mode=MIRROR), GUARDS_OFF)
    assert fourth["deleted"] == 0 and not calls(emulator, "DeleteRelationship")
    fifth = sync(test_warehouse, request("fifth", mode=MIRROR, include_all_pending=True), GUARDS_OFF)
    assert fifth["deleted"] == 1 and len(calls(emulator, "DeleteRelationship")) == 1
    assert outcome(test_warehouse, "c1")["status"] == "deleted"


# -- without a database -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("present", None)),
        ("", ("present", None)),
        (" absent ", ("absent", None)),
        ("present", ("present", None)),
    ],
)
def test_desired_state_reads_empty_as_present(value, expected):
    assert desired_state(value) == expected


def test_an_unknown_desired_state_is_named():
    state, problem = desired_state("deleted")
    assert state == "present" and "got 'deleted'" in problem


def test_mirror_is_the_widest_mode():
    from include.sync.plan import effective_mode

    assert effective_mode(MIRROR, MODE_UPSERT) == MODE_UPSERT
    with pytest.raises(ValueError, match="wider than partner_sync_mode='upsert'"):
        effective_mode(MODE_UPSERT, MIRROR)


@pytest.mark.parametrize(("name", "value"), [("max_deletes", -1), ("max_delete_ratio", 1.5)])
def test_the_delete_guards_are_validated(name, value):
    with pytest.raises(ValueError, match=name):
        SyncSettings(**{name: value})
