"""The emulator over real HTTP with stock boto3: semantics, quotas, faults and validation faithful to the model."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from dataclasses import fields

import botocore.auth
import botocore.exceptions
import botocore.session
import pytest
import regex
from botocore.validate import ParamValidator

from dev.emulator.server import parse_args
from dev.emulator.service import Settings
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


class ManualClock:
    """The emulator's clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(emulator, monkeypatch) -> ManualClock:
    manual = ManualClock()
    monkeypatch.setattr(emulator.emulator, "clock", manual)
    return manual


def configure_over_http(emulator, values: dict) -> None:
    body = json.dumps(values).encode()
    urllib.request.urlopen(urllib.request.Request(emulator.url + "/_emulator/config", data=body, method="POST"))


def refusal_of_setting(emulator, values: dict) -> str:
    body = json.dumps(values).encode()
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(urllib.request.Request(emulator.url + "/_emulator/config", data=body, method="POST"))
    assert failure.value.code == 400
    return json.loads(failure.value.read())["message"]


def list_ids(raw_client) -> list[str]:
    return [item["id"] for item in raw_client.list_relationships(catalog="Sandbox")["items"]]


def test_list_shows_a_new_relationship_only_after_the_lag_while_get_sees_it_at_once(raw_client, emulator, clock):
    configure_over_http(emulator, {"list_lag_seconds": 2.0})
    detail = raw_client.create_relationship(**request())["relationshipDetail"]
    assert list_ids(raw_client) == []
    got = raw_client.get_relationship(
        catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=detail["id"]
    )
    assert got["relationshipDetail"]["id"] == detail["id"]
    clock.advance(1.5)
    assert list_ids(raw_client) == []
    clock.advance(0.5)  # exactly the lag (halves add exactly to the epoch seconds)
    assert list_ids(raw_client) == [detail["id"]]


def test_a_client_token_past_its_lifetime_makes_the_same_create_a_conflict(raw_client, emulator, clock):
    configure_over_http(emulator, {"token_ttl_seconds": 60})
    first = raw_client.create_relationship(**request())["relationshipDetail"]
    clock.advance(60)
    assert raw_client.create_relationship(**request())["relationshipDetail"] == first
    clock.advance(1)
    error = error_of(lambda: raw_client.create_relationship(**request()))
    assert error.response["Error"]["Code"] == "ConflictException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert (error.response["resourceId"], error.response["resourceType"]) == (first["id"], "Relationship")
    assert len(emulator.emulator.relationship_list()) == 1


def opaque(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "2",
        "50",
        "0",
        "not-a-token",
        opaque({"offset": "2"}),
        opaque({"offset": -1}),
        opaque([2]),
        opaque({"offset": 2})[:-2],
    ],
)
def test_a_next_token_the_service_did_not_issue_is_a_validation_error(raw_client, token):
    for n in range(3):
        raw_client.create_relationship(**request(associated_account_id=account(n)))
    error = error_of(lambda: raw_client.list_relationships(catalog="Sandbox", maxResults=1, nextToken=token))
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["reason"] == "REQUEST_VALIDATION_FAILED"
    assert [field["name"] for field in error.response["fieldList"]] == ["nextToken"]


def test_issued_next_tokens_are_opaque_and_page_through_everything(raw_client):
    created = {
        raw_client.create_relationship(**request(associated_account_id=account(n)))["relationshipDetail"]["id"]
        for n in range(7)
    }
    first = raw_client.list_relationships(catalog="Sandbox", maxResults=3)
    assert not first["nextToken"].isdigit()
    pages = list(
        raw_client.get_paginator("list_relationships").paginate(catalog="Sandbox", PaginationConfig={"PageSize": 3})
    )
    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert {item["id"] for page in pages for item in page["items"]} == created


def allowed_reason() -> str:
    """A reason the model allows for AccessDeniedException (any string while the model gives no enum)."""
    shape = service_model().shape_for("AccessDeniedException").members["reason"]
    return shape.enum[0] if shape.enum else "INSUFFICIENT_PERMISSIONS"


FRONT_DOOR_FAULTS = [
    pytest.param({"access_denied_reason": allowed_reason()}, "AccessDeniedException", "is not authorized", id="denied"),
    pytest.param(
        {"expired_token": True},
        "ExpiredTokenException",
        "The security token included in the request is expired",
        id="expired",
    ),
    pytest.param(
        {"invalid_signature": True},
        "InvalidSignatureException",
        r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)",
        id="signature",
    ),
    pytest.param(
        {"unrecognized_client": True},
        "UnrecognizedClientException",
        r"The security token included in the request is invalid\.",
        id="unrecognized",
    ),
]


@pytest.mark.parametrize(("setting", "code", "message"), FRONT_DOOR_FAULTS)
def test_front_door_faults_answer_every_call_before_validation_and_throttling(
    raw_client, emulator, setting, code, message
):
    configure_over_http(emulator, {**setting, "create_rate": 1})
    calls = [
        lambda: raw_client.create_relationship(**request()),
        lambda: raw_client.create_relationship(**request()),  # over the rate: still the fault, not throttling
        lambda: raw_client.create_relationship(**request(sector="PRIVATE")),  # invalid: still the fault
        lambda: raw_client.get_relationship(
            catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier="rs-x"
        ),
        lambda: raw_client.list_relationships(catalog="Sandbox", nextToken="2"),
    ]
    for call in calls:
        error = error_of(call)
        assert error.response["Error"]["Code"] == code
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert regex.search(message, error.response["Error"]["Message"])
        if code == "AccessDeniedException":
            assert error.response["reason"] == setting["access_denied_reason"]
    assert [call["error_code"] for call in emulator.emulator.call_log()] == [code] * len(calls)
    assert emulator.emulator.relationship_list() == []
    configure_over_http(emulator, dict.fromkeys(setting, None if code == "AccessDeniedException" else False))
    assert raw_client.create_relationship(**request())["relationshipDetail"]["id"]  # the faults took no rate


def test_access_denied_reason_must_be_one_the_model_allows(emulator):
    shape = service_model().shape_for("AccessDeniedException").members["reason"]
    wrong = [42, ""] + (["NOT_" + shape.enum[0]] if shape.enum else [])
    for reason in wrong:
        assert "access_denied_reason" in refusal_of_setting(emulator, {"access_denied_reason": reason})
    assert "expired_token" in refusal_of_setting(emulator, {"expired_token": "yes"})
    assert (emulator.emulator.settings.access_denied_reason, emulator.emulator.settings.expired_token) == (None, False)


def shifted_signing_clock(monkeypatch, delta: dt.timedelta) -> None:
    """The caller's clock off by `delta`: botocore signs with the time it reads here."""
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: real(remove_tzinfo) + delta)


def test_a_worker_whose_clock_is_behind_by_more_than_the_skew_gets_invalid_signature(raw_client, monkeypatch):
    shifted_signing_clock(monkeypatch, -dt.timedelta(minutes=4))
    assert list_ids(raw_client) == []
    shifted_signing_clock(monkeypatch, -dt.timedelta(minutes=10))
    error = error_of(lambda: list_ids(raw_client))
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert regex.fullmatch(
        r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)",
        error.response["Error"]["Message"],
    )


def test_a_worker_whose_clock_is_ahead_gets_invalid_signature_within_the_configured_skew(raw_client, emulator, clock):
    configure_over_http(emulator, {"max_clock_skew_seconds": 60})
    clock.advance(-50)
    assert list_ids(raw_client) == []
    clock.advance(-20)
    error = error_of(lambda: list_ids(raw_client))
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.response["Error"]["Message"].startswith("Signature not yet current: ")
    assert error.response["Error"]["Message"].endswith(" + 1 min.)")
    assert emulator.emulator.call_log()[-1]["error_code"] == "InvalidSignatureException"


def test_the_cli_has_an_option_for_every_setting(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    usage = capsys.readouterr().out
    assert all(f"--{f.name.replace('_', '-')}" in usage for f in fields(Settings))
    assert parse_args([]) == ("127.0.0.1", 4566, Settings())
    reason = allowed_reason()
    argv = ["--list-lag-seconds", "1.5", "--token-ttl-seconds", "60", "--access-denied-reason", reason]
    argv += ["--expired-token", "--invalid-signature", "--unrecognized-client", "--max-clock-skew-seconds", "60"]
    _, _, settings = parse_args([*argv, "--seed", "3", "--burst", "2"])
    assert settings == Settings(
        list_lag_seconds=1.5,
        token_ttl_seconds=60.0,
        access_denied_reason=reason,
        expired_token=True,
        invalid_signature=True,
        unrecognized_client=True,
        max_clock_skew_seconds=60.0,
        seed=3,
        burst=2.0,
    )
    assert not parse_args(["--no-expired-token"])[2].expired_token
    with pytest.raises(SystemExit):
        parse_args(["--access-denied-reason", ""])
