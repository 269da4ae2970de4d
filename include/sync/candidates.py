"""One candidate row: its normalisation, the checks that need Python (JSON fields), its identity and its request.

Normalisation, applied before any check: leading and trailing whitespace is trimmed from every text value, and an
empty optional value counts as missing. Nothing else changes: no case folding (an enum in the wrong case is a feed
bug to report), and an account id is never padded (one stored as a number has lost its leading zeros, which is
exactly what the 12-digit rule must catch).
"""

from __future__ import annotations

import json
from typing import Any

from include.partner_central.relationship_request import build_create_request, pma_id, tag_list
from include.partner_central.service_model import member_shape, snake_case
from include.partner_central.validation import validate_value

# Candidate column → CreateRelationship field, for the columns that map one to one.
COLUMN_FIELDS = {
    snake_case(name): name
    for name in (
        "catalog",
        "associationType",
        "programManagementAccountIdentifier",
        "associatedAccountId",
        "displayName",
        "resaleAccountModel",
        "sector",
        "accountScope",
    )
}
REQUIRED_COLUMNS = (
    "candidate_id",
    "catalog",
    "association_type",
    "program_management_account_identifier",
    "associated_account_id",
    "display_name",
    "sector",
)
JSON_COLUMNS = {"support_plan": "requestedSupportPlan", "tags": "tags"}

Identity = tuple[str, str, str, str]


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    clean = dict(row)
    for column in (*COLUMN_FIELDS, *JSON_COLUMNS, "candidate_id"):
        value = clean.get(column)
        if value is None:
            continue
        text = str(value).strip()
        clean[column] = None if text == "" and column not in REQUIRED_COLUMNS else text
    return clean


def json_problem(column: str, text: str | None) -> str | None:
    """What is wrong with a JSON column (support_plan, tags), checked against the model's shape; None if fine."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"{column} is not valid JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return f"{column} must be a JSON object"
    if column == "tags":
        if not all(isinstance(v, str) for v in value.values()):
            return "tags values must be strings"
        value = tag_list(value)
    errors = validate_value(member_shape(JSON_COLUMNS[column]), value, column)
    return "; ".join(error.message for error in errors) or None


def identity(row: dict[str, Any]) -> Identity | None:
    """The relationship a candidate stands for: catalog, PMA, associated account, association type."""
    parts = (
        row.get("catalog"),
        row.get("program_management_account_identifier"),
        row.get("associated_account_id"),
        row.get("association_type"),
    )
    if not all(parts):
        return None
    catalog, pma, account, association_type = parts
    return (catalog, pma_id(pma), account, association_type)


def fields_for(row: dict[str, Any]) -> dict[str, Any]:
    """The CreateRelationship fields of a normalised, checked candidate, by their snake_case (operator) names."""
    fields = {column: row.get(column) for column in COLUMN_FIELDS}
    if row.get("support_plan"):
        fields["requested_support_plan"] = json.loads(row["support_plan"])
    if row.get("tags"):
        fields["tags"] = json.loads(row["tags"])
    return fields


def request_for(row: dict[str, Any]) -> dict[str, Any]:
    """The CreateRelationship request of a normalised, checked candidate."""
    return build_create_request(**fields_for(row))
