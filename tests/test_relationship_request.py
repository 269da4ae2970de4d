from __future__ import annotations

import datetime as dt
import string

import pytest

from include.partner_central.relationship_request import build_create_request, client_token_for
from include.partner_central.service_model import field_limits
from tests.factories import PMA, relationship_fields

ARN = f"arn:aws:partnercentral:us-east-1:123456789012:catalog/Sandbox/program-management-account/{PMA}"


def test_token_is_deterministic_printable_and_within_the_model_limit():
    token = client_token_for("Sandbox", PMA, "012345678901", "END_CUSTOMER")
    assert token == client_token_for("Sandbox", PMA, "012345678901", "END_CUSTOMER")
    assert 1 <= len(token) <= field_limits("clientToken").max_length
    assert set(token) <= set(string.printable) - set(string.whitespace)


def test_token_is_the_same_for_a_pma_id_and_its_arn():
    assert client_token_for("Sandbox", PMA, "012345678901", "END_CUSTOMER") == client_token_for(
        "Sandbox", ARN, "012345678901", "END_CUSTOMER"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"catalog": "AWS"},
        {"program_management_account_identifier": "pma-other12345678"},
        {"associated_account_id": "999999999999"},
        {"association_type": "DOWNSTREAM_SELLER"},
    ],
)
def test_token_changes_with_each_part_of_the_identity(change):
    base = build_create_request(**relationship_fields())
    other = build_create_request(**relationship_fields(**change))
    assert base["clientToken"] != other["clientToken"]


def test_token_ignores_fields_outside_the_identity():
    base = build_create_request(**relationship_fields())
    renamed = build_create_request(**relationship_fields(display_name="New Name", sector="GOVERNMENT"))
    assert base["clientToken"] == renamed["clientToken"]


def test_explicit_token_wins():
    assert build_create_request(**relationship_fields(client_token="mine"))["clientToken"] == "mine"


def test_request_uses_the_model_names_and_drops_empty_fields():
    request = build_create_request(
        **relationship_fields(resale_account_model="", tags={"team": "x"}, start_date=dt.date(2027, 1, 1))
    )
    assert request["associationType"] == "END_CUSTOMER"
    assert "resaleAccountModel" not in request
    assert request["tags"] == [{"key": "team", "value": "x"}]
    assert request["startDate"] == "2027-01-01"


def test_unknown_field_is_named():
    with pytest.raises(TypeError, match="no field\\(s\\) colour"):
        build_create_request(**relationship_fields(colour="blue"))
