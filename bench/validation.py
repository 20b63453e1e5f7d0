"""CPU per validation of a chat request, by validator: what chose jsonschema-rs.

    .venv/bin/python -m bench.validation            # about a minute
    .venv/bin/python -m bench.validation --quick    # fewer iterations

Three valid requests: the benchmark's (bench/load.py: a system prompt and a short user
message), an agent's (a system prompt, 30 messages with tool calls and tool results, 10 tools
with JSON-schema parameters, streaming) and a 2 MB one (the agent's with 40 documents of
50 KB as user messages). For each, ``time.process_time`` over many calls, after one warm-up
call; microseconds per call.

Rows:
- ``chat_request``: what the gateway runs (jsonschema-rs ``is_valid`` on the depth-capped
  schema, then the gateway's own checks);
- ``jsonschema-rs``, ``fastjsonschema``, ``jsonschema``: each library on the vendored schema,
  without the depth cap (``jsonschema-rs +depth``: with it);
- ``msgspec``: ``msgspec.convert`` into Struct types generated from the vendored schema
  (tagged unions for roles and part types);
- depth checks alone: a Python walk of every array and object, and counting ``{``/``[`` in
  the raw body (a count at most the cap proves the depth without walking).

fastjsonschema, jsonschema and msgspec are not dependencies of the project: a row whose
library is missing says so (``pip install fastjsonschema msgspec`` to see them).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from types import GenericAlias
from typing import Annotated, Any, Literal, Union

import orjson

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aqta.settings")

import django

django.setup()

from gateway.dataplane import schema as openai_schema  # noqa: E402
from gateway.dataplane.validation import chat_request  # noqa: E402

MAX_DEPTH = 64


# --- bodies ---------------------------------------------------------------------------------


def small() -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Bench 1a2b3c4d request 17: say hello."},
        ],
    }


def _tool(i: int) -> dict:
    return {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool number {i}: looks something up in the catalogue.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                    "filters": {
                        "type": "object",
                        "properties": {
                            "category": {"type": "string", "enum": ["a", "b", "c"]},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        },
                        "additionalProperties": False,
                    },
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def agent() -> dict:
    messages: list[dict] = [{"role": "system", "content": "You are a careful agent. " * 40}]
    for turn in range(8):
        call = {
            "id": f"call_{turn}",
            "type": "function",
            "function": {"name": f"tool_{turn}", "arguments": '{"query": "item", "limit": 5}'},
        }
        messages += [
            {"role": "user", "content": f"Step {turn}: find the next item."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{turn}", "content": '{"items": [1, 2]}' * 5},
            {"role": "assistant", "content": [{"type": "text", "text": f"Found item {turn}."}]},
        ]
    return {
        "model": "gpt-4o",
        "messages": [*messages[:29], {"role": "user", "content": "Now summarise."}],
        "tools": [_tool(i) for i in range(10)],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "temperature": 0.2,
        "max_completion_tokens": 1024,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def large() -> dict:
    body = agent()
    page = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 900  # ~50 KB
    documents = [{"role": "user", "content": f"Document {i}:\n{page}"} for i in range(40)]
    body["messages"][1:1] = documents
    return body


BODIES = {"small": small, "agent": agent, "2 MB": large}
ITERATIONS = {"small": 10_000, "agent": 1_000, "2 MB": 100}


# --- candidates -----------------------------------------------------------------------------


def candidates() -> dict[str, Callable[[Any], Any] | str]:
    schema = openai_schema.chat_completion_request()
    found: dict[str, Callable[[Any], Any] | str] = {"chat_request": chat_request}
    import jsonschema_rs

    found["jsonschema-rs"] = jsonschema_rs.Draft202012Validator(schema).is_valid
    capped = openai_schema.depth_limited(schema, MAX_DEPTH)
    found["jsonschema-rs +depth"] = jsonschema_rs.Draft202012Validator(capped).is_valid
    try:
        import fastjsonschema

        found["fastjsonschema"] = fastjsonschema.compile(schema)
    except ImportError:
        found["fastjsonschema"] = "not installed"
    try:
        import jsonschema

        found["jsonschema"] = jsonschema.Draft202012Validator(schema).validate
    except ImportError:
        found["jsonschema"] = "not installed"
    try:
        import msgspec

        request_type = MsgspecTypes(schema, msgspec).root()
        found["msgspec"] = lambda body: msgspec.convert(body, request_type)
    except ImportError:
        found["msgspec"] = "not installed"
    found["depth: Python walk"] = python_walk
    found["depth: count {/[ in raw"] = "raw"
    return found


def python_walk(body: dict) -> bool:
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            return False
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, level + 1))
    return True


def count_openers(raw: bytes) -> bool:
    return raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH


class MsgspecTypes:
    """Struct types for the vendored schema; enough of JSON Schema for what it uses."""

    def __init__(self, schema: dict, msgspec: Any) -> None:
        self.schema = schema
        self.msgspec = msgspec
        self.structs: dict[str, Any] = {}

    def root(self) -> Any:
        return self.convert(self.schema, "Request")

    def resolve(self, node: dict) -> tuple[dict, str | None]:
        name = None
        while "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            node = self.schema["$defs"][name]
        return node, name

    def convert(self, node: dict, hint: str) -> Any:
        node, name = self.resolve(node)
        hint = name or hint
        if "anyOf" in node:
            return Union[tuple(self.convert(b, f"{hint}{i}") for i, b in enumerate(node["anyOf"]))]  # noqa: UP007
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        meta = self.msgspec.Meta
        options: list[Any] = []  # types built at run time from the schema
        for kind in kinds:
            if kind == "null":
                options.append(None)
            elif "enum" in node:
                options.append(Literal[tuple(v for v in node["enum"] if v is not None)])
            elif kind == "string":
                options.append(
                    Annotated[str, meta(max_length=node["maxLength"])]
                    if "maxLength" in node
                    else str
                )
            elif kind in ("integer", "number"):
                bounds = {"ge": node.get("minimum"), "le": node.get("maximum")}
                base = int if kind == "integer" else float
                options.append(
                    Annotated[base, meta(**bounds)] if node.get("minimum") is not None else base
                )
            elif kind == "boolean":
                options.append(bool)
            elif kind == "array":
                items = self.convert(node["items"], f"{hint}Item") if "items" in node else Any
                limits = {"min_length": node.get("minItems"), "max_length": node.get("maxItems")}
                options.append(Annotated[GenericAlias(list, (items,)), meta(**limits)])
            elif "properties" in node:
                options.append(self.struct(node, hint))
            else:
                extra = node.get("additionalProperties", True)
                value = self.convert(extra, f"{hint}Value") if isinstance(extra, dict) else Any
                options.append(GenericAlias(dict, (str, value)))
        return Union[tuple(options)] if len(options) > 1 else options[0]  # noqa: UP007

    def struct(self, node: dict, hint: str) -> Any:
        if hint in self.structs:
            return self.structs[hint]
        required = set(node.get("required", ()))
        tag_field = tag = None
        for field in ("role", "type"):
            enum = node["properties"].get(field, {}).get("enum")
            if field in required and enum is not None and len(enum) == 1:
                tag_field, tag = field, enum[0]
                break
        fields = []
        for field, sub in node["properties"].items():
            if field == tag_field:
                continue
            kind = self.convert(sub, f"{hint}_{field}")
            fields.append((field, kind) if field in required else (field, kind, None))
        fields.sort(key=len)  # required (no default) first
        struct = self.msgspec.defstruct(
            hint,
            fields,
            kw_only=True,
            tag_field=tag_field,
            tag=tag,
            forbid_unknown_fields=node.get("additionalProperties") is False,
        )
        self.structs[hint] = struct
        return struct


# --- main -------------------------------------------------------------------------------------


def per_call(fn: Callable[[Any], Any], arg: Any, n: int, repeats: int = 5) -> float:
    """The best of ``repeats`` runs of ``n`` calls: the least disturbed by the rest of the
    machine (a 2-core box shared with other work)."""
    fn(arg)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            fn(arg)
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    args = parser.parse_args()
    found = candidates()
    bodies = {name: make() for name, make in BODIES.items()}
    sizes = {name: len(orjson.dumps(body)) for name, body in bodies.items()}
    print("µs CPU per call".ljust(26) + "".join(f"{f'{n} ({sizes[n]:,} B)':>22}" for n in bodies))
    for label, fn in found.items():
        row = label.ljust(26)
        for name, body in bodies.items():
            n = ITERATIONS[name] // (10 if args.quick else 1)
            if label in ("jsonschema", "fastjsonschema"):
                n = max(n // (50 if label == "jsonschema" else 10), 2)
            if fn == "raw":
                row += f"{per_call(count_openers, orjson.dumps(body), n):>22.2f}"
            elif isinstance(fn, str):
                row += f"{fn:>22}"
            else:
                row += f"{per_call(fn, copy.deepcopy(body), n):>22.2f}"
        print(row)


if __name__ == "__main__":
    main()
