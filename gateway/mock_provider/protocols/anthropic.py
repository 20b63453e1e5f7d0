"""Anthropic Messages (``POST /v1/messages``), after docs/providers.md §2.

The key comes in ``x-api-key`` or, as current SDKs send it, ``Authorization: Bearer``; the
``anthropic-version`` header is required. Errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the id also in
the ``request-id`` header. Streams are named SSE events (``event:`` + ``data:``) in the recorded
order and end after ``message_stop`` without ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from ..clinical import text_answer
from ..config import MockConfig
from ..replies import Reply, content_text, estimate_tokens, last_user_text, tool_reply
from .base import (
    JSON_TYPE,
    SSE_TYPE,
    Call,
    Protocol,
    StreamPlan,
    base62_id,
    bearer_token,
    int_field,
    key_accepted,
)

ROLES = ("user", "assistant")
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERRORS = {
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit "
        "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current "
        "usage. Please reduce the prompt length or the maximum tokens requested, or try again "
        "later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}


class AnthropicProtocol(Protocol):
    name = "anthropic"

    def response_headers(self, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
        return {
            **_rate_limit_headers(int(time.time())),
            "Content-Type": content_type,
            "request-id": base62_id("req_011C", 20),
        }

    def json_response(
        self,
        status: int,
        payload: Any,
        started: float,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        all_headers = {**self.response_headers(started), **(headers or {})}
        if isinstance(payload, dict) and payload.get("type") == "error":
            payload = {**payload, "request_id": all_headers["request-id"]}
        return web.Response(status=status, body=orjson.dumps(payload), headers=all_headers)

    def auth_error(
        self, request: web.Request, config: MockConfig, started: float
    ) -> web.Response | None:
        # The classic header; current SDKs send the key as a bearer token, which the API takes.
        key = request.headers.get("x-api-key", "").strip() or bearer_token(request) or ""
        if not key:
            return self._error(401, "authentication_error", "x-api-key header is required", started)
        if not key_accepted(key, config):
            return self._error(401, "authentication_error", "invalid x-api-key", started)
        if not request.headers.get("anthropic-version"):
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required", started
            )
        return None

    def bad_request(self, request: web.Request, message: str, started: float) -> web.Response:
        return self._error(400, "invalid_request_error", message, started)

    def invalid_json(self, request: web.Request, started: float) -> web.Response:
        return self.bad_request(
            request,
            "There was an issue with your request body. Please check that it is valid JSON.",
            started,
        )

    def directive_text(self, body: Mapping[str, Any]) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ""
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
        return ""

    def status_error(self, status: int, call: Call) -> Any:
        if status == 404:
            model = call.body.get("model")
            return error("not_found_error", f"model: {model if isinstance(model, str) else ''}")
        if status in _ERRORS:
            return error(*_ERRORS[status])
        type_ = "invalid_request_error" if status < 500 else "api_error"
        return error(type_, f"Mock error (HTTP {status}).")

    def request_error(self, call: Call) -> web.Response | None:
        message = request_problem(call.body)
        if message is None:
            return None
        return self._error(400, "invalid_request_error", message, call.started)

    def wants_stream(self, call: Call) -> bool:
        return call.body.get("stream") is True

    def answer(self, call: Call) -> web.Response:
        reply = plan_reply(call)
        if reply.tool_name is None:
            content = [{"type": "text", "text": reply.text}] if reply.pieces else []
        else:
            content = [_tool_block(reply.tool_name, _arguments(reply))]
        message = {
            "id": base62_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": call.body["model"],
            "content": content,
            "stop_reason": STOP_REASONS[reply.finish_reason],
            "stop_sequence": None,
            "usage": _usage(call, output_tokens=_output_tokens(reply)),
        }
        return web.Response(body=orjson.dumps(message), headers=self.response_headers(call.started))

    def stream(self, call: Call) -> StreamPlan:
        reply = plan_reply(call)
        start = {
            "type": "message_start",
            "message": {
                "id": base62_id("msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": call.body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _usage(call, output_tokens=1),
            },
        }
        opening = [_event(b"message_start", orjson.dumps(start))]
        if reply.tool_name is None:
            opening += [_TEXT_BLOCK_START, _PING]
            deltas = [_text_delta(piece) for piece in reply.pieces]
        else:
            block = _tool_block(reply.tool_name, {})
            opening += [_block_start(block), _PING, _json_delta("")]
            deltas = [_json_delta(piece) for piece in reply.pieces]
        closing = [
            _BLOCK_STOP,
            _message_delta(STOP_REASONS[reply.finish_reason], _output_tokens(reply)),
            _MESSAGE_STOP,
        ]
        return StreamPlan(
            frames=[*opening, *deltas, *closing],
            paced=range(len(opening), len(opening) + len(deltas)),
            headers=self.response_headers(call.started, SSE_TYPE),
            error_event=_ERROR_EVENT,
        )

    def _error(self, status: int, type_: str, message: str, started: float) -> web.Response:
        return self.json_response(status, error(type_, message), started)


def error(type_: str, message: str) -> dict[str, Any]:
    """An error body; ``json_response`` adds the ``request_id``."""
    return {"type": "error", "error": {"type": type_, "message": message}}


# --- request validation --------------------------------------------------------------------------


def request_problem(body: Mapping[str, Any]) -> str | None:
    """The message of the 400 Anthropic would answer, or None. Checks the fields the mock uses."""
    messages = body.get("messages")
    return (
        _model_problem(body.get("model"))
        or _max_tokens_problem(body.get("max_tokens"))
        or _messages_problem(messages)
        or _options_problem(body)
        or _tool_pairing_problem(messages or [])
    )


def _model_problem(model: Any) -> str | None:
    if model is None:
        return "model: Field required"
    if not isinstance(model, str):
        return "model: Input should be a valid string"
    return None


def _max_tokens_problem(max_tokens: Any) -> str | None:
    if max_tokens is None:
        return "max_tokens: Field required"
    if int_field(max_tokens) is None:
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    return None


def _messages_problem(messages: Any) -> str | None:
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if (problem := _message_problem(index, message)) is not None:
            return problem
    return None


def _message_problem(index: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"messages.{index}: Input should be a valid dictionary"
    if "role" not in message:
        return f"messages.{index}.role: Field required"
    if message["role"] not in ROLES:
        return f"messages.{index}.role: Input should be 'user' or 'assistant'"
    if "content" not in message:
        return f"messages.{index}.content: Field required"
    return None


def _options_problem(body: Mapping[str, Any]) -> str | None:
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        if temperature > 1:
            return "temperature: Input should be less than or equal to 1"
        if temperature < 0:
            return "temperature: Input should be greater than or equal to 0"
    if body.get("tool_choice") is not None and not body.get("tools"):
        return "tool_choice may only be specified while providing tools."
    return None


def _tool_pairing_problem(messages: list[Any]) -> str | None:
    """Every ``tool_use`` needs its ``tool_result`` in the very next message, and vice versa."""
    previous_ids: list[str] = []
    for index, message in enumerate(messages):
        blocks = message.get("content")
        blocks = blocks if isinstance(blocks, list) else []
        if message["role"] == "user":
            for position, block in enumerate(blocks):
                answered = _block_id(block, "tool_result", "tool_use_id")
                if answered is not None and answered not in previous_ids:
                    return (
                        f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {answered}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message."
                    )
            previous_ids = []
            continue
        uses = [i for i in (_block_id(block, "tool_use", "id") for block in blocks) if i]
        answers = _results(messages[index + 1]) if index + 1 < len(messages) else set()
        missing = [use for use in uses if use not in answers]
        if missing:
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        previous_ids = uses
    return None


def _block_id(block: Any, kind: str, key: str) -> str | None:
    if isinstance(block, dict) and block.get("type") == kind:
        value = block.get(key)
        return value if isinstance(value, str) else ""
    return None


def _results(message: Any) -> set[str]:
    if not isinstance(message, dict) or message.get("role") != "user":
        return set()
    blocks = message.get("content")
    if not isinstance(blocks, list):
        return set()
    return {i for i in (_block_id(b, "tool_result", "tool_use_id") for b in blocks) if i}


# --- replies -------------------------------------------------------------------------------------


def plan_reply(call: Call) -> Reply:
    """A ``tool_use`` when the request lets the model call a tool, else text."""
    body = call.body
    tool = _tool_to_call(body)
    if tool is not None:
        return tool_reply(tool["name"], tool.get("input_schema"), body["max_tokens"])
    prompt = last_user_text(body["messages"])
    return text_answer(call.config, prompt, call.chunks, body["max_tokens"])


def _tool_to_call(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The tool to call: the forced one (``any``/``tool``), or with ``auto`` the first tool when
    the user spoke last with more than tool results, so a tool round trip terminates."""
    tools = [
        tool
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool
    ]
    choice = body.get("tool_choice")
    kind = choice.get("type", "auto") if isinstance(choice, dict) else "auto"
    if not tools or kind == "none":
        return None
    if kind == "tool" and isinstance(choice, dict):
        return next((t for t in tools if t["name"] == choice.get("name")), tools[0])
    if kind == "any":
        return tools[0]
    last = body["messages"][-1]
    if last["role"] != "user" or _results(last):
        return None
    return tools[0]


def prompt_tokens(body: Mapping[str, Any]) -> int:
    system = body.get("system")
    texts = [content_text(system)] if system else []
    texts += [content_text(message.get("content")) for message in body["messages"]]
    return estimate_tokens(texts)


def _usage(call: Call, *, output_tokens: int) -> dict[str, Any]:
    fault, config = call.fault, call.config
    read = fault.cache_read_input_tokens
    created = fault.cache_creation_input_tokens
    return {
        "input_tokens": prompt_tokens(call.body),
        "cache_creation_input_tokens": config.cache_creation_input_tokens
        if created is None
        else created,
        "cache_read_input_tokens": config.cache_read_input_tokens if read is None else read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _output_tokens(reply: Reply) -> int:
    # Anthropic counts at least one output token, even for an empty reply.
    return max(len(reply.pieces), 1)


def _arguments(reply: Reply) -> Any:
    """The tool input object; ``{}`` when ``max_tokens`` cut its JSON short."""
    try:
        return orjson.loads(reply.text)
    except orjson.JSONDecodeError:
        return {}


def _tool_block(name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": base62_id("toolu_01", 22), "name": name, "input": arguments}


@lru_cache(maxsize=2)
def _rate_limit_headers(second: int) -> dict[str, str]:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second + 1))
    headers = {"anthropic-organization-id": "7c3a1f0e-mock-4d2b-9e1a-000000000000"}
    for kind, limit in (
        ("requests", 4000),
        ("tokens", 480000),
        ("input-tokens", 400000),
        ("output-tokens", 80000),
    ):
        headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{kind}-remaining"] = str(limit - 1)
        headers[f"anthropic-ratelimit-{kind}-reset"] = reset
    return headers


# --- stream frames (constant parts encoded once) ------------------------------------------------


def _event(name: bytes, data: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


def _block_start(block: dict[str, Any]) -> bytes:
    data = {"type": "content_block_start", "index": 0, "content_block": block}
    return _event(b"content_block_start", orjson.dumps(data))


@lru_cache(maxsize=4096)
def _text_delta(piece: str) -> bytes:
    return _event(
        b"content_block_delta",
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
        + orjson.dumps(piece)
        + b"}}",
    )


@lru_cache(maxsize=4096)
def _json_delta(piece: str) -> bytes:
    return _event(
        b"content_block_delta",
        b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
        b'"partial_json":' + orjson.dumps(piece) + b"}}",
    )


def _message_delta(stop_reason: str, output_tokens: int) -> bytes:
    return _event(
        b"message_delta",
        b'{"type":"message_delta","delta":{"stop_reason":"'
        + stop_reason.encode()
        + b'","stop_sequence":null},"usage":{"output_tokens":'
        + str(output_tokens).encode()
        + b"}}",
    )


_TEXT_BLOCK_START = _block_start({"type": "text", "text": ""})
_PING = _event(b"ping", b'{"type": "ping"}')
_BLOCK_STOP = _event(b"content_block_stop", b'{"type":"content_block_stop","index":0}')
_MESSAGE_STOP = _event(b"message_stop", b'{"type":"message_stop"}')
# What Anthropic's streaming docs show when the API overloads after the stream started.
_ERROR_EVENT = _event(
    b"error", b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
)
