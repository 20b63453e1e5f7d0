"""Checks on a chat completion request before admission (nothing is counted or sent before).

Every parameter OpenAI's published schema knows (``gateway/schema``: the spec version and
commit are in the vendored file) is checked against it; parameters it does not know pass
through, as the spec allows, for providers' own extensions (Perplexity's ``search_*`` ...). A
cap on JSON nesting (``AQTA_MAX_JSON_DEPTH``) keeps bodies the upstream serialiser would refuse
(orjson stops at 254 levels) from getting past admission. Then what the gateway itself relies
on: a non-empty model, whole numbers where it counts (``n``, token limits), ``stream_options``
only with ``stream: true``.

The validator is jsonschema-rs, chosen by measurement (``bench/validation.py``: CPU per call
on a valid body, best of 5, ranges over runs on a busy 2-core machine): the benchmark's short
request 0.3-0.9 µs, a 30-message agent request with 10 tools 12-19 µs, a 2 MB request
16-30 µs, depth cap included. fastjsonschema: 18-34 µs, 0.6-1.2 ms, 1.1-1.9 ms (its anyOf
tries every branch under exceptions); jsonschema (pure Python): 0.3-0.4 ms, 8-15 ms,
12-23 ms; msgspec, on Struct types generated from the schema: 0.6-1.1 µs, 9-16 µs, 13-25 µs,
as fast, but only through a translation of the schema of our own and without the depth cap.
Walking the body in Python for the depth alone would cost 0.8-1.4, 40-64 and 48-83 µs;
counting ``{``/``[`` in the raw body 0.3-0.5, 6-12 and 1,200-2,200 µs.
A valid body costs one ``is_valid`` call; only a refused one pays for finding the error.

Errors name the field at fault the way OpenAI does (``messages[2].content[0].type``). Where the
schema offers alternatives (``anyOf``), the error follows the alternative the value was meant
to be: the one of its JSON type, else the one its ``role``/``type`` names, so an unknown role
reads "messages[3].role must be one of developer, system, ..." rather than "matches no
alternative".
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import schema as openai_schema

INVALID = ErrorCode.INVALID_PARAMETER
MISSING = ErrorCode.MISSING_PARAMETER
MAX_TOKENS = 10_000_000
# Parameters the gateway counts with: a JSON integer, not 2.0 (which the schema's "integer"
# admits), so quota and provider arithmetic stay integral.
WHOLE_NUMBERS = ("n", "top_logprobs", "seed", "max_tokens", "max_completion_tokens")
_COUNTED = frozenset((*WHOLE_NUMBERS, "stream_options"))
# Longest object key quoted in a param; keys are client data and may be huge.
KEY_IN_PARAM = 64

_K = jsonschema_rs.ValidationErrorKind
_ARTICLE = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
# How a value exceeding a size limit is worded, by the keyword it fails.
_LIMITS: dict[type, str] = {
    _K.MinItems: "must have at least {} items",
    _K.MaxItems: "must have at most {} items",
    _K.MaxLength: "must be at most {} characters long",
    _K.MaxProperties: "must have at most {} entries",
}


def _bad(message: str, param: str, code: ErrorCode = INVALID) -> AqtaError:
    return AqtaError(message, code=code, param=param)


def chat_request(body: Any) -> dict[str, Any]:
    """Validate a chat completion request body (already JSON-decoded); return what to use.

    That is ``body`` itself, or, when it sets to null a parameter whose schema has no null
    (``tools``, ``user``, ``tool_choice`` ...), a copy without those: a null there has always
    meant "not given" here, and OpenAI would refuse it.
    """
    if not isinstance(body, dict):
        raise AqtaError("The request body must be a JSON object.", code=ErrorCode.INVALID_REQUEST)
    request: dict[str, Any] = body
    checker = _current or _load()
    if not checker.validator.is_valid(request):
        request = checker.explain(request)
    if not request["model"]:
        raise _bad("model must be a non-empty string.", "model")
    if not _COUNTED.isdisjoint(request):
        _counted(request, checker)
    return request


def _counted(body: dict[str, Any], checker: _Checker) -> None:
    for name in WHOLE_NUMBERS:
        value = body.get(name)
        if value is not None and type(value) is not int:
            raise _bad(f"{name} must be {checker.expected[name]}.", name)
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and not 1 <= value <= MAX_TOKENS:
            raise _bad(f"{name} must be an integer between 1 and {MAX_TOKENS}.", name)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise _bad("stream_options is only allowed with stream: true.", "stream_options")


# Compiled once per cap; reading the setting on every request would cost more than validating
# a short request, so the checker in use is kept here and dropped when the setting changes.
_CHECKERS: dict[int, _Checker] = {}
_current: _Checker | None = None


def _load() -> _Checker:
    global _current
    depth = settings.AQTA_MAX_JSON_DEPTH
    if depth not in _CHECKERS:
        _CHECKERS[depth] = _Checker(depth)
    _current = _CHECKERS[depth]
    return _current


def warm() -> None:
    """Compile the validator now (a worker's start) rather than on its first request."""
    _load()


@receiver(setting_changed)
def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _current
    if setting == "AQTA_MAX_JSON_DEPTH":
        _current = None


class _Checker:
    """The compiled schema for one depth cap, and the wording of its errors."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.schema = openai_schema.depth_limited(
            openai_schema.chat_completion_request(), max_depth
        )
        self.validator = jsonschema_rs.Draft202012Validator(self.schema)
        properties = self.schema["properties"]
        self.required: tuple[str, ...] = tuple(self.schema["required"])
        self.not_nullable = tuple(
            name
            for name, node in properties.items()
            if name not in self.required and not self._admits(node, "null")
        )
        self.expected = {
            name: self._expected(self._resolve(properties[name]))
            for name in WHOLE_NUMBERS
            if name in properties
        }
        for name in ("max_tokens", "max_completion_tokens"):
            self.expected[name] = f"an integer between 1 and {MAX_TOKENS}"

    # --- finding the error -----------------------------------------------------------------

    def explain(self, body: dict[str, Any]) -> dict[str, Any]:
        """Raise the error of a body the validator refused; or return it without its nulls."""
        for name in self.required:
            if body.get(name) is None:
                raise _bad(f"{name} is required.", name, MISSING)
        too_deep = _too_deep(body, self.max_depth)
        if too_deep is not None:
            param = _param(too_deep)
            raise _bad(
                f"{param} is nested too deeply: at most {self.max_depth} levels of arrays "
                "and objects are accepted.",
                param,
            )
        nulls = [name for name in self.not_nullable if name in body and body[name] is None]
        if nulls:
            body = {name: value for name, value in body.items() if name not in nulls}
            if self.validator.is_valid(body):
                return body
        try:
            self.validator.validate(body)
        except jsonschema_rs.ValidationError as error:
            raise self.error(error, body) from None
        except ValueError:  # the validator's own limits; not reached under the depth cap
            raise AqtaError(
                "The request does not match OpenAI's chat completion schema.",
                code=ErrorCode.INVALID_REQUEST,
            ) from None
        return body

    def error(self, error: Any, body: dict[str, Any]) -> AqtaError:
        while isinstance(error.kind, _K.AnyOf | _K.OneOfNotValid):
            branches = self._node(error.schema_path)
            choice = self._dispatch(error, branches, _path(body, error.instance_path))
            if isinstance(choice, AqtaError):
                return choice
            error = choice
        return self._wording(error, _path(body, error.instance_path))

    def _dispatch(self, error: Any, branches: list[dict[str, Any]], path: list[Any]) -> Any:
        """The error to report from the alternative the value was meant to be."""
        value = error.instance
        kind = _json_type(value)
        branches = [self._resolve(b) for b in branches]
        fits = [i for i, branch in enumerate(branches) if self._admits(branch, kind)]
        param = _param(path)
        if not fits:
            return _bad(f"{param} must be {self._alternatives(branches)}.", param)
        context = error.kind.context
        if len(fits) > 1 and kind == "object":
            tags = [_tags(branches[i]) for i in fits]
            common = [name for name in tags[0] if all(name in t for t in tags[1:])]
            if common:
                tag = common[0]
                where = _param([*path, tag])
                if value.get(tag) is None:
                    return _bad(f"{where} is required.", where, MISSING)
                for i, t in zip(fits, tags, strict=True):
                    if t[tag] == value[tag] and context[i]:
                        return context[i][0]
                names = ", ".join(str(t[tag]) for t in tags)
                return _bad(f"{where} must be one of {names}.", where)
        # One alternative of the value's type, or several without a tag: the closest one.
        best = min(fits, key=lambda i: len(context[i]))
        if not context[best]:  # nothing to follow: say what the alternatives are
            return _bad(f"{param} must be {self._alternatives(branches)}.", param)
        return context[best][0]

    def _wording(self, error: Any, path: list[Any]) -> AqtaError:
        """The error of the one keyword ``error`` fails, worded for the value at ``path``."""
        kind = error.kind
        if isinstance(kind, _K.Required):
            param = _param([*path, kind.property])
            return _bad(f"{param} is required.", param, MISSING)
        if isinstance(kind, _K.AdditionalProperties | _K.FalseSchema):
            field = [kind.unexpected[0]] if isinstance(kind, _K.AdditionalProperties) else []
            param = _param([*path, *field])
            return _bad(f"{param} is not a recognised field.", param)
        param = _param(path)
        if any(str(part).startswith("_depth_") for part in error.schema_path):
            return _bad(f"{param} is nested too deeply.", param)
        return _bad(f"{param} {self._requirement(kind, error.schema_path)}.", param)

    def _requirement(self, kind: Any, schema_path: Any) -> str:
        """What a value failing ``kind`` must be, as the rest of a sentence naming it."""
        if isinstance(kind, _K.Type | _K.Enum | _K.Minimum | _K.Maximum):
            return f"must be {self._expected(self._node(schema_path[:-1]))}"
        if isinstance(kind, _K.PropertyNames):
            limit = self._node(schema_path[:-1]).get("maxLength")
            return f"keys must be at most {limit} characters long"
        if isinstance(kind, _K.MinItems) and kind.limit == 1:
            return "must be a non-empty array"
        limit_wording = _LIMITS.get(type(kind))
        if limit_wording is not None:
            return limit_wording.format(kind.limit)
        return f"does not match OpenAI's schema ({kind.name})"

    # --- reading the schema ----------------------------------------------------------------

    def _node(self, schema_path: Any) -> Any:
        node: Any = self.schema
        for part in schema_path:
            node = node[part]
        return node

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if "allOf" in node:  # the depth cap's wrapper: the second part is the schema
            return self._resolve(node["allOf"][-1])
        return node

    def _types(self, node: dict[str, Any]) -> set[str] | None:
        """JSON types ``node`` may accept (None: any)."""
        node = self._resolve(node)
        if "type" in node:
            kind = node["type"]
            return set(kind) if isinstance(kind, list) else {kind}
        if "anyOf" in node or "oneOf" in node:
            types: set[str] = set()
            for branch in node.get("anyOf") or node["oneOf"]:
                more = self._types(branch)
                if more is None:
                    return None
                types |= more
            return types
        return None

    def _admits(self, node: dict[str, Any], kind: str) -> bool:
        types = self._types(node)
        if types is None:
            return True
        return kind in types or (kind == "integer" and "number" in types)

    def _alternatives(self, branches: list[dict[str, Any]]) -> str:
        described: list[str] = []
        for branch in branches:
            if self._types(branch) == {"null"}:
                continue
            text = self._expected(branch, enums=False)
            if text not in described:
                described.append(text)
        return _or(described)

    def _expected(self, node: dict[str, Any], enums: bool = True) -> str:
        """What ``node`` accepts, in words: "a number between 0 and 2", "one of a, b"."""
        node = self._resolve(node)
        if enums and "enum" in node:
            return "one of " + ", ".join(str(v) for v in node["enum"] if v is not None)
        types = sorted(self._types(node) or (), key=list(_ARTICLE).index)
        words = []
        for kind in types:
            if kind == "null" and len(types) > 1:
                continue
            text = _ARTICLE[kind]
            if kind in ("integer", "number"):
                low, high = node.get("minimum"), node.get("maximum")
                if low is not None and high is not None:
                    text += (
                        f" between {low:g} and {high:g}"
                        if kind == "number"
                        else (f" between {low} and {high}")
                    )
                elif low is not None:
                    text += f" of at least {low}"
                elif high is not None:
                    text += f" of at most {high}"
            elif kind == "array" and isinstance(node.get("items"), dict):
                inner = self._types(node["items"])
                if inner is not None and len(inner) == 1 and inner != {"null"}:
                    text += " of " + _ARTICLE[next(iter(inner))].split(" ", 1)[1] + "s"
            words.append(text)
        return _or(words)


def _or(words: list[str]) -> str:
    if len(words) < 2:
        return words[0] if words else "valid"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _tags(node: dict[str, Any]) -> dict[str, Any]:
    """Required properties of ``node`` that allow a single value: ``role``, ``type``."""
    properties = node.get("properties", {})
    tags = {}
    for name in node.get("required", ()):
        enum = properties.get(name, {}).get("enum")
        if enum is not None and len(enum) == 1:
            tags[name] = enum[0]
    return tags


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _path(body: dict[str, Any], location: Any) -> list[Any]:
    """``location`` (an error's instance path) with object keys as strings.

    jsonschema-rs gives a key that looks like a number ("50256" in ``logit_bias``) as an int,
    like an array index; the body says which it is.
    """
    path: list[Any] = []
    node: Any = body
    for part in location:
        if isinstance(node, dict):
            part = str(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        path.append(part)
    return path


def _param(path: list[Any] | tuple[Any, ...]) -> str:
    """OpenAI's way of naming a field: ``messages[2].content[0].type``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = str(part)
            if len(key) > KEY_IN_PARAM:
                key = key[:KEY_IN_PARAM] + "…"
            text += f".{key}" if text else key
    return text


def _too_deep(body: dict[str, Any], max_depth: int) -> tuple[Any, ...] | None:
    """Path of the first array or object nested past ``max_depth`` levels, if any.

    Iterative, so 10,000 levels cost no Python recursion; only run once the validator has
    refused the body.
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(body, 1, ())]
    while stack:
        node, level, path = stack.pop()
        if level > max_depth:
            return path
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, child in reversed(children):
            if isinstance(child, dict | list):
                stack.append((child, level + 1, (*path, key)))
    return None
