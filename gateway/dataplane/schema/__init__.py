"""OpenAI's chat completion request schema, vendored, and its depth-capped form.

``chat_completion_request.json`` is ``CreateChatCompletionRequest`` from OpenAI's published
OpenAPI spec as plain JSON Schema (draft 2020-12), written by ``generate.py`` beside this file
(which says how it is derived and which amendments the gateway makes); the file records the
spec's commit and version. Nothing here reads the network.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("chat_completion_request.json")
SCALAR_TYPES = ["string", "number", "boolean", "null"]


@cache
def chat_completion_request() -> dict[str, Any]:
    """The vendored schema (one parsed copy; callers must not change it)."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


def source() -> dict[str, str]:
    """Where the vendored schema comes from: repository, commit, path, component, version."""
    where: dict[str, str] = chat_completion_request()["x-source"]
    return where


def depth_limited(schema: dict[str, Any], max_depth: int) -> dict[str, Any]:
    """``schema`` that also refuses JSON nested more than ``max_depth`` arrays/objects deep.

    Levels count from the request object (level 1). Every place the schema leaves open (a
    property it does not name, ``additionalProperties: true``, an array without ``items``)
    gets ``#/$defs/_depth_<k>``, "at most k more levels", and a container at a level past
    ``max_depth`` fails ``#/$defs/_depth_0``, "not a container". A definition used at several
    levels is copied once per level (``Name@level``): the schema is not recursive, so there
    are few. The validator thus checks the depth in the same pass as the rest, in Rust, with
    no walk of the body in Python; ``_depth_`` in an error's schema path means too deep.
    """
    capped = _DepthCap(schema["$defs"], max_depth)
    root = capped.walk({k: v for k, v in schema.items() if k != "$defs"}, 1)
    root["$defs"] = capped.defs
    return root


class _DepthCap:
    """The walk of :func:`depth_limited`: the definitions it writes, one copy per level."""

    def __init__(self, source_defs: dict[str, Any], max_depth: int) -> None:
        self.source_defs = source_defs
        self.max_depth = max_depth
        self.defs: dict[str, Any] = {"_depth_0": {"type": SCALAR_TYPES}}
        for k in range(1, max_depth + 1):
            below = {"$ref": f"#/$defs/_depth_{k - 1}"}
            self.defs[f"_depth_{k}"] = {"items": below, "additionalProperties": below}

    def walk(self, node: dict[str, Any], level: int) -> dict[str, Any]:
        """``node``, at ``level``, with its subschemas walked and its open places capped."""
        node = self._walk_subschemas(dict(node), level)
        may_be_array, may_be_object = _may_be_container(node)
        if may_be_array:
            node.setdefault("items", self._room(level))
        if may_be_object and node.get("additionalProperties", True) is True:
            node["additionalProperties"] = self._room(level)
        if level > self.max_depth and (may_be_array or may_be_object):
            node = {"allOf": [{"$ref": "#/$defs/_depth_0"}, node]}
        return node

    def _walk_subschemas(self, node: dict[str, Any], level: int) -> dict[str, Any]:
        if "$ref" in node:
            node.update(self._at_level(node["$ref"].rsplit("/", 1)[1], level))
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                node[key] = [self.walk(branch, level) for branch in node[key]]
        if "properties" in node:
            node["properties"] = {k: self.walk(v, level + 1) for k, v in node["properties"].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = self.walk(node[key], level + 1)
        return node

    def _room(self, level: int) -> dict[str, str]:
        """What a value at ``level`` may still hold: the levels left below it."""
        return {"$ref": f"#/$defs/_depth_{max(self.max_depth - level, 0)}"}

    def _at_level(self, name: str, level: int) -> dict[str, str]:
        """A reference to the copy of definition ``name`` for ``level``."""
        key = f"{name}@{level}"
        if key not in self.defs:
            self.defs[key] = {}  # reserved first: the schema is a DAG, but be safe with cycles
            self.defs[key] = self.walk(self.source_defs[name], level)
        return {"$ref": f"#/$defs/{key}"}


def _may_be_container(node: dict[str, Any]) -> tuple[bool, bool]:
    """Whether ``node`` may accept an array, and an object."""
    kind = node.get("type")
    if kind:
        types = set(kind if isinstance(kind, list) else [kind])
        return "array" in types, "object" in types
    # An untyped node without combinators accepts anything, containers included.
    untyped = not {"anyOf", "oneOf", "allOf", "$ref"} & set(node)
    return untyped, untyped
