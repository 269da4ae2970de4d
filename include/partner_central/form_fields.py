"""JSON-schema descriptions of the CreateRelationship fields, for Airflow's trigger form, read from the model."""

from __future__ import annotations

from typing import Any

from include.partner_central.service_model import (
    create_request_fields,
    documentation,
    member_shape,
    required_create_fields,
    snake_case,
)

# clientToken is derived from the relationship; startDate and the structured fields have their own inputs.
NOT_IN_FORM = {"clientToken"}


def create_form_fields(defaults: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Keyword arguments of one `Param` per request field (snake_case name → schema), required fields first."""
    defaults = defaults or {}
    required = set(required_create_fields())
    ordered = sorted(create_request_fields(), key=lambda name: name not in required)
    form: dict[str, dict[str, Any]] = {}
    for name in ordered:
        if name in NOT_IN_FORM:
            continue
        key = snake_case(name)
        form[key] = _schema(name, name in required, defaults.get(key))
    return form


def _schema(name: str, required: bool, default: Any) -> dict[str, Any]:
    shape = member_shape(name)
    title = snake_case(name).replace("_", " ").capitalize()
    schema: dict[str, Any] = {"title": title, "description": documentation(name)}
    if shape.type_name == "string":
        schema["type"] = "string" if required else ["null", "string"]
        if shape.enum:
            schema["enum"] = list(shape.enum) if required else [None, *shape.enum]
        else:
            meta = shape.metadata
            if "min" in meta:
                schema["minLength"] = meta["min"]
            if "max" in meta:
                schema["maxLength"] = meta["max"]
            # Java's \p{..} classes mean nothing to the form's JSON-schema engines; the API still checks them.
            if "pattern" in meta and "\\p" not in meta["pattern"]:
                schema["pattern"] = f"^(?:{meta['pattern']})$"
    elif shape.type_name == "timestamp":
        schema.update(type=["null", "string"], format="date")
    else:
        schema["type"] = ["null", "object", "array"] if shape.type_name == "list" else ["null", "object"]
        schema["description"] += _structure_hint(name)
    schema["default"] = default
    return schema


def _structure_hint(name: str) -> str:
    if name == "tags":
        return ' As JSON, e.g. {"team": "alliances"}.'
    if name == "requestedSupportPlan":
        members = ", ".join(member_shape(name).members)
        return f' As JSON with exactly one of {members}, e.g. {{"partnerLedSupport": {{"coverage": ...}}}}.'
    return ""
