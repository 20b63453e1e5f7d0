"""JSON Schema → the OpenAPI subset Gemini takes (response schemas and tool parameters).

A client's schema is arbitrary JSON: every keyword the conversion reads is checked for its
JSON type first, so a malformed schema is a 400 naming the parameter (and where in the
schema), never a crash. Keywords that are dropped anyway are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aqta.errors import AqtaError
from gateway.dataplane.providers.base import JsonObject
from gateway.dataplane.providers.gemini.errors import bad, invalid, unsupported

SCHEMA_KEYS = ("description", "minItems", "maxItems", "minimum", "maximum")
FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
TYPES = {"string", "number", "integer", "boolean", "array", "object"}
ALTERNATIVES = ("allOf", "anyOf", "oneOf")
# $ref inlining can make a small schema deep or huge (a definition used twice by the next,
# and so on); these bound the work and the recursion. Far beyond what Gemini itself takes.
MAX_DEPTH = 100
MAX_NODES = 10_000


def _is_schema(node: Any) -> bool:
    # true and false are schemas too (anything, nothing); Gemini has neither, so both
    # become an empty schema, which only loosens.
    return isinstance(node, dict | bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_type(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(t, str) for t in value)
    )


# The other keywords the conversion reads: what each must be, and the test of it.
KEYWORD_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "type": ("a string or an array of strings", _is_type),
    "items": ("a schema", lambda v: _is_schema(v) or isinstance(v, list)),
    "enum": ("an array", lambda v: isinstance(v, list)),
    "nullable": ("a boolean", lambda v: isinstance(v, bool)),
    "format": ("a string", lambda v: isinstance(v, str)),
    "$ref": ("a string", lambda v: isinstance(v, str)),
    "description": ("a string", lambda v: isinstance(v, str)),
    **dict.fromkeys(("minItems", "maxItems", "minimum", "maximum"), ("a number", _is_number)),
}


def gemini_schema(schema: Any, *, param: str, ordering: bool = False) -> JsonObject:
    """A JSON Schema in the subset Gemini accepts: upper-case types, ``anyOf`` with null as
    ``nullable``, ``$ref`` inlined, and no keywords Gemini rejects (``additionalProperties``,
    ``$schema``, ``default``, ``examples``, ``title``, ``pattern``, ...). Dropping a keyword
    only loosens the schema. ``ordering`` adds ``propertyOrdering`` (Gemini otherwise
    answers with the properties sorted by name). A malformed schema raises AqtaError (400,
    ``param``)."""
    if not isinstance(schema, dict):
        return {}
    walk = _Walk(param=param, ordering=ordering, defs={})
    for key in ("definitions", "$defs"):
        walk.defs.update(walk.mapping(schema, key, ""))
    return walk.schema(schema, (), "", 0)


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node) == 1


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass
class _Walk:
    param: str
    ordering: bool
    defs: JsonObject
    nodes: int = 0

    # --- errors and checked reads -------------------------------------------------------------

    def malformed(self, where: str, expected: str, value: Any) -> AqtaError:
        place = f" at {where}" if where else ""
        return invalid(
            f"{self.param} is not a valid JSON Schema: {expected} was expected{place}, "
            f"not {_type_name(value)}.",
            self.param,
        )

    def mapping(self, node: JsonObject, key: str, where: str) -> JsonObject:
        """``node[key]``, an object of schemas (``properties``, ``$defs``), or {}."""
        if key not in node:
            return {}
        value = node[key]
        if not isinstance(value, dict):
            raise self.malformed(_at(where, key), "an object of schemas", value)
        for name, member in value.items():
            if not _is_schema(member):
                raise self.malformed(_at(where, f"{key}.{name}"), "a schema", member)
        return value

    def schemas(self, node: JsonObject, key: str, where: str) -> list[Any]:
        """``node[key]``, a list of schemas (``allOf``, ``anyOf``, ``oneOf``), or []."""
        if key not in node:
            return []
        value = node[key]
        if not isinstance(value, list):
            raise self.malformed(_at(where, key), "an array of schemas", value)
        for i, member in enumerate(value):
            if not _is_schema(member):
                raise self.malformed(_at(where, f"{key}[{i}]"), "a schema", member)
        return value

    def strings(self, node: JsonObject, key: str, where: str) -> list[str]:
        """``node[key]``, a list of strings (``required``), or []."""
        if key not in node:
            return []
        value = node[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.malformed(_at(where, key), "an array of strings", value)
        return value

    def check(self, node: JsonObject, where: str) -> None:
        """The JSON types of the keywords the conversion reads from ``node``."""
        self.mapping(node, "properties", where)
        for key in ALTERNATIVES:
            self.schemas(node, key, where)
        self.strings(node, "required", where)
        for key, (expected, fits) in KEYWORD_TYPES.items():
            if key in node and not fits(node[key]):
                raise self.malformed(_at(where, key), expected, node[key])
        if isinstance(node.get("items"), list):  # the old tuple form: none in Gemini, dropped
            self.schemas(node, "items", where)

    # --- conversion ---------------------------------------------------------------------------

    def count(self, depth: int) -> None:
        """One more schema converted, ``depth`` levels down; refused past the bounds."""
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise unsupported(
                self.param, f"the schema is nested more than {MAX_DEPTH} levels deep."
            )
        if self.nodes > MAX_NODES:
            raise unsupported(
                self.param,
                f"the schema has more than {MAX_NODES} parts once references are inlined.",
            )

    def resolve(
        self, node: JsonObject, seen: tuple[str, ...], where: str, depth: int
    ) -> tuple[JsonObject, tuple[str, ...]]:
        self.check(node, where)
        while "$ref" in node:
            node, seen = self.follow(node, seen)
            self.check(node, where)
        if "allOf" in node:
            node = self.merge(node, seen, where, depth)
        return node, seen

    def follow(self, node: JsonObject, seen: tuple[str, ...]) -> tuple[JsonObject, tuple[str, ...]]:
        """``node`` with its ``$ref`` replaced by the definition (siblings win)."""
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        if name in seen or ref == "#":
            raise unsupported(self.param, f"the schema refers to itself ({ref}).")
        if name not in self.defs:
            raise bad(f"{self.param}: unknown schema reference {ref}.", self.param)
        target = self.defs[name]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**(target if isinstance(target, dict) else {}), **rest}, (*seen, name)

    def merge(self, node: JsonObject, seen: tuple[str, ...], where: str, depth: int) -> JsonObject:
        """``allOf`` folded into one schema: properties and required lists joined, the first
        value of any other keyword kept."""
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for i, part in enumerate(node["allOf"]):
            if not isinstance(part, dict):
                continue
            at = _at(where, f"allOf[{i}]")
            self.count(depth + 1)
            # Each part's own references stay its own: a sibling reusing them is no cycle.
            part = self.resolve(part, seen, at, depth + 1)[0]
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**(merged.get("properties") or {}), **value}
                elif key == "required":
                    merged["required"] = [*(merged.get("required") or []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def schema(self, node: Any, seen: tuple[str, ...], where: str, depth: int) -> JsonObject:
        if not isinstance(node, dict):
            return {}
        self.count(depth)
        node, seen = self.resolve(node, seen, where, depth)
        types, options, nullable = self.alternatives(node, where)
        out: dict[str, Any] = {}
        if len(options) == 1 and not types:  # anyOf: [X, null] is X, nullable
            out = self.schema(options[0][1], seen, options[0][0], depth + 1)
        elif options:
            out["anyOf"] = [self.schema(o, seen, at, depth + 1) for at, o in options]
        if types:
            out["type"] = types[0].upper()
        if nullable:
            out["nullable"] = True
        _copy_keywords(node, out)
        if isinstance(node.get("items"), dict):
            out["items"] = self.schema(node["items"], seen, _at(where, "items"), depth + 1)
        self.properties(node, out, seen, where, depth)
        return out

    def alternatives(
        self, node: JsonObject, where: str
    ) -> tuple[list[str], list[tuple[str, Any]], bool]:
        """(types, ``anyOf`` options as (where, schema), nullable): null, as a type or an
        option, becomes ``nullable``, and several types become options of one type each."""
        declared = node.get("type")
        types = declared if isinstance(declared, list) else [declared] if declared else []
        nullable = node.get("nullable") is True or "null" in types
        types = [t for t in types if t in TYPES]
        key = "anyOf" if node.get("anyOf") else "oneOf"
        options = [(_at(where, f"{key}[{i}]"), o) for i, o in enumerate(node.get(key) or [])]
        nullable = nullable or any(_is_null(o) for _, o in options)
        options = [(at, o) for at, o in options if not _is_null(o)]
        if len(types) > 1:  # ["string", "integer"] → anyOf, each branch with its own type
            rest = {k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf")}
            options, types = [(where, {**rest, "type": t}) for t in types], []
        return types, options, nullable

    def properties(
        self, node: JsonObject, out: JsonObject, seen: tuple[str, ...], where: str, depth: int
    ) -> None:
        properties = node.get("properties")
        if not properties:
            return
        out["properties"] = {
            name: self.schema(p, seen, _at(where, f"properties.{name}"), depth + 1)
            for name, p in properties.items()
        }
        required = [r for r in node.get("required") or [] if r in properties]
        if required:
            out["required"] = list(dict.fromkeys(required))
        if self.ordering:
            out["propertyOrdering"] = list(properties)


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
