"""OpenAI Chat Completions wire format: bodies, SSE frames, error envelopes, headers.

Shapes follow docs/providers.md §1 (recorded traffic where there is some). Stream frames are
assembled from pre-encoded byte fragments so a streamed chunk costs a few concatenations, not a
JSON encode of the whole envelope.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from .replies import Reply, content_text

FINGERPRINT = "fp_mock0c0ffee"
SERVICE_TIER = "default"
DONE = b"data: [DONE]\n\n"
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_N = 128

_STATIC_HEADERS = {
    "openai-version": "2020-10-01",
    "openai-organization": "org-mock",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}


def new_id(prefix: str, nbytes: int) -> str:
    return prefix + secrets.token_hex(nbytes)


def response_headers(*, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
    """Per-response headers: fresh ``x-request-id``, server time so far, rate-limit counters."""
    processing_ms = int((time.monotonic() - started) * 1000)
    return {
        **_STATIC_HEADERS,
        "Content-Type": content_type,
        "x-request-id": new_id("req_", 16),
        "openai-processing-ms": str(processing_ms),
    }


# --- errors --------------------------------------------------------------------------------------


def error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> dict:
    return error(message, "invalid_request_error", param=param, code=code)


def invalid_api_key(token: str) -> dict:
    masked = f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"
    return invalid_request(
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def invalid_json() -> dict:
    return invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON.)"
    )


def status_error(status: int, *, model: str, retry_after: float | None = None) -> dict:
    """The error body a real deployment sends with ``status`` (used for injected failures)."""
    if status == 401:
        return invalid_api_key("")
    if status == 404:
        return invalid_request(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if status == 429:
        wait = f"{retry_after:g}s" if retry_after is not None else "1s"
        return error(
            f"Rate limit reached for {model} in organization org-mock on requests per min (RPM): "
            f"Limit 10000, Used 10000, Requested 1. Please try again in {wait}.",
            "requests",
            code="rate_limit_exceeded",
        )
    if status == 503:
        return error("The engine is currently overloaded, please try again later.", "server_error")
    if status >= 500:
        return error(SERVER_ERROR_MESSAGE, "server_error")
    return invalid_request(f"Mock error (HTTP {status}).")


def error_event() -> bytes:
    """The frame OpenAI sends when a stream fails after it started (recorded, no ``[DONE]``)."""
    return b"data: " + orjson.dumps({"error": _ERROR_EVENT}) + b"\n\n"


_ERROR_EVENT = {"message": SERVER_ERROR_MESSAGE, "type": "server_error"}


# --- request validation --------------------------------------------------------------------------


def request_problem(body: Mapping[str, Any]) -> dict | None:
    """The 400 body for a request OpenAI would reject, or None. Checks the fields the mock uses."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _missing("model")
    messages = body.get("messages")
    if messages is None:
        return _missing("messages")
    if not isinstance(messages, list):
        return invalid_request(
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        return invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        problem = _message_problem(index, message)
        if problem is not None:
            return problem
    return _options_problem(body, messages)


def _message_problem(index: int, message: Any) -> dict | None:
    if not isinstance(message, dict):
        return invalid_request(
            f"Invalid type for 'messages[{index}]': expected an object.",
            param=f"messages.[{index}]",
            code="invalid_type",
        )
    role = message.get("role")
    if role is None:
        return _missing(f"messages.[{index}].role")
    if role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in ROLES)
        return invalid_request(
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            param=f"messages.[{index}].role",
            code="invalid_value",
        )
    return None


def _options_problem(body: Mapping[str, Any], messages: list[Any]) -> dict | None:
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N):
        return invalid_request(
            f"Invalid 'n': expected an integer between 1 and {MAX_N}, but got {n!r} instead.",
            param="n",
            code="invalid_value",
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        texts = (content_text(m.get("content")) for m in messages)
        if not any("json" in text.lower() for text in texts):
            return invalid_request(
                "'messages' must contain the word 'json' in some form, to use 'response_format' "
                "of type 'json_object'.",
                param="messages",
            )
    return None


def _missing(param: str) -> dict:
    return invalid_request(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


# --- responses -----------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(
    *, completion_id: str, created: int, model: str, reply: Reply, n: int, usage: dict[str, Any]
) -> bytes:
    """A ``chat.completion`` object with ``n`` identical choices."""
    choices = [
        {
            "index": index,
            "message": _message(reply),
            "logprobs": None,
            "finish_reason": reply.finish_reason,
        }
        for index in range(n)
    ]
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage,
            "service_tier": SERVICE_TIER,
            "system_fingerprint": FINGERPRINT,
        }
    )


def _message(reply: Reply) -> dict[str, Any]:
    if reply.tool_name is None:
        return {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    call = {
        "id": new_id("call_", 12),
        "type": "function",
        "function": {"name": reply.tool_name, "arguments": reply.text},
    }
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [call],
        "refusal": None,
        "annotations": [],
    }


# --- streaming -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamFrames:
    """The SSE frames of one stream before ``[DONE]``, split where chunk pacing applies.

    ``opening`` (role chunks) goes out at once, each of ``pieces`` waits the chunk delay first,
    ``closing`` (finish chunks, then the usage chunk if asked for) follows at once.
    """

    opening: list[bytes]
    pieces: list[bytes]
    closing: list[bytes]

    def all(self) -> list[bytes]:
        return [*self.opening, *self.pieces, *self.closing]


def stream_frames(
    *,
    completion_id: str,
    created: int,
    model: str,
    reply: Reply,
    n: int,
    usage: dict[str, Any] | None,
) -> StreamFrames:
    """Frames of a ``chat.completion.chunk`` stream; ``usage`` set means include_usage was on."""
    head = (
        b'data: {"id":'
        + orjson.dumps(completion_id)
        + b',"object":"chat.completion.chunk","created":'
        + str(created).encode()
        + b',"model":'
        + orjson.dumps(model)
        + b',"service_tier":"'
        + SERVICE_TIER.encode()
        + b'","system_fingerprint":"'
        + FINGERPRINT.encode()
        + b'","choices":['
    )
    tail = b'],"usage":null}\n\n' if usage is not None else b"]}\n\n"
    indexes = range(n)
    if reply.tool_name is None:
        opening = [head + _choice(i, _TEXT_ROLE_DELTA) + tail for i in indexes]
        deltas = [_content_delta(piece) for piece in reply.pieces]
    else:
        opening = [head + _choice(i, _tool_role_delta(reply.tool_name)) + tail for i in indexes]
        deltas = [_arguments_delta(piece) for piece in reply.pieces]
    pieces = [head + _choice(i, delta) + tail for delta in deltas for i in indexes]
    finish = orjson.dumps(reply.finish_reason)
    closing = [head + _choice(i, b"{}", finish) + tail for i in indexes]
    if usage is not None:
        closing.append(head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n")
    return StreamFrames(opening, pieces, closing)


_TEXT_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'


def _choice(index: int, delta: bytes, finish_reason: bytes = b"null") -> bytes:
    return (
        b'{"index":'
        + str(index).encode()
        + b',"delta":'
        + delta
        + b',"logprobs":null,"finish_reason":'
        + finish_reason
        + b"}"
    )


def _tool_role_delta(name: str) -> bytes:
    """First delta of a tool call: role, id, type and name, with empty arguments (recorded)."""
    call = {
        "index": 0,
        "id": new_id("call_", 12),
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return orjson.dumps(
        {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
    )


@lru_cache(maxsize=4096)
def _content_delta(piece: str) -> bytes:
    return orjson.dumps({"content": piece})


@lru_cache(maxsize=4096)
def _arguments_delta(piece: str) -> bytes:
    return orjson.dumps({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
