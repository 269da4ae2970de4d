"""The installed botocore model of Partner Central Channel: the one source of the API's fields, enums and limits.

Everything that needs to know what a valid request looks like (the operator's arguments, the UI form, the emulator,
the data-quality suite) asks this module instead of repeating the model by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

SERVICE_NAME = "partnercentral-channel"
CREATE_OPERATION = "CreateRelationship"


@cache
def service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICE_NAME)


def input_shape(operation: str = CREATE_OPERATION) -> Any:
    return service_model().operation_model(operation).input_shape


def create_request_fields() -> list[str]:
    """Request members of CreateRelationship in model order (camelCase, as the API spells them)."""
    return list(input_shape().members)


def required_create_fields() -> list[str]:
    return list(input_shape().required_members)


def member_shape(field: str, operation: str = CREATE_OPERATION) -> Any:
    return input_shape(operation).members[field]


def documentation(field: str, operation: str = CREATE_OPERATION) -> str:
    """The model's documentation of a member, without its HTML tags."""
    return re.sub(r"<[^>]+>", "", member_shape(field, operation).documentation or "").strip()


@dataclass(frozen=True)
class Limits:
    min_length: int | None
    max_length: int | None
    pattern: str | None


def string_limits(shape: Any) -> Limits:
    meta = shape.metadata
    return Limits(meta.get("min"), meta.get("max"), meta.get("pattern"))


def field_limits(field: str, operation: str = CREATE_OPERATION) -> Limits:
    return string_limits(member_shape(field, operation))


@cache
def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
