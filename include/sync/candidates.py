"""One candidate row: its normalisation, the checks that need Python (types, JSON fields), its fingerprint, its
identity and its request.

Normalisation, applied before any check: leading and trailing whitespace is trimmed from every text value, and an
empty optional value counts as missing. Native column types are read as a user would expect: JSON/JSONB values the
driver decoded, numeric ids (written as digits: an account id that lost its leading zeros is then caught by the
12-digit rule, never padded), timestamps with or without a time zone (naive means UTC), ISO-8601 text and epoch
seconds. Nothing else changes: no case folding (an enum in the wrong case is a feed bug to report).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from include.partner_central.relationship_request import build_create_request, client_token_for, pma_id, tag_list
from include.partner_central.service_model import member_shape
from include.partner_central.validation import validate_value
from include.vocabulary import COLUMN_FIELDS, DESIRED_STATE_COLUMN, DESIRED_STATES, JSON_COLUMNS, PRESENT

REQUIRED_COLUMNS = (
    "candidate_id",
    "catalog",
    "association_type",
    "program_management_account_identifier",
    "associated_account_id",
    "display_name",
    "sector",
)

Identity = tuple[str, str, str, str]


# Not a column's rule: a view without a primary key can repeat an id, and no copy can then be told apart.
DUPLICATE_ID_RULE = "candidate_id: unique in the candidates table (every copy is rejected)"
# The columns whose values make the request: a change in any of them is a change of what would be sent.
SENT_COLUMNS = (*COLUMN_FIELDS, *JSON_COLUMNS)
# Columns that may hold numbers (an id column typed NUMBER/BIGINT): read as their digits.
NUMERIC_ID_COLUMNS = ("candidate_id", "associated_account_id")


def candidate_key(value: Any) -> str | None:
    """A candidate id as it is stored and compared everywhere (tables, Params, joins): trimmed text, digits for a
    numeric id; None when there is no usable id."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, decimal.Decimal, float)):
        text = _digits(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    return text or None


def _digits(value: int | float | decimal.Decimal) -> str:
    """A number as the id it stands for: integral values without a fraction or exponent (12345.0 → "12345")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, decimal.Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return str(value)


# A MySQL/MariaDB DATETIME of no date ('0000-00-00 00:00:00'), as it reads when the scan reads it as text.
MYSQL_ZERO_DATE = "0000-00-00"
# Every column normalised to text: what is sent, and the id.
TEXT_COLUMNS = (*SENT_COLUMNS, "candidate_id")
OPTIONAL_COLUMNS = frozenset(column for column in TEXT_COLUMNS if column not in REQUIRED_COLUMNS)


def clean_values(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The row with every value but updated_at as text (JSON re-encoded, ids as digits), and what is wrong with the
    types. Runs once per candidate per run, a million times on a large feed: plain text takes the short path."""
    clean = dict(row)
    problems: list[str] = []
    for column in TEXT_COLUMNS:
        value = clean.get(column)
        if value is None:
            continue
        if isinstance(value, str):
            text = value.strip()
        elif column in JSON_COLUMNS and isinstance(value, (dict, list)):
            text = json.dumps(value)
        elif (
            column in NUMERIC_ID_COLUMNS
            and isinstance(value, (int, float, decimal.Decimal))
            and not isinstance(value, bool)
        ):
            text = _digits(value)
        else:
            problems.append(f"{column}: expected {_expected(column)}, got {type(value).__name__} {value!r:.40}")
            text = str(value).strip()
        clean[column] = None if not text and column in OPTIONAL_COLUMNS else text
    return clean, problems


def normalise(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """clean_values, and updated_at as an aware UTC datetime."""
    clean, problems = clean_values(row)
    clean["updated_at"], problem = parse_timestamp(row.get("updated_at"))
    return clean, problems + ([problem] if problem else [])


def desired_state(value: Any) -> tuple[str, str | None]:
    """The row's desired_state (present when NULL, empty or the column is missing), and what is wrong with it: an
    unknown value is a feed bug to report, never read as either state."""
    text = value.strip() if isinstance(value, str) else value
    if text is None or text == "":
        return PRESENT, None
    if text in DESIRED_STATES:
        return text, None
    return PRESENT, (
        f"{DESIRED_STATE_COLUMN}: expected one of {', '.join(DESIRED_STATES)} (or empty), got {value!r:.40}"
    )


def _expected(column: str) -> str:
    if column in JSON_COLUMNS:
        return "JSON (text or a JSON column)"
    return "text or digits" if column in NUMERIC_ID_COLUMNS else "text"


def parse_timestamp(value: Any) -> tuple[dt.datetime | None, str | None]:
    """updated_at as an aware UTC datetime, or the reason it is not one. NULL is fine: the fingerprint, not the
    timestamp, says whether a row changed; the timestamp only places it in a data interval."""
    if value is None:
        return None, None
    try:
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime.combine(value, dt.time())
        elif isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
            parsed = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
        elif isinstance(value, str) and value.strip().startswith(MYSQL_ZERO_DATE):
            return None, None  # MySQL/MariaDB's zero date, which their drivers read as NULL
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                parsed = dt.datetime.fromtimestamp(float(text), dt.timezone.utc)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        return None, (
            f"updated_at: not a timestamp ({value!r:.40}); use a timestamp column, ISO-8601 text or epoch seconds"
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc), None


def fingerprint(row: dict[str, Any]) -> str:
    """A digest of what a cleaned row would send: equal fingerprints, same request. The values are text or None, joined
    by control characters that no valid value holds (the model forbids them)."""
    return _digest("\x00" if (value := row.get(column)) is None else value for column in SENT_COLUMNS)


def quick_fingerprint(raw: Mapping[str, Any]) -> str | None:
    """fingerprint(clean_values(raw)[0]) for a row whose values are all text or NULL, as most rows of a feed are,
    without building the cleaned row (the triage's path for the converged million); None when a value needs
    clean_values (a number, a decoded JSON value, a wrong type)."""
    parts = []
    for column in SENT_COLUMNS:
        value = raw[column]
        if value is None:
            parts.append("\x00")
        elif type(value) is str:
            text = value.strip()
            parts.append("\x00" if not text and column in OPTIONAL_COLUMNS else text)
        else:
            return None
    return _digest(parts)


def _digest(parts: Iterable[str]) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=65_536)
def json_problem(column: str, text: str | None) -> str | None:
    """What is wrong with a JSON column (support_plan, tags), checked against the model's shape; None if fine.
    Cached: a feed repeats the same few support plans and tag sets across many rows."""
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


def identity_token(row: dict[str, Any]) -> str | None:
    """The deterministic client token of the relationship a candidate stands for: the identity as it is recorded
    with each outcome, so that who holds a relationship is decided by what was sent, not by today's feed."""
    key = identity(row)
    return None if key is None else client_token_for(*key)


def fields_for(row: dict[str, Any]) -> dict[str, Any]:
    """The CreateRelationship fields of a normalised, checked candidate, by their snake_case (operator) names."""
    fields = {column: row.get(column) for column in COLUMN_FIELDS}
    if row.get("support_plan"):
        fields["requested_support_plan"] = json.loads(row["support_plan"])
    if row.get("tags"):
        fields["tags"] = json.loads(row["tags"])
    return fields


def request_for(row: dict[str, Any]) -> dict[str, Any]:
    """The CreateRelationship request of a normalised, checked candidate (with the `client_token` the triage
    computed, when the row has it)."""
    return build_create_request(**fields_for(row), client_token=row.get("client_token"))
