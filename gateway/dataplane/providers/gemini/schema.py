"""JSON Schema → the OpenAPI subset Gemini takes (response schemas and tool parameters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.dataplane.providers.base import JsonObject
from gateway.dataplane.providers.gemini.errors import bad, unsupported

SCHEMA_KEYS = ("description", "minItems", "maxItems", "minimum", "maximum")
FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def gemini_schema(schema: Any, *, param: str, ordering: bool = False) -> JsonObject:
    """A JSON Schema in the subset Gemini accepts: upper-case types, ``anyOf`` with null as
    ``nullable``, ``$ref`` inlined, and no keywords Gemini rejects (``additionalProperties``,
    ``$schema``, ``default``, ``examples``, ``title``, ``pattern``, ...). Dropping a keyword
    only loosens the schema. ``ordering`` adds ``propertyOrdering`` (Gemini otherwise
    answers with the properties sorted by name)."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _schema(schema, defs, (), param, ordering)


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node) == 1


def _resolve(
    node: JsonObject, defs: JsonObject, seen: tuple[str, ...], param: str
) -> tuple[JsonObject, tuple[str, ...]]:
    while "$ref" in node:
        ref = str(node["$ref"])
        name = ref.rsplit("/", 1)[-1]
        if name in seen or ref == "#":
            raise unsupported(param, f"the schema refers to itself ({ref}).")
        if name not in defs:
            raise bad(f"{param}: unknown schema reference {ref}.", param)
        seen = (*seen, name)
        node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node.get("allOf"), list):
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            # Each part's own references stay its own: a sibling reusing them is no cycle.
            part = _resolve(part, defs, seen, param)[0] if isinstance(part, dict) else {}
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        node = merged
    return node, seen


def _schema(
    node: Any, defs: JsonObject, seen: tuple[str, ...], param: str, ordering: bool
) -> JsonObject:
    if not isinstance(node, dict):
        return {}
    node, seen = _resolve(node, defs, seen, param)

    def convert(child: Any) -> JsonObject:
        return _schema(child, defs, seen, param, ordering)

    types, options, nullable = _alternatives(node)
    out: dict[str, Any] = {}
    if len(options) == 1 and not types:  # anyOf: [X, null] is X, nullable
        out = convert(options[0])
    elif options:
        out["anyOf"] = [convert(o) for o in options]
    if types:
        out["type"] = types[0].upper()
    if nullable:
        out["nullable"] = True
    _copy_keywords(node, out)
    if isinstance(node.get("items"), dict):
        out["items"] = convert(node["items"])
    _copy_properties(node, out, convert, ordering)
    return out


def _alternatives(node: JsonObject) -> tuple[list[Any], list[Any], bool]:
    """(types, ``anyOf`` options, nullable): null, as a type or an option, becomes
    ``nullable``, and several types become options of one type each."""
    declared = node.get("type")
    types = declared if isinstance(declared, list) else [declared] if declared else []
    nullable = bool(node.get("nullable")) or "null" in types
    types = [t for t in types if t in TYPES]
    options = node.get("anyOf") or node.get("oneOf") or []
    nullable = nullable or any(_is_null(o) for o in options)
    options = [o for o in options if not _is_null(o)]
    if len(types) > 1:  # ["string", "integer"] → anyOf, each branch with its own type
        rest = {k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf")}
        options, types = [{**rest, "type": t} for t in types], []
    return types, options, nullable


def _copy_keywords(node: JsonObject, out: JsonObject) -> None:
    """The keywords Gemini takes as they are: ``SCHEMA_KEYS``, string enums, formats."""
    for key in SCHEMA_KEYS:
        if key in node:
            out[key] = node[key]
    enum = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(enum, list) and None in enum:
        out["nullable"], enum = True, [v for v in enum if v is not None]
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        out["enum"] = enum  # Gemini enums are strings only; others are dropped
        out.setdefault("type", "STRING")
    if node.get("format") in FORMATS.get(out.get("type", ""), ()):
        out["format"] = node["format"]


def _copy_properties(
    node: JsonObject, out: JsonObject, convert: Callable[[Any], JsonObject], ordering: bool
) -> None:
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties:
        return
    out["properties"] = {name: convert(p) for name, p in properties.items()}
    required = [r for r in node.get("required") or [] if r in properties]
    if required:
        out["required"] = list(dict.fromkeys(required))
    if ordering:
        out["propertyOrdering"] = list(properties)
