"""The installed botocore model of Partner Central Channel: the one source of the API's fields, enums and limits.

Everything that needs to know what a valid request looks like (the operator's arguments, the UI form, the emulator,
the data-quality suite) asks this module instead of repeating the model by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

SERVICE_NAME = "partnercentral-channel"
CREATE_OPERATION = "CreateRelationship"
SERVICE_TYPE = "service-2"


@cache
def service_model() -> Any:
    """The model a botocore client of the service uses: its latest API version in botocore's data paths (with
    AWS_DATA_PATH and ~/.aws/models, as a session searches them), with the model's extras.

    Read through botocore's loader, not a session: DAG files build their forms from it at every parse, and a session
    costs ~7 ms of CPU to register its ~120 event handlers while `Loader.load_service_model` first lists the
    directories of all ~450 services (~11 ms); this path reads only the service's own directory (~1.5 ms).
    """
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import ExtrasProcessor, create_loader
    from botocore.model import ServiceModel

    loader = create_loader(os.environ.get("AWS_DATA_PATH"))
    api_version = loader.determine_latest_version(SERVICE_NAME, SERVICE_TYPE)
    path = f"{SERVICE_NAME}/{api_version}/{SERVICE_TYPE}"
    description = loader.load_data(path)
    extras = []
    for extras_type in loader.extras_types:
        with contextlib.suppress(DataNotFoundError):  # most services have no extras
            extras.append(loader.load_data(f"{path}.{extras_type}-extras"))
    ExtrasProcessor().process(description, extras)
    return ServiceModel(description, service_name=SERVICE_NAME)


def input_shape(operation: str = CREATE_OPERATION) -> Any:
    return service_model().operation_model(operation).input_shape


def create_request_fields() -> list[str]:
    """Request members of CreateRelationship in model order (camelCase, as the API spells them)."""
    return list(input_shape().members)


def update_request_fields() -> list[str]:
    """Request members of UpdateRelationship in model order."""
    return list(input_shape("UpdateRelationship").members)


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
