"""The JSON Schemas tools/list advertises: lean, and one output schema for success and error.

A tool's output schema describes both of its results, because clients check every
``structuredContent`` against it, errors included (the official TypeScript client does, with
ajv)::

    {"type": "object",
     "properties": {...the success fields..., "error": {"$ref": "#/$defs/Error"}},
     "anyOf": [{"required": [...the success fields...]}, {"required": ["error"]}],
     "$defs": {"Error": {...}, ...the shapes the success fields share...}}

A success body has its fields and no ``error``; a failure body is ``{"error": {...}}`` alone.
Shared shapes stay ``$defs`` references, so a receipt or a booking is described once per
tool. Both kinds of schema lose what a reader gains nothing from: pydantic's ``title`` on every
field, the ``null`` branch of an optional argument (leaving it out means the same), the
``default`` of an output field. Schemas carry no ``$schema``: clients read them in their
default dialect (2020-12 for the spec, draft-07 for ajv), and both agree on what is used here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "status", "message", "details", "next_step"],
}
"""The body of every failure, ``{"error": {...}}``; its text says the same for the model."""

_BEYOND_ANY_ID = 2**31 - 1  # INTEGER's top; BIGINT's is further still

# Keywords whose value is a mapping of names to schemas, or a list of schemas, or one schema.
_NAMED = ("properties", "$defs", "patternProperties")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SINGLE = ("items", "additionalProperties", "not", "contains", "propertyNames")


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The arguments of a tool, as clients build calls from them (the tool's description
    says what the model's docstring would)."""
    schema: dict[str, Any] = _lean(model.model_json_schema(), output=False)
    schema.pop("description", None)
    return schema


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Every result of a tool: its success body or the error body (see the module docstring).

    Only the top level is described (each field and its type): a result's text renders it for
    the model, and a client that checks results needs no more to accept them.
    """
    full = model.model_json_schema(mode="serialization")
    defs = full.get("$defs", {})
    properties = {name: _shallow(prop, defs) for name, prop in full.get("properties", {}).items()}
    properties["error"] = ERROR_SCHEMA
    return {
        "type": "object",
        "properties": properties,
        "anyOf": [{"required": full.get("required", [])}, {"required": ["error"]}],
    }


def _shallow(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON type(s) alone: ``{"type": "object"}``, ``{"type": ["integer", "null"]}``."""
    kinds: list[str] = []
    for branch in prop.get("anyOf", [prop]):
        ref = branch.get("$ref")
        target = defs.get(ref.removeprefix("#/$defs/"), {}) if isinstance(ref, str) else branch
        kind = target.get("type", "object" if "properties" in target else None)
        if kind is None and "enum" in target:
            kind = "string"
        if kind is None:
            return {}  # anything
        for k in kind if isinstance(kind, list) else [kind]:
            if k not in kinds:
                kinds.append(k)
    return {"type": kinds[0] if len(kinds) == 1 else kinds}


def _lean(node: Any, *, output: bool) -> Any:
    if isinstance(node, list):
        return [_lean(item, output=output) for item in node]
    if not isinstance(node, dict):
        return node
    node = _without_null_branch(node, output=output)
    lean: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and (output or value in ("", [], {}))):
            continue  # an empty default means the same as leaving the argument out
        if key == "additionalProperties" and value is True:
            continue  # the default
        if key == "maximum" and isinstance(value, int) and value >= _BEYOND_ANY_ID:
            continue  # a database's integer range, not a limit a caller can meet
        if key in _NAMED and isinstance(value, dict):
            lean[key] = {name: _lean(sub, output=output) for name, sub in value.items()}
        elif key in _LISTS or key in _SINGLE:
            lean[key] = _lean(value, output=output)
        else:
            lean[key] = value
    return lean


def _without_null_branch(node: dict[str, Any], *, output: bool) -> dict[str, Any]:
    """``anyOf: [X, {"type": "null"}]`` as X (an argument one may leave out) or, in an output,
    as X with ``"null"`` among its types when X is a plain typed schema."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    other = next(b for b in branches if b != {"type": "null"})
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if not output:
        if "default" not in rest or rest["default"] is not None:
            return node  # null is a value the caller may have to send
        rest.pop("default")
        return {**other, **rest}
    kind = other.get("type")
    if isinstance(kind, str) and "$ref" not in other:
        return {**other, "type": [kind, "null"], **rest}
    return node
