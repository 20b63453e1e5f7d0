"""Regenerate ``chat_completion_request.json`` from OpenAI's published OpenAPI spec.

Usage (from the repository root)::

    .venv/bin/python -m gateway.dataplane.schema.generate                 # newest commit of main
    .venv/bin/python -m gateway.dataplane.schema.generate --commit <sha>  # a given commit
    .venv/bin/python -m gateway.dataplane.schema.generate --spec openapi.json --commit <sha>
      (offline)

The first two download ``openapi.json`` from github.com/openai/openai-openapi (the only step
that needs the network); the gateway itself only ever reads the vendored file. Review the diff
of the JSON file and run ``gateway/tests/test_validation.py`` before committing a new version.

The request schema is ``components/schemas/CreateChatCompletionRequest`` and everything it
references, turned from OpenAPI into plain JSON Schema (draft 2020-12) so that any validator
reads it the same way:

- ``$ref``\\s to ``#/components/schemas/X`` become ``#/$defs/X``.
- ``nullable: true`` (an OpenAPI 3.0 keyword the 3.1 document still uses) becomes ``"null"`` in
  ``type`` (and ``None`` in ``enum``), or a ``{"type": "null"}`` branch of a ``oneOf``/``anyOf``.
- ``discriminator``, ``format`` (only ``uri`` on image URLs, where ``data:`` URLs and provider
  file references must pass), ``default``, ``description``, ``example``, ``title`` and ``x-*``
  are annotations for documentation and code generators, not validation, and are left out.
- ``allOf`` (only at the top: the request "extends" ``CreateModelResponseProperties``) is
  merged into one object, later properties overriding earlier ones, as OpenAI's SDK generators
  read it: the request declares ``top_logprobs`` three times and only its own, last definition
  is nullable, which is what the published SDKs accept.
- ``anyOf [A, {"type": "null"}]`` with a plain typed ``A`` folds into ``A`` with ``"null"`` in
  its ``type``; ``anyOf`` branches contained in a sibling ``{"type": T}`` are dropped (model and
  voice ids: "any string, or one of these strings").
- A ``oneOf`` whose branches are provably exclusive (different JSON types, or objects that
  require one property with different single values, e.g. ``role`` or ``type``) becomes
  ``anyOf``: the same instances pass, and a validator may stop at the first branch that fits.
  The branches keep their order; a ``oneOf`` that is not provably exclusive stays a ``oneOf``.

Keywords other than the ones handled here make the script stop, so that a new kind of
constraint in a future spec is looked at rather than silently dropped.

Then the gateway's amendments (``AMENDMENTS`` below) are applied; each says why.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPOSITORY = "openai/openai-openapi"
BRANCH = "main"
SPEC_PATH = "openapi.json"
ROOT = "CreateChatCompletionRequest"
OUTPUT = Path(__file__).with_name("chat_completion_request.json")

# Validation keywords carried over as they are.
KEPT = {
    "type",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "maxLength",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "nullable",
    "deprecated",
}
# Annotations (see the module docstring).
DROPPED = {"description", "title", "example", "examples", "default", "discriminator", "format"}


def _fail(message: str) -> None:
    sys.exit(f"generate: {message}")


class Converter:
    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components
        self.defs: dict[str, Any] = {}

    def ref(self, ref: str) -> dict[str, Any]:
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix):
            _fail(f"unexpected $ref {ref}")
        name = ref[len(prefix) :]
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a cycle resolves to the same $defs entry
            self.defs[name] = self.convert(self.components[name])
        return {"$ref": f"#/$defs/{name}"}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The converted schema a ``$ref`` points to (or the schema itself)."""
        while "$ref" in schema and len(schema) == 1:
            schema = self.defs[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def convert(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        unknown = {k for k in node if k not in KEPT and k not in DROPPED and k[:2] != "x-"}
        if unknown:
            _fail(f"unhandled keywords {sorted(unknown)} in {json.dumps(node)[:200]}")
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in DROPPED and not key.startswith("x-") and key != "nullable":
                self.add_keyword(out, key, value)
        return self.normalise(out, nullable=node.get("nullable") is True)

    def add_keyword(self, out: dict[str, Any], key: str, value: Any) -> None:
        """Add ``key: value`` to ``out``, its subschemas converted."""
        if key == "$ref":
            out.update(self.ref(value))
        elif key == "properties":
            out[key] = {name: self.convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = self.convert(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [self.convert(sub) for sub in value]
        elif key == "required":
            if value:
                out[key] = list(value)
        else:
            out[key] = copy.deepcopy(value)

    def normalise(self, out: dict[str, Any], nullable: bool) -> dict[str, Any]:
        """A converted node in its plain JSON Schema form (see the module docstring)."""
        if "allOf" in out:
            out = self.merge_all_of(out)
        if nullable:
            out = self.nullable(out)
        if "anyOf" in out:
            out = self.simplify_any_of(out)
        if "oneOf" in out and self.exclusive(out["oneOf"]):
            out["anyOf"] = out.pop("oneOf")
            out = self.simplify_any_of(out)
        return out

    def merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        required: list[str] = []
        for part in schema.pop("allOf"):
            part = self.resolve(part)
            if part.get("type") != "object" or set(part) - {"type", "properties", "required"}:
                _fail(f"allOf of something other than plain objects: {json.dumps(part)[:200]}")
            merged["properties"].update(part.get("properties", {}))
            required += [name for name in part.get("required", ()) if name not in required]
        if set(schema) - {"type", "deprecated"}:
            _fail("allOf next to other keywords")
        if required:
            merged["required"] = required
        return merged

    @staticmethod
    def nullable(schema: dict[str, Any]) -> dict[str, Any]:
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if "null" not in types:
                schema["type"] = [*types, "null"]
            if "enum" in schema and None not in schema["enum"]:
                schema["enum"] = [*schema["enum"], None]
            return schema
        for key in ("oneOf", "anyOf"):
            if key in schema:
                if not any(_accepts_null(branch) for branch in schema[key]):
                    schema[key] = [*schema[key], {"type": "null"}]
                return schema
        if "$ref" in schema:
            return {"anyOf": [{"$ref": schema.pop("$ref")}, {"type": "null"}], **schema}
        _fail(f"nullable on an untyped schema: {schema}")
        return schema

    def simplify_any_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        branches: list[dict[str, Any]] = []
        for branch in schema["anyOf"]:  # anyOf [anyOf [a, b], c] is anyOf [a, b, c]
            branches += branch["anyOf"] if set(branch) == {"anyOf"} else [branch]
        plain = {b["type"] for b in branches if set(b) == {"type"} and isinstance(b["type"], str)}
        kept = [b for b in branches if set(b) == {"type"} or b.get("type") not in plain]
        if len(kept) == 1 and set(schema) == {"anyOf"}:
            return kept[0]
        schema["anyOf"] = kept
        others = [b for b in kept if b != {"type": "null"}]
        if len(others) == 1 and len(kept) == 2 and set(schema) <= {"anyOf", "deprecated"}:
            folded = copy.deepcopy(others[0])
            if isinstance(folded.get("type"), str) and not {"anyOf", "oneOf", "$ref"} & set(folded):
                folded = self.nullable(folded)
                if "deprecated" in schema:
                    folded["deprecated"] = schema["deprecated"]
                return folded
        return schema

    def exclusive(self, branches: list[dict[str, Any]]) -> bool:
        """Whether no instance can match two of ``branches``."""
        resolved = [self.resolve(b) for b in branches]
        types = [_types(b) for b in resolved]
        if any(t is None for t in types):
            return False
        for i in range(len(resolved)):
            for j in range(i + 1, len(resolved)):
                common = types[i] & types[j]  # type: ignore[operator]
                if not common:
                    continue
                if common != {"object"} or not _tagged_apart(resolved[i], resolved[j]):
                    return False
        return True


def _types(schema: dict[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    types = set(kind) if isinstance(kind, list) else {kind}
    if "integer" in types or "number" in types:
        types |= {"integer", "number"}
    return types


def _tags(schema: dict[str, Any]) -> dict[str, Any]:
    """Required properties of ``schema`` that allow a single value."""
    tags = {}
    for name in schema.get("required", ()):
        enum = schema.get("properties", {}).get(name, {}).get("enum")
        if enum is not None and len(enum) == 1:
            tags[name] = enum[0]
    return tags


def _tagged_apart(a: dict[str, Any], b: dict[str, Any]) -> bool:
    tags_a, tags_b = _tags(a), _tags(b)
    return any(name in tags_b and tags_b[name] != value for name, value in tags_a.items())


def _accepts_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


# --- the gateway's amendments -----------------------------------------------------------

INT64 = 2**63


def _user_location(schema: dict[str, Any]) -> str:
    location = schema["properties"]["web_search_options"]["properties"]["user_location"]
    location.pop("required", None)
    location["properties"].update(
        {
            "country": {"type": "string"},
            "region": {"type": "string"},
            "city": {"type": "string"},
            "latitude": {"type": "number"},
            "longitude": {"type": "number"},
        }
    )
    return (
        "web_search_options.user_location also takes Perplexity's flat location (country, "
        "region, city, latitude, longitude), which the gateway forwards to Perplexity; "
        "type and approximate are therefore not required."
    )


def _json_schema_name(schema: dict[str, Any]) -> str:
    json_schema = schema["$defs"]["ResponseFormatJsonSchema"]["properties"]["json_schema"]
    json_schema["required"].remove("name")
    if not json_schema["required"]:
        del json_schema["required"]
    return (
        "response_format.json_schema.name is not required: Perplexity documents "
        '{"type": "json_schema", "json_schema": {"schema": ...}} without a name.'
    )


def _metadata(schema: dict[str, Any]) -> str:
    metadata = schema["$defs"]["Metadata"]
    metadata["maxProperties"] = 16
    metadata["propertyNames"] = {"maxLength": 64}
    metadata["additionalProperties"]["maxLength"] = 512
    return (
        "metadata: at most 16 pairs, keys of at most 64 and values of at most 512 characters, "
        "as the spec's description of Metadata says."
    )


def _logit_bias(schema: dict[str, Any]) -> str:
    bias = schema["properties"]["logit_bias"]["additionalProperties"]
    bias.update({"minimum": -100, "maximum": 100})
    return "logit_bias values from -100 to 100, as the spec's description of logit_bias says."


def _seed(schema: dict[str, Any]) -> str:
    seed = schema["properties"]["seed"]
    seed.update({"minimum": -INT64, "maximum": INT64 - 1})
    return "seed: the 64-bit integer range the spec's bounds (2**63 rounded to 19 digits) mean."


AMENDMENTS = (_user_location, _json_schema_name, _metadata, _logit_bias, _seed)


# --- main ---------------------------------------------------------------------------------


def _download(url: str, accept: str = "application/json") -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "aqta"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body: bytes = response.read()
    return body


def build(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    converter = Converter(spec["components"]["schemas"])
    root = converter.convert(spec["components"]["schemas"][ROOT])
    used = _reachable(root, converter.defs)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Generated by gateway/dataplane/schema/generate.py from {ROOT} in {SPEC_PATH} of "
            f"{REPOSITORY} at {commit} (OpenAPI info.version {spec['info']['version']}, "
            f"MIT licence). Do not edit: regenerate."
        ),
        "x-source": {
            "repository": REPOSITORY,
            "commit": commit,
            "path": SPEC_PATH,
            "component": ROOT,
            "version": spec["info"]["version"],
        },
        **root,
        "$defs": {name: converter.defs[name] for name in sorted(used)},
    }
    schema["x-amendments"] = [amend(schema) for amend in AMENDMENTS]
    return schema


def _reachable(root: Any, defs: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref.rsplit("/", 1)[1] not in seen:
                seen.add(ref.rsplit("/", 1)[1])
                stack.append(defs[ref.rsplit("/", 1)[1]])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, help="a local openapi.json instead of downloading")
    parser.add_argument("--commit", help=f"the {REPOSITORY} commit (default: newest of {BRANCH})")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    commit = args.commit
    if args.spec is not None:
        if not commit:
            parser.error("--spec needs --commit, the commit the file comes from")
        raw = args.spec.read_bytes()
    else:
        if not commit:
            api = f"https://api.github.com/repos/{REPOSITORY}/commits/{BRANCH}"
            commit = _download(api, "application/vnd.github.sha").decode().strip()
        raw = _download(f"https://raw.githubusercontent.com/{REPOSITORY}/{commit}/{SPEC_PATH}")
    schema = build(json.loads(raw), commit)
    args.output.write_text(json.dumps(schema, indent=1, ensure_ascii=False) + "\n")
    print(f"{args.output}: {ROOT} at {commit} ({len(schema['$defs'])} definitions)")


if __name__ == "__main__":
    main()
