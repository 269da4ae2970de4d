"""The emulator over real HTTP with stock boto3: semantics, quotas, faults and validation faithful to the model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import botocore.exceptions
import botocore.session
import pytest
import regex
from botocore.validate import ParamValidator

from include.partner_central.relationship_request import build_create_request
from include.partner_central.service_model import field_limits, input_shape, service_model
from tests.factories import PMA, account, relationship_fields


@pytest.fixture(autouse=True)
def _no_rate_limit_unless_tested(emulator):
    emulator.emulator.configure({"create_rate": 1000, "read_rate": 1000})


def request(**overrides) -> dict:
    return build_create_request(**relationship_fields(**overrides))


def error_of(call) -> botocore.exceptions.ClientError:
    with pytest.raises(botocore.exceptions.ClientError) as failure:
        call()
    return failure.value


def test_created_ids_and_arns_follow_the_model(raw_client):
    detail = raw_client.create_relationship(**request())["relationshipDetail"]
    rid_pattern = field_limits("identifier", "GetRelationship").pattern
    assert regex.fullmatch(input_shape("GetRelationship").members["identifier"].metadata["pattern"], detail["arn"])
    assert regex.fullmatch(rid_pattern, detail["id"])
    got = raw_client.get_relationship(
        catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=detail["arn"]
    )
    assert got["relationshipDetail"]["id"] == detail["id"]
    assert got["relationshipDetail"]["createdAt"].year >= 2026


def test_same_token_same_parameters_returns_the_same_relationship(raw_client, emulator):
    first = raw_client.create_relationship(**request())["relationshipDetail"]
    again = raw_client.create_relationship(**request())["relationshipDetail"]
    assert first == again
    assert len(emulator.emulator.relationship_list()) == 1


def test_same_token_other_parameters_is_a_conflict(raw_client):
    raw_client.create_relationship(**request())
    error = error_of(lambda: raw_client.create_relationship(**request(display_name="Other")))
    assert error.response["Error"]["Code"] == "ConflictException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_second_relationship_with_the_same_identity_is_a_conflict_naming_the_first(raw_client):
    first = raw_client.create_relationship(**request())["relationshipDetail"]
    error = error_of(lambda: raw_client.create_relationship(**request(client_token="other-token")))
    assert error.response["Error"]["Code"] == "ConflictException"
    assert error.response["resourceId"] == first["id"]


def test_quota_of_relationships_per_pma(raw_client, emulator):
    emulator.emulator.configure({"max_relationships_per_pma": 2})
    for n in range(2):
        raw_client.create_relationship(**request(associated_account_id=account(n)))
    error = error_of(lambda: raw_client.create_relationship(**request(associated_account_id=account(9))))
    assert error.response["Error"]["Code"] == "ServiceQuotaExceededException"
    other_pma = request(associated_account_id=account(9), program_management_account_identifier="pma-other12345678")
    assert raw_client.create_relationship(**other_pma)["relationshipDetail"]["id"]


def test_rate_limit_throttles_beyond_the_configured_rate(raw_client, emulator):
    emulator.emulator.configure({"create_rate": 2})
    codes = []
    for n in range(4):
        try:
            raw_client.create_relationship(**request(associated_account_id=account(n)))
            codes.append("ok")
        except botocore.exceptions.ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert codes == ["ok", "ok", "ThrottlingException", "ThrottlingException"]


def test_the_rate_limit_is_per_account(raw_client, emulator):
    emulator.emulator.configure({"create_rate": 1})
    raw_client.create_relationship(**request())
    other_account = botocore.session.get_session().create_client(
        "partnercentral-channel",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAANOTHERACCOUNT01",
        aws_secret_access_key="x",
    )
    assert other_account.create_relationship(**request())["relationshipDetail"]["id"]


def test_list_filters_and_paginates(raw_client):
    for n in range(5):
        raw_client.create_relationship(**request(associated_account_id=account(n)))
    raw_client.create_relationship(**request(associated_account_id=account(1), association_type="DOWNSTREAM_SELLER"))

    pages = list(
        raw_client.get_paginator("list_relationships").paginate(
            catalog="Sandbox", associationTypes=["END_CUSTOMER"], PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    one = raw_client.list_relationships(
        catalog="Sandbox", associatedAccountIds=[account(1)], associationTypes=["DOWNSTREAM_SELLER"]
    )["items"]
    assert [(item["associatedAccountId"], item["associationType"]) for item in one] == [
        (account(1), "DOWNSTREAM_SELLER")
    ]


def test_fault_injection_at_run_time(raw_client, emulator):
    body = json.dumps({"internal_error_rate": 1.0}).encode()
    urllib.request.urlopen(urllib.request.Request(emulator.url + "/_emulator/config", data=body, method="POST"))
    error = error_of(lambda: raw_client.create_relationship(**request()))
    assert error.response["Error"]["Code"] == "InternalServerException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_unknown_setting_is_refused_by_name(emulator):
    body = json.dumps({"internal_eror_rate": 1.0}).encode()
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(urllib.request.Request(emulator.url + "/_emulator/config", data=body, method="POST"))
    assert "internal_eror_rate" in failure.value.read().decode()


def test_lost_response_commits_then_drops_the_connection(raw_client, emulator):
    emulator.emulator.configure({"lose_next_responses": 1})
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        raw_client.create_relationship(**request())
    assert len(emulator.emulator.relationship_list()) == 1


VALID = [
    request(),
    request(tags={"team": "alliances", "région": "eu west"}),
    request(requested_support_plan={"resoldEnterprise": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "x"}}),
    request(associated_account_id=None, association_type="INTERNAL"),
    request(
        program_management_account_identifier=(
            f"arn:aws:partnercentral:us-east-1:123456789012:catalog/Sandbox/program-management-account/{PMA}"
        )
    ),
    request(start_date="2027-01-01T00:00:00Z", account_scope="ENTIRE_ORGANIZATION"),
]
# Each breaks a rule that botocore's ParamValidator checks on the client.
INVALID_FOR_BOTH = [
    {k: v for k, v in request().items() if k != "sector"},
    request(program_management_account_identifier="pma-short"),
    {**request(), "requestedSupportPlan": {}},
    request(associated_account_id="12345678901"),
    request(
        requested_support_plan={
            "resoldEnterprise": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "x"},
            "partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "x"},
        }
    ),
    request(requested_support_plan={"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION"}}),
    {**request(), "displayName": 42},
    {**request(), "unknownField": "x"},
    request(tags=[{"key": "only-a-key"}]),
]
# Rules only the service checks (enums, maximum lengths, patterns): the emulator checks them as the service does.
INVALID_FOR_SERVICE_ONLY = [
    request(sector="PRIVATE"),
    request(display_name="x" * 31),
    request(associated_account_id="12345678901a"),
    request(catalog="AWS1"),
    request(display_name="tab\tinside"),
    request(tags={"k" * 129: "v"}),
    request(client_token="x" * 65),
]


def param_validator_errors(params: dict) -> str:
    report = ParamValidator().validate(params, input_shape())
    return report.generate_report() if report.has_errors() else ""


def emulator_error(raw_client, params: dict) -> str:
    try:
        raw_client.create_relationship(**params)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    except KeyError:  # boto3 cannot even serialise an unknown member: send the JSON as it would
        return raw_post_error(raw_client.meta.endpoint_url, params)
    return ""


def raw_post_error(url: str, params: dict) -> str:
    headers = {
        "X-Amz-Target": "PartnerCentralChannel.CreateRelationship",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIATESTACCOUNT00001/20261126/us-east-1/x/aws4_request",
    }
    post = urllib.request.Request(url, data=json.dumps(params).encode(), headers=headers, method="POST")
    try:
        urllib.request.urlopen(post)
    except urllib.error.HTTPError as error:
        return json.loads(error.read())["__type"]
    return ""


@pytest.mark.parametrize("params", VALID)
def test_valid_requests_pass_both(raw_client, params):
    assert param_validator_errors(params) == ""
    assert emulator_error(raw_client, params) == ""


@pytest.mark.parametrize("params", INVALID_FOR_BOTH)
def test_requests_botocore_refuses_are_refused_by_the_emulator(raw_client, params):
    assert param_validator_errors(params) != ""
    assert emulator_error(raw_client, params) == "ValidationException"


@pytest.mark.parametrize("params", INVALID_FOR_SERVICE_ONLY)
def test_the_emulator_checks_what_only_the_service_checks(raw_client, params):
    assert param_validator_errors(params) == ""
    assert emulator_error(raw_client, params) == "ValidationException"


def test_validation_exception_names_each_field(raw_client):
    error = error_of(lambda: raw_client.create_relationship(**request(sector="PRIVATE", display_name="x" * 31)))
    assert error.response["reason"] == "REQUEST_VALIDATION_FAILED"
    assert {field["name"] for field in error.response["fieldList"]} == {"sector", "displayName"}


def test_the_emulator_serves_the_operations_the_sync_needs():
    operations = set(service_model().operation_names)
    assert {"CreateRelationship", "GetRelationship", "ListRelationships"} <= operations
