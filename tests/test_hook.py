"""PartnerCentralChannelHook's read methods over real HTTP against the emulator: no mocks of boto3 or the hook."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.rate_limit import AdaptiveRateLimiter
from include.partner_central.relationship_request import build_create_request
from include.partner_central.service_model import service_model
from tests.factories import PMA, account, relationship_fields


@pytest.fixture
def hook(emulator) -> PartnerCentralChannelHook:
    emulator.emulator.configure({"create_rate": 1000, "read_rate": 1000})
    return PartnerCentralChannelHook()


def create(hook: PartnerCentralChannelHook, n: int, **overrides) -> dict:
    request = build_create_request(**relationship_fields(associated_account_id=account(n), **overrides))
    return hook.create_relationship(request, limiter=AdaptiveRateLimiter(1000)).as_dict()


def reads(emulator, operation: str) -> list[dict]:
    return [call for call in emulator.emulator.call_log() if call["operation"] == operation]


def test_service_model_is_the_model_of_the_hooks_client(hook):
    # service_model() reads the model without a botocore session (parse time); the client's session must agree.
    ours, clients = service_model(), hook.conn.meta.service_model
    assert (ours.api_version, ours.metadata, ours.operation_names) == (
        clients.api_version,
        clients.metadata,
        clients.operation_names,
    )
    assert ours.shape_names == clients.shape_names
    for name in ours.shape_names:
        shape, client_shape = ours.shape_for(name), clients.shape_for(name)
        assert (shape.type_name, shape.metadata, shape.documentation) == (
            client_shape.type_name,
            client_shape.metadata,
            client_shape.documentation,
        )
        assert list(getattr(shape, "members", {})) == list(getattr(client_shape, "members", {}))


def test_get_relationship_returns_its_detail_by_id_or_arn(hook, emulator):
    created = create(hook, 1, display_name="Northwind Traders")

    by_id = hook.get_relationship(
        catalog="Sandbox", program_management_account_identifier=PMA, identifier=created["relationship_id"]
    )
    by_arn = hook.get_relationship(
        catalog="Sandbox", program_management_account_identifier=PMA, identifier=created["relationship_arn"]
    )

    assert by_id == by_arn
    assert by_id["id"] == created["relationship_id"]
    assert by_id["arn"] == created["relationship_arn"]
    assert by_id["associatedAccountId"] == account(1)
    assert by_id["displayName"] == "Northwind Traders"
    assert len(reads(emulator, "GetRelationship")) == 2


def test_get_relationship_of_an_unknown_id_raises_the_api_error(hook):
    with pytest.raises(ClientError) as raised:
        hook.get_relationship(
            catalog="Sandbox", program_management_account_identifier=PMA, identifier="rs-0000000000000"
        )
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_list_relationships_follows_every_page(hook, emulator):
    ids = {create(hook, n)["relationship_id"] for n in range(5)}

    items = hook.list_relationships(catalog="Sandbox", page_size=2)

    assert {item["id"] for item in items} == ids
    assert all(isinstance(item, dict) and item["catalog"] == "Sandbox" for item in items)
    pages = reads(emulator, "ListRelationships")
    assert len(pages) == 3  # 2 + 2 + 1


def test_list_relationships_filters_and_sorts(hook):
    for n in range(3):
        create(hook, n, association_type="END_CUSTOMER")
    seller = create(hook, 3, association_type="DOWNSTREAM_SELLER", display_name="Contoso Retail")

    [only] = hook.list_relationships(catalog="Sandbox", associated_account_ids=[account(3)])
    by_type = hook.list_relationships(
        catalog="Sandbox", association_types=["END_CUSTOMER"], program_management_account_identifiers=[PMA]
    )
    newest_first = hook.list_relationships(catalog="Sandbox", sort={"sortBy": "UpdatedAt", "sortOrder": "Descending"})

    assert only["id"] == seller["relationship_id"]
    assert len(by_type) == 3 and seller["relationship_id"] not in {item["id"] for item in by_type}
    assert newest_first[0]["id"] == seller["relationship_id"]
    assert hook.list_relationships(catalog="AWS") == []
