"""What the mock answers: deterministic text, a tool call, or JSON, cut into token-sized pieces.

Everything here is pure (no I/O) so the wire encoders and the tests can share it. A reply is a list
of pieces: each piece is one streamed delta and counts as one completion token, so
``completion_tokens`` always equals the number of pieces a stream carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

# Characters per token in the estimates, the usual rule of thumb for English text.
CHARS_PER_TOKEN = 4
# Each message costs a few tokens of framing on top of its text (role, separators).
TOKENS_PER_MESSAGE = 4
JSON_OBJECT_REPLY = {"result": "mock"}
_MAX_SCHEMA_DEPTH = 8
_WORD = re.compile(r"\s*\S+")


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer every choice gets: text pieces, or the argument pieces of one tool call."""

    pieces: tuple[str, ...]
    finish_reason: str
    tool_name: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Deterministic prompt size: ``len(text) // 4 + 4`` per message, at least 1."""
    return estimate_tokens(
        content_text(message.get("content")) if isinstance(message, dict) else ""
        for message in messages
    )


def estimate_tokens(texts: Iterable[str]) -> int:
    """The prompt size of messages with these texts (every protocol counts this way)."""
    total = sum(len(text) // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE for text in texts)
    return max(total, 1)


def last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def plan_reply(
    body: Mapping[str, Any], *, reply_text: str, chunks: int, answer: str | None = None
) -> Reply:
    """Choose the answer to a validated OpenAI-shaped request and apply its token limit.

    A text reply is ``answer`` when given (a whole composed answer, see ``clinical.py``), else
    ``reply_text`` repeated to ``chunks`` words.
    """
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    tool = _tool_to_call(body)
    if tool is not None:
        return tool_reply(str(tool.get("name", "")), tool.get("parameters"), limit)
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        response_format = {}
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json_reply(schema, limit)
    if kind == "json_object":
        return json_reply(None, limit)
    if answer is not None:
        return answer_reply(answer, limit)
    return text_reply(reply_text, chunks, limit)


def text_reply(reply_text: str, chunks: int, limit: Any = None) -> Reply:
    return limited(text_pieces(reply_text, chunks), "stop", limit)


def answer_reply(answer: str, limit: Any = None) -> Reply:
    """``answer`` as it is, one piece per word, its line breaks kept on the following word."""
    return limited(tuple(_WORD.findall(answer)) or ("",), "stop", limit)


def json_reply(schema: Any, limit: Any = None) -> Reply:
    """JSON text that fits ``schema`` (``None``: the fixed JSON-mode object)."""
    value = JSON_OBJECT_REPLY if schema is None else _placeholder(schema)
    return limited(_fragments(orjson.dumps(value).decode()), "stop", limit)


def tool_reply(name: str, parameters: Any, limit: Any = None) -> Reply:
    """A call of tool ``name`` whose arguments fill the required ``parameters``."""
    arguments = _placeholder(parameters or {}, required_only=True)
    return limited(_fragments(orjson.dumps(arguments).decode()), "tool_calls", limit, name)


@lru_cache(maxsize=64)
def text_pieces(reply_text: str, count: int) -> tuple[str, ...]:
    """``count`` word pieces of ``reply_text`` (repeated as needed), spaces kept on the words."""
    words = reply_text.split() or ["mock"]
    return tuple(
        (" " if index else "") + words[index % len(words)] for index in range(max(count, 0))
    )


def limited(
    pieces: tuple[str, ...], finish_reason: str, limit: Any, tool_name: str | None = None
) -> Reply:
    """The reply, cut to ``limit`` tokens (finish reason ``length``) when it is an int."""
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < len(pieces):
        return Reply(pieces[: max(limit, 0)], "length", tool_name)
    return Reply(pieces, finish_reason, tool_name)


def _tool_to_call(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The function a tool-using request should call, or None for a text answer.

    A real model decides; the mock calls a tool whenever it may and the user spoke last, so a
    client's tool round trip (call -> tool result -> text answer) always terminates.
    """
    tools = body.get("tools")
    choice = body.get("tool_choice")
    messages = body.get("messages") or []
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    functions = [
        tool["function"]
        for tool in tools
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    if not functions:
        return None
    wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    found: dict[str, Any] = next((f for f in functions if f.get("name") == wanted), functions[0])
    return found


def _fragments(text: str) -> tuple[str, ...]:
    """Cut JSON text into token-sized fragments, as a model streams arguments."""
    step = CHARS_PER_TOKEN
    return tuple(text[start : start + step] for start in range(0, len(text), step)) or ("",)


def _placeholder(schema: Any, *, required_only: bool = False, depth: int = 0) -> Any:
    """A value that satisfies the common parts of a JSON schema (type, enum, properties).

    Also reads the OpenAPI subset Gemini takes (``"type": "STRING"``).
    """
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(combinator), list) and schema[combinator]:
            return _placeholder(schema[combinator][0], required_only=required_only, depth=depth + 1)
    return _typed_placeholder(schema, _type_of(schema), required_only=required_only, depth=depth)


def _type_of(schema: dict[str, Any]) -> Any:
    """The schema's type in lower case; of a list of types, the first that is not null."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        kind = kind.lower()  # Gemini's OpenAPI schemas spell types in capitals ("OBJECT")
    return kind


def _typed_placeholder(
    schema: dict[str, Any], kind: Any, *, required_only: bool, depth: int
) -> Any:
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        names = schema.get("required", []) if required_only else list(properties)
        return {
            name: _placeholder(
                properties.get(name, {}), required_only=required_only, depth=depth + 1
            )
            for name in names
            if isinstance(name, str)
        }
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return []
        return [_placeholder(items, required_only=required_only, depth=depth + 1)]
    return _SCALARS.get(kind, "mock")


_SCALARS: dict[Any, Any] = {
    "string": "mock",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "null": None,
}
