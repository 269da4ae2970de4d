"""Validate a request against the installed service model, as the service itself does.

botocore's own ParamValidator checks required members, types, minimum lengths and unions, but not enums, maximum
lengths or patterns; the service checks all of them. This walks the model and reports every failure, so the emulator
can answer ValidationException like AWS and the data-quality checks can name each broken rule before a call.
Patterns in the model are Java regular expressions (\\p{L} ...): the `regex` module reads them, matched whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import Any

import regex

from include.partner_central.service_model import input_shape


@dataclass(frozen=True)
class FieldError:
    name: str
    code: str
    message: str

    def as_api_field(self) -> dict[str, str]:
        return {"name": self.name, "code": self.code, "message": self.message}


@cache
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def validate_request(params: Any, operation: str = "CreateRelationship") -> list[FieldError]:
    errors: list[FieldError] = []
    _validate(input_shape(operation), params, "", errors)
    return errors


def validate_value(shape: Any, value: Any, name: str) -> list[FieldError]:
    errors: list[FieldError] = []
    _validate(shape, value, name, errors)
    return errors


def _validate(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    check = _CHECKS.get(shape.type_name)
    if check is not None:
        check(shape, value, path, errors)


def _structure(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, dict):
        errors.append(FieldError(path or "request", "INVALID_TYPE", f"{path or 'request'} must be an object"))
        return
    prefix = f"{path}." if path else ""
    for name in shape.required_members:
        if value.get(name) is None:
            errors.append(FieldError(prefix + name, "REQUIRED_FIELD_MISSING", f"{prefix + name} is required"))
    for name, member_value in value.items():
        if name not in shape.members:
            errors.append(FieldError(prefix + name, "UNKNOWN_FIELD", f"{prefix + name} is not a known field"))
        elif member_value is not None:
            _validate(shape.members[name], member_value, prefix + name, errors)
    if shape.is_tagged_union:
        present = [name for name in shape.members if value.get(name) is not None]
        if len(present) != 1:
            errors.append(
                FieldError(
                    path,
                    "INVALID_UNION",
                    f"{path} must set exactly one of {', '.join(shape.members)}; it sets {len(present)}",
                )
            )


def _list(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, list):
        errors.append(FieldError(path, "INVALID_TYPE", f"{path} must be a list"))
        return
    _length(shape, len(value), path, errors, "items")
    for index, item in enumerate(value):
        _validate(shape.member, item, f"{path}[{index}]", errors)


def _length(shape: Any, length: int, path: str, errors: list[FieldError], unit: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and length < low:
        errors.append(FieldError(path, "TOO_SHORT", f"{path} must have at least {low} {unit}, has {length}"))
    if high is not None and length > high:
        errors.append(FieldError(path, "TOO_LONG", f"{path} must have at most {high} {unit}, has {length}"))


def _string(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, str):
        errors.append(FieldError(path, "INVALID_TYPE", f"{path} must be a string"))
        return
    if shape.enum:
        if value not in shape.enum:
            errors.append(FieldError(path, "INVALID_ENUM_VALUE", f"{path} must be one of {', '.join(shape.enum)}"))
        return
    _length(shape, len(value), path, errors, "characters")
    pattern = shape.metadata.get("pattern")
    if pattern and not _compiled(pattern).fullmatch(value):
        errors.append(FieldError(path, "INVALID_PATTERN", f"{path} must match the pattern {pattern}"))


def _integer(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        errors.append(FieldError(path, "INVALID_TYPE", f"{path} must be an integer"))
        return
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        errors.append(FieldError(path, "OUT_OF_RANGE", f"{path} must be between {low} and {high}"))


def _timestamp(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return
        except ValueError:
            pass
    errors.append(FieldError(path, "INVALID_TYPE", f"{path} must be an ISO 8601 timestamp"))


def _boolean(shape: Any, value: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, bool):
        errors.append(FieldError(path, "INVALID_TYPE", f"{path} must be a boolean"))


_CHECKS = {
    "structure": _structure,
    "list": _list,
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "timestamp": _timestamp,
    "boolean": _boolean,
}
