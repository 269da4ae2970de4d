"""Update, delete, tags and program management accounts: the emulator, the hook and the operators over real HTTP
with stock boto3 (no mocks), each write exactly once under lost responses, injected errors and revision races."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import botocore.exceptions
import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.partner_central.api_errors import ApiError
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.operators import DeleteRelationshipOperator, UpdateRelationshipOperator
from include.partner_central.rate_limit import AdaptiveRateLimiter
from include.partner_central.relationship_changes import delete_token_for
from include.partner_central.relationship_request import build_create_request
from include.partner_central.retry_policy import RetryPolicy
from tests.conftest import ACCESS_KEY
from tests.factories import PMA, account, relationship_fields

FAST = RetryPolicy(max_attempts=4, max_seconds=20, base_seconds=0.01, max_wait_seconds=0.05)
PLAN = {"resoldEnterprise": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"}}


@pytest.fixture
def hook(emulator) -> PartnerCentralChannelHook:
    emulator.emulator.configure({"create_rate": 1000, "update_rate": 1000, "delete_rate": 1000, "read_rate": 1000})
    return PartnerCentralChannelHook()


def create(hook: PartnerCentralChannelHook, n: int = 1, **overrides) -> dict:
    request = build_create_request(**relationship_fields(associated_account_id=account(n), **overrides))
    return hook.create_relationship(request, limiter=AdaptiveRateLimiter(1000)).as_dict()


def naming(created: dict) -> dict:
    return {"catalog": "Sandbox", "programManagementAccountIdentifier": PMA, "identifier": created["relationship_id"]}


def calls(emulator, operation: str) -> list[dict]:
    return [call for call in emulator.emulator.call_log() if call["operation"] == operation]


def stored(emulator, relationship_id: str) -> dict | None:
    return next((r for r in emulator.emulator.relationship_list() if r["id"] == relationship_id), None)


def update(hook, request: dict, policy: RetryPolicy = FAST):
    return hook.update_relationship(request, limiter=AdaptiveRateLimiter(1000), policy=policy)


def delete(hook, request: dict, policy: RetryPolicy = FAST):
    return hook.delete_relationship(request, limiter=AdaptiveRateLimiter(1000), policy=policy)


# -- UpdateRelationship ----------------------------------------------------------------------------------------------
def test_an_update_changes_the_name_and_plan_in_place_and_advances_the_revision(hook, emulator):
    created = create(hook)
    result = update(hook, {**naming(created), "revision": "1", "displayName": "Renamed", "requestedSupportPlan": PLAN})

    assert (result.status, result.revision, result.attempts) == ("updated", "2", 1)
    detail = hook.get_relationship(
        catalog="Sandbox", program_management_account_identifier=PMA, identifier=created["relationship_id"]
    )
    assert (detail["displayName"], detail["revision"]) == ("Renamed", "2")
    [sent] = calls(emulator, "UpdateRelationship")
    assert sent["request"]["requestedSupportPlan"] == PLAN


def test_a_stale_revision_is_a_conflict_at_the_emulator(raw_client, hook):
    created = create(hook)
    raw_client.update_relationship(**naming(created), revision="1", displayName="First")
    with pytest.raises(botocore.exceptions.ClientError) as conflict:
        raw_client.update_relationship(**naming(created), revision="1", displayName="Second")
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    assert "revision 2, not 1" in conflict.value.response["Error"]["Message"]


def test_an_update_whose_answer_was_lost_is_found_made_and_not_sent_again(hook, emulator):
    created = create(hook)
    emulator.emulator.configure({"lose_next_responses": 1})

    result = update(hook, {**naming(created), "revision": "1", "displayName": "Renamed"})

    # Attempt 1 committed (revision 2) and its answer was dropped; attempt 2 met the conflict; the re-read showed
    # our change at revision 2: nothing more was sent.
    assert (result.status, result.revision, result.attempts) == ("already_updated", "2", 2)
    assert [call["status"] for call in calls(emulator, "UpdateRelationship")] == [200, 409]
    assert stored(emulator, created["relationship_id"])["revision"] == "2"


def test_a_revision_race_reads_again_and_applies_once_at_the_current_revision(raw_client, hook, emulator):
    created = create(hook)
    raw_client.update_relationship(**naming(created), revision="1", displayName="Someone Else")  # the console

    result = update(hook, {**naming(created), "revision": "1", "displayName": "Ours"})

    assert (result.status, result.revision) == ("updated", "3")
    assert [call["request"].get("revision") for call in calls(emulator, "UpdateRelationship")] == ["1", "1", "2"]
    assert stored(emulator, created["relationship_id"])["displayName"] == "Ours"


def test_a_second_conflict_after_the_re_read_is_raised_not_retried_for_ever(hook, emulator, monkeypatch):
    created = create(hook)
    real = hook.conn.get_relationship

    def racing_get(**kwargs):  # another writer moves the revision between our re-read and our second send
        detail = real(**kwargs)
        emulator.emulator.handle(
            "UpdateRelationship",
            {**naming(created), "displayName": "Racer"},
            ACCESS_KEY,
        )
        return detail

    monkeypatch.setattr(hook.conn, "get_relationship", racing_get)
    emulator.emulator.handle("UpdateRelationship", {**naming(created), "displayName": "First"}, ACCESS_KEY)
    with pytest.raises(ApiError) as raised:
        update(hook, {**naming(created), "revision": "1", "displayName": "Ours"})
    assert raised.value.code == "ConflictException"
    assert raised.value.attempts == 2


def test_an_update_retries_an_internal_error_and_changes_once(hook, emulator):
    created = create(hook)
    emulator.emulator.configure({"fail_next_writes": 2})

    result = update(hook, {**naming(created), "revision": "1", "displayName": "Renamed"})

    assert (result.status, result.attempts) == ("updated", 3)
    assert stored(emulator, created["relationship_id"])["revision"] == "2"


def test_an_update_of_a_relationship_that_is_gone_raises_not_found(hook):
    with pytest.raises(ApiError) as raised:
        update(hook, {**naming({"relationship_id": "rs-0000000000000"}), "revision": "1", "displayName": "X"})
    assert raised.value.code == "ResourceNotFoundException"
    assert not raised.value.retryable


def test_an_update_that_changes_nothing_is_refused_before_any_call(hook, emulator):
    created = create(hook)
    with pytest.raises(ValueError, match="displayName, requestedSupportPlan"):
        update(hook, {**naming(created), "revision": "1"})
    assert calls(emulator, "UpdateRelationship") == []


# -- DeleteRelationship ----------------------------------------------------------------------------------------------
def test_a_delete_removes_the_relationship_with_a_deterministic_token(hook, emulator):
    created = create(hook)
    result = delete(hook, naming(created))

    assert (result.status, result.attempts) == ("deleted", 1)
    assert stored(emulator, created["relationship_id"]) is None
    [sent] = calls(emulator, "DeleteRelationship")
    assert sent["client_token"] == delete_token_for(created["relationship_id"])
    assert len(sent["client_token"]) <= 64


def test_a_delete_whose_answer_was_lost_is_retried_with_the_same_token_and_succeeds(hook, emulator):
    created = create(hook)
    emulator.emulator.configure({"lose_next_responses": 1})

    result = delete(hook, naming(created))

    assert (result.status, result.attempts) == ("deleted", 2)
    sent = calls(emulator, "DeleteRelationship")
    assert [call["status"] for call in sent] == [200, 200]
    assert sent[0]["dropped"] and sent[0]["client_token"] == sent[1]["client_token"]


def test_deleting_a_relationship_already_gone_is_already_deleted(hook, emulator, raw_client):
    created = create(hook)
    raw_client.delete_relationship(**naming(created), clientToken="console-delete")

    result = delete(hook, naming(created))

    assert result.status == "already_deleted"
    assert calls(emulator, "DeleteRelationship")[-1]["error_code"] == "ResourceNotFoundException"


def test_after_a_delete_the_same_identity_can_be_created_again_as_a_new_relationship(hook, emulator):
    first = create(hook)
    delete(hook, naming(first))
    again = create(hook)

    assert again["status"] == "created"
    assert again["relationship_id"] != first["relationship_id"]
    assert [r["id"] for r in emulator.emulator.relationship_list()] == [again["relationship_id"]]


# -- rates ------------------------------------------------------------------------------------------------------------
def test_each_write_has_its_own_quota_per_account(raw_client, hook, emulator):
    created = create(hook)
    # One update per 100 s: the second is throttled however slowly this machine runs between the two.
    emulator.emulator.configure({"update_rate": 0.01, "create_rate": 1, "burst": 1})
    raw_client.update_relationship(**naming(created), displayName="Once")
    with pytest.raises(botocore.exceptions.ClientError) as throttled:
        raw_client.update_relationship(**naming(created), displayName="Twice")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    # The update's quota is spent; the create's is not.
    raw_client.create_relationship(**build_create_request(**relationship_fields(associated_account_id=account(9))))


# -- tags --------------------------------------------------------------------------------------------------------------
def test_tags_are_listed_added_overwritten_and_removed(hook, emulator):
    created = create(hook, tags={"team": "a"})
    arn = created["relationship_arn"]
    assert hook.list_tags_for_resource(arn) == {"team": "a"}

    hook.tag_resource(arn, {"team": "b", "region": "emea"})
    hook.tag_resource(arn, {"team": "b", "region": "emea"})  # the same call twice: the same tags
    assert hook.list_tags_for_resource(arn) == {"team": "b", "region": "emea"}

    hook.untag_resource(arn, ["team", "absent"])
    assert hook.list_tags_for_resource(arn) == {"region": "emea"}
    assert stored(emulator, created["relationship_id"])["tags"] == {"region": "emea"}


def test_tags_of_an_unknown_resource_are_not_found(hook):
    arn = (
        f"arn:aws:partnercentral:us-east-1:{account(1)}:catalog/Sandbox/program-management-account/{PMA}"
        "/relationship/rs-0000000000000"
    )
    with pytest.raises(ApiError) as raised:
        hook.list_tags_for_resource(arn, policy=FAST)
    assert raised.value.code == "ResourceNotFoundException"


# -- program management accounts ---------------------------------------------------------------------------------------
def set_up_pma(emulator, **summary) -> dict:
    body = json.dumps({"access_key": ACCESS_KEY, **summary}).encode()
    request = urllib.request.Request(emulator.url + "/_emulator/program-management-accounts", data=body, method="POST")
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def test_program_management_accounts_are_listed_with_their_status_across_pages(hook, emulator):
    pmas = [f"pma-{n:013d}" for n in range(5)]
    for n, pma in enumerate(pmas):
        set_up_pma(emulator, id=pma, status="INACTIVE" if n == 3 else "ACTIVE")

    listed = hook.list_program_management_accounts(catalog="Sandbox", page_size=2)
    assert sorted(item["id"] for item in listed) == pmas
    assert {item["id"]: item["status"] for item in listed}[pmas[3]] == "INACTIVE"
    inactive = hook.list_program_management_accounts(catalog="Sandbox", statuses=["INACTIVE"])
    assert [item["id"] for item in inactive] == [pmas[3]]
    assert len(calls(emulator, "ListProgramManagementAccounts")) == 3 + 1


def test_a_pma_first_named_by_a_create_is_active(hook):
    create(hook)
    [listed] = hook.list_program_management_accounts(catalog="Sandbox")
    assert (listed["id"], listed["status"]) == (PMA, "ACTIVE")


def test_no_relationship_is_created_in_a_pma_that_is_not_active(hook, emulator):
    set_up_pma(emulator, id=PMA, status="PENDING")
    with pytest.raises(ApiError) as raised:
        create(hook)
    assert raised.value.code == "ValidationException"
    assert "is PENDING" in raised.value.message
    assert emulator.emulator.relationship_list() == []


def test_a_pma_set_up_with_an_unknown_status_is_refused_by_name(emulator):
    with pytest.raises(urllib.error.HTTPError) as refused:
        set_up_pma(emulator, id=PMA, status="CLOSED")
    assert refused.value.code == 400
    assert "PENDING, ACTIVE, INACTIVE" in json.loads(refused.value.read())["message"]


# -- the operators -----------------------------------------------------------------------------------------------------
def test_the_update_operator_renders_its_templates_and_updates_once(hook, emulator):
    created = create(hook)
    task = UpdateRelationshipOperator(
        task_id="update",
        catalog="Sandbox",
        program_management_account_identifier=PMA,
        identifier=created["relationship_arn"],
        revision="1",
        display_name="Renamed",
        requested_support_plan=json.dumps(PLAN),
    )
    assert {"identifier", "revision", "display_name", "requested_support_plan"} <= set(task.template_fields)

    result = task.execute({})

    assert (result["status"], result["revision"]) == ("updated", "2")
    [sent] = calls(emulator, "UpdateRelationship")
    assert sent["request"]["requestedSupportPlan"] == PLAN


def test_the_update_operator_fails_at_once_on_a_final_answer(hook):
    task = UpdateRelationshipOperator(
        task_id="update",
        catalog="Sandbox",
        program_management_account_identifier=PMA,
        identifier="rs-0000000000000",
        display_name="Renamed",
    )
    with pytest.raises(AirflowFailException, match="UpdateRelationship failed after 1 attempt"):
        task.execute({})


def test_the_delete_operator_deletes_once_and_a_rerun_finds_it_gone(hook, emulator):
    created = create(hook)
    task = DeleteRelationshipOperator(
        task_id="delete",
        catalog="Sandbox",
        program_management_account_identifier=PMA,
        identifier=created["relationship_id"],
    )
    assert task.execute({})["status"] == "deleted"
    assert task.execute({})["status"] == "deleted"  # a task re-run: the same token, answered as the first time
    assert emulator.emulator.relationship_list() == []
    assert len({call["client_token"] for call in calls(emulator, "DeleteRelationship")}) == 1
