"""CreateRelationshipOperator and its hook, over real HTTP against the emulator: no mocks of boto3 or the hook."""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.operators import RENAMED_FIELDS, CreateRelationshipOperator
from include.partner_central.relationship_request import client_token_for
from include.partner_central.service_model import create_request_fields, snake_case
from tests.factories import PMA, account, relationship_fields


def operator(**overrides) -> CreateRelationshipOperator:
    fields = relationship_fields(**overrides)
    fields.setdefault("task_id", "create")
    fields.setdefault("max_retry_seconds", 30)
    return CreateRelationshipOperator(**fields)


def creates(emulator) -> list[dict]:
    return [call for call in emulator.emulator.call_log() if call["operation"] == "CreateRelationship"]


def test_every_request_field_of_the_model_is_a_templated_argument():
    model_fields = {snake_case(name) for name in create_request_fields()}
    arguments = {RENAMED_FIELDS.get(name, name) for name in inspect.signature(CreateRelationshipOperator).parameters}
    templated = {RENAMED_FIELDS.get(name, name) for name in CreateRelationshipOperator.template_fields}
    assert model_fields <= arguments
    assert model_fields <= templated


def test_hook_turns_botocore_retries_off_and_sets_timeouts(emulator):
    hook = PartnerCentralChannelHook(aws_conn_id="aws_default", config={"read_timeout": 7})
    client = hook.conn
    assert client.meta.endpoint_url == emulator.url
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.connect_timeout == 5
    assert client.meta.config.read_timeout == 7


def test_creates_a_relationship_with_a_deterministic_token(emulator):
    result = operator().execute({})

    assert result["status"] == "created"
    assert result["relationship_id"].startswith("rs-")
    [relationship] = emulator.emulator.relationship_list()
    assert relationship["arn"] == result["relationship_arn"]
    expected = client_token_for("Sandbox", PMA, "012345678901", "END_CUSTOMER")
    assert [call["client_token"] for call in creates(emulator)] == [expected]


def test_explicit_client_token_is_sent_as_given(emulator):
    operator(client_token="my-own-token-1").execute({})
    assert [call["client_token"] for call in creates(emulator)] == ["my-own-token-1"]


def test_lost_response_then_retry_creates_exactly_one_relationship(emulator):
    emulator.emulator.configure({"lose_next_responses": 1})

    result = operator().execute({})

    assert result["status"] == "created"
    assert result["attempts"] == 2
    calls = creates(emulator)
    assert [call["dropped"] for call in calls] == [True, False]
    assert calls[0]["client_token"] == calls[1]["client_token"]
    assert len(emulator.emulator.relationship_list()) == 1
    assert calls[0]["relationship_id"] == result["relationship_id"]


def test_internal_errors_are_retried(emulator):
    emulator.emulator.configure({"fail_next_writes": 2})
    result = operator().execute({})
    assert (result["status"], result["attempts"]) == ("created", 3)


def test_an_outage_that_outlasts_the_retries_fails_the_task_for_a_later_retry(emulator):
    emulator.emulator.configure({"internal_error_rate": 1.0})
    with pytest.raises(AirflowException) as failure:
        operator(max_attempts=3).execute({})
    assert not isinstance(failure.value, AirflowFailException)
    assert "after 3 attempt(s): InternalServerException" in str(failure.value)
    assert len(creates(emulator)) == 3


def test_throttling_storm_is_retried_and_ends_created_within_the_rate(emulator):
    emulator.emulator.configure({"create_rate": 2.0})
    tasks = [operator(associated_account_id=account(n), rate_per_second=20) for n in range(8)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda task: task.execute({}), tasks))

    assert {result["status"] for result in results} == {"created"}
    assert len(emulator.emulator.relationship_list()) == 8
    calls = creates(emulator)
    assert any(call["error_code"] == "ThrottlingException" for call in calls)
    assert len({call["client_token"] for call in calls}) == 8


def test_validation_error_is_reported_at_once_and_not_retried(emulator):
    with pytest.raises(AirflowFailException) as failure:
        operator(display_name="A name far longer than thirty characters").execute({})
    message = str(failure.value)
    assert "after 1 attempt(s): ValidationException" in message
    assert "displayName" in message
    assert len(creates(emulator)) == 1


def test_conflict_resolves_to_the_existing_relationship(emulator):
    first = operator().execute({})

    second = operator(client_token="another-token-for-same-identity").execute({})

    assert second["status"] == "already_exists"
    assert (second["relationship_id"], second["relationship_arn"]) == (
        first["relationship_id"],
        first["relationship_arn"],
    )
    assert len(emulator.emulator.relationship_list()) == 1


def test_same_token_with_changed_fields_resolves_to_the_existing_relationship(emulator):
    first = operator().execute({})
    second = operator(display_name="Renamed Customer").execute({})
    assert (second["status"], second["relationship_arn"]) == ("already_exists", first["relationship_arn"])


def test_a_conflict_that_cannot_be_found_fails_naming_the_conflict(emulator):
    # The token was used for another relationship: the conflict is real, and nothing matches this identity.
    operator(client_token="shared-token").execute({})
    with pytest.raises(AirflowException) as failure:
        operator(client_token="shared-token", associated_account_id=account(7)).execute({})
    message = str(failure.value)
    # Retryable: ListRelationships may lag behind a create, so a later try may still find it.
    assert not isinstance(failure.value, AirflowFailException)
    assert "ConflictException" in message
    assert "conflicting Relationship rs-" in message


def test_the_relationships_per_pma_quota_is_final(emulator):
    emulator.emulator.configure({"max_relationships_per_pma": 2})
    operator(associated_account_id=account(1)).execute({})
    operator(associated_account_id=account(2)).execute({})

    with pytest.raises(AirflowFailException) as failure:
        operator(associated_account_id=account(3)).execute({})

    assert "ServiceQuotaExceededException" in str(failure.value)
    assert len(creates(emulator)) == 3


def test_templated_json_fields_are_parsed(emulator):
    task = operator(
        tags='{"team": "alliances"}',
        requested_support_plan='{"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"}}',
    )
    task.execute({})
    [call] = creates(emulator)
    assert call["request"]["tags"] == [{"key": "team", "value": "alliances"}]
    assert call["request"]["requestedSupportPlan"]["partnerLedSupport"]["coverage"] == "ENTIRE_ORGANIZATION"


def test_bad_json_in_a_templated_field_names_the_field(emulator):
    with pytest.raises(AirflowFailException, match="tags is not valid JSON"):
        operator(tags="{not json").execute({})
    assert creates(emulator) == []


def test_access_denied_fails_at_once_naming_the_iam_actions_to_grant(emulator):
    emulator.emulator.configure({"access_denied_reason": "ACCESS_DENIED"})
    with pytest.raises(AirflowFailException) as failure:
        operator().execute({})
    message = str(failure.value)
    assert "AccessDeniedException" in message and "partnercentral:CreateRelationship" in message
    assert len(creates(emulator)) == 1
