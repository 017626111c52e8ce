"""The base model and the CEL helper every API module shares (no imports of our own)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict


def cel(
    rule: str,
    message: str,
    field_path: str | None = None,
    *,
    message_expression: str | None = None,
) -> JsonDict:
    """One `x-kubernetes-validations` entry; `fieldPath` makes the error name the field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
