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
    defs = schema["$defs"]
    out: dict[str, Any] = {"_depth_0": {"type": SCALAR_TYPES}}
    for k in range(1, max_depth + 1):
        below = {"$ref": f"#/$defs/_depth_{k - 1}"}
        out[f"_depth_{k}"] = {"items": below, "additionalProperties": below}

    def room(level: int) -> dict[str, str]:
        return {"$ref": f"#/$defs/_depth_{max(max_depth - level, 0)}"}

    def at_level(name: str, level: int) -> dict[str, str]:
        key = f"{name}@{level}"
        if key not in out:
            out[key] = {}  # reserved first: the schema is a DAG, but be safe with cycles
            out[key] = walk(defs[name], level)
        return {"$ref": f"#/$defs/{key}"}

    def walk(node: dict[str, Any], level: int) -> dict[str, Any]:
        node = dict(node)
        if "$ref" in node:
            node.update(at_level(node["$ref"].rsplit("/", 1)[1], level))
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                node[key] = [walk(branch, level) for branch in node[key]]
        if "properties" in node:
            node["properties"] = {k: walk(v, level + 1) for k, v in node["properties"].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key], level + 1)
        kind = node.get("type")
        types = set(kind if isinstance(kind, list) else [kind]) if kind else None
        # An untyped node without combinators accepts anything, containers included.
        untyped = types is None and not {"anyOf", "oneOf", "allOf", "$ref"} & set(node)
        if untyped or (types and "array" in types):
            node.setdefault("items", room(level))
        if (untyped or (types and "object" in types)) and node.get(
            "additionalProperties", True
        ) is True:
            node["additionalProperties"] = room(level)
        if level > max_depth and (untyped or (types and types & {"array", "object"})):
            node = {"allOf": [{"$ref": "#/$defs/_depth_0"}, node]}
        return node

    root = walk({k: v for k, v in schema.items() if k != "$defs"}, 1)
    root["$defs"] = out
    return root
