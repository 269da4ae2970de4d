"""Build a CreateRelationship request and its deterministic idempotency token."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from include.partner_central.service_model import create_request_fields, snake_case

TOKEN_PREFIX = "pcrel-"  # noqa: S105 - a prefix of idempotency tokens, not a secret


def pma_id(identifier: str) -> str:
    """The bare `pma-...` id, whether the caller gave the id or its ARN."""
    return identifier.rsplit("/", 1)[-1]


def client_token_for(
    catalog: str,
    program_management_account_identifier: str,
    associated_account_id: str | None,
    association_type: str,
    display_name: str | None = None,
) -> str:
    """The same relationship always gets the same token, so retries, re-runs and backfills cannot create it twice.

    The identity is catalog, program management account, associated account and association type; a relationship
    without an associated account is told apart by its display name. 6 + 58 = 64 printable ASCII characters.
    """
    identity = [catalog, pma_id(program_management_account_identifier), associated_account_id or "", association_type]
    if not associated_account_id:
        identity.append(display_name or "")
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    return TOKEN_PREFIX + digest[:58]


def tag_list(tags: Mapping[str, str] | list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    if tags is None:
        return None
    if isinstance(tags, Mapping):
        return [{"key": key, "value": value} for key, value in tags.items()]
    return list(tags)


@functools.cache
def _field_names() -> dict[str, str]:
    """snake_case argument → the model's camelCase field."""
    return {snake_case(name): name for name in create_request_fields()}


def build_create_request(**fields: Any) -> dict[str, Any]:
    """The API's request from snake_case fields named after the model; empty optional fields are left out.

    The clientToken is always set: botocore would otherwise invent a random one and a retry could create a second
    relationship.
    """
    names = _field_names()
    if not names.keys() >= fields.keys():
        unknown = sorted(fields.keys() - names.keys())
        raise TypeError(f"CreateRelationship has no field(s) {', '.join(unknown)}; it has {', '.join(names)}")
    request = {}
    for key, value in fields.items():  # one pass: the sync builds a million of these on a large feed
        wire = _wire_value(value)
        if wire not in (None, "", [], {}):
            request[names[key]] = wire
    if "clientToken" not in request:
        request["clientToken"] = client_token_for(
            request.get("catalog", ""),
            request.get("programManagementAccountIdentifier", ""),
            request.get("associatedAccountId"),
            request.get("associationType", ""),
            request.get("displayName"),
        )
    if "tags" in request:
        request["tags"] = tag_list(request["tags"])
    return request


def _wire_value(value: Any) -> Any:
    if value is None or type(value) is str:  # most values: no further checks (a million rows on a large feed)
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    return value


def describe(request: Mapping[str, Any]) -> str:
    """A log-safe name of the relationship: no token, no tags."""
    return (
        f"{request.get('associationType')} {request.get('associatedAccountId') or request.get('displayName')} "
        f"in {request.get('catalog')}/{pma_id(str(request.get('programManagementAccountIdentifier')))}"
    )
