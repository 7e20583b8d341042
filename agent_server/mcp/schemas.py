"""The JSON Schemas tools/list advertises: lean enough for every conversation to carry.

An output schema names the top-level fields of a tool's success body and their JSON types::

    {"type": "object", "properties": {"booking": {"type": "object"}, ...}}

Clients check every ``structuredContent`` against it, errors included (the official TypeScript
client does, with ajv). It requires no field and allows others, so a success body conforms and
so does a failure body, ``{"error": {code, status, message, details, next_step}}``: the server
instructions describe that shape once, and each error's text carries it for the model.

Input schemas lose what a reader gains nothing from: pydantic's ``title`` on every field, the
``null`` branch of an optional argument (leaving it out means the same), an empty default,
a database's integer range, ``examples`` a description already gives, ``$defs`` (each
shared shape is written where it is used) and ``additionalProperties`` (the server refuses an
unknown argument by name). Schemas carry no ``$schema``: clients read them in
their default dialect (2020-12 for the spec, draft-07 for ajv), and both agree on what is used
here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_BEYOND_ANY_ID = 2**31 - 1  # INTEGER's top; BIGINT's is further still

# Keywords whose value is a mapping of names to schemas, or a list of schemas, or one schema.
_NAMED = ("properties", "$defs", "patternProperties")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SINGLE = ("items", "additionalProperties", "not", "contains", "propertyNames")


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The arguments of a tool, as clients build calls from them (the tool's description
    says what the model's docstring would)."""
    full = model.model_json_schema()
    schema: dict[str, Any] = _lean(_inline(full, full.get("$defs", {})))
    schema.pop("$defs", None)
    schema.pop("description", None)
    # The server refuses an unknown argument by name (VALIDATION_ERROR); the listing names
    # the arguments there are.
    schema.pop("additionalProperties", None)
    schema.setdefault("properties", {})  # some clients refuse an object schema without it
    return schema


def output_schema(model: type[BaseModel], *, receipt: bool = True) -> dict[str, Any]:
    """Each top-level field of a tool's success body and its type (see the module docstring);
    ``receipt`` only for a tool that charges (``receipt=False`` leaves it out)."""
    full = model.model_json_schema(mode="serialization")
    defs = full.get("$defs", {})
    properties = {
        name: _shallow(prop, defs)
        for name, prop in full.get("properties", {}).items()
        if receipt or name != "receipt"
    }
    return {"type": "object", "properties": properties}


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


def _inline(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """``node`` with each ``{"$ref": "#/$defs/X", ...}`` replaced by X and the rest of it."""
    if depth > 20:
        raise ValueError("an input model refers to itself; its schema cannot be inlined")
    if isinstance(node, list):
        return [_inline(item, defs, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**defs[ref.removeprefix("#/$defs/")], **rest}, defs, depth + 1)
    return {k: _inline(v, defs, depth + 1) for k, v in node.items() if k != "$defs"}


def _lean(node: Any) -> Any:
    if isinstance(node, list):
        return [_lean(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _without_null_branch(node)
    lean: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value in ("", [], {})):
            continue  # an empty default means the same as leaving the argument out
        if key == "examples" and "e.g." in str(node.get("description", "")):
            continue  # the description shows one already
        if key == "additionalProperties" and value is True:
            continue  # the default
        if key == "maximum" and isinstance(value, int) and value >= _BEYOND_ANY_ID:
            continue  # a database's integer range, not a limit a caller can meet
        if key in _NAMED and isinstance(value, dict):
            lean[key] = {name: _lean(sub) for name, sub in value.items()}
        elif key in _LISTS or key in _SINGLE:
            lean[key] = _lean(value)
        else:
            lean[key] = value
    return lean


def _without_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {"type": "null"}]`` with a null default as X: an argument one may leave
    out (null is not a value the caller has to send)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    other = next(b for b in branches if b != {"type": "null"})
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if "default" not in rest or rest["default"] is not None:
        return node  # null is a value the caller may have to send
    rest.pop("default")
    return {**other, **rest}
