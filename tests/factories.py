"""Valid CreateRelationship inputs to start each test from."""

from __future__ import annotations

from typing import Any

PMA = "pma-test123456789"


def relationship_fields(**overrides: Any) -> dict[str, Any]:
    fields = {
        "catalog": "Sandbox",
        "association_type": "END_CUSTOMER",
        "program_management_account_identifier": PMA,
        "associated_account_id": "012345678901",
        "display_name": "Example Customer",
        "sector": "COMMERCIAL",
    }
    fields.update(overrides)
    return fields


def account(n: int) -> str:
    return f"{n:012d}"
