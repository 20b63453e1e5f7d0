"""Perplexity Sonar (``POST /chat/completions`` under the ``/perplexity`` prefix),
docs/providers.md §4.

OpenAI-shaped, with a UUID ``id``, ``citations``, ``search_results`` and usage extras
(``search_context_size``, ``cost``). Errors are ``{"error": {"message", "type", "code": <int>}}``
except a bad key, which openresty answers with an HTML 401. Streams carry cumulative usage, end
with a ``chat.completion.done`` chunk and send no ``[DONE]`` (``mock:pplx_done`` adds it;
``mock:pplx_legacy`` streams the 2025 way).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from ..clinical import text_answer
from ..config import MockConfig
from ..replies import (
    Reply,
    content_text,
    estimate_tokens,
    json_reply,
    last_user_text,
)
from .base import JSON_TYPE, SSE_TYPE, Call, Protocol, StreamPlan, bearer_token, key_accepted

ROLES = ("system", "user", "assistant", "tool")
SEARCH_CONTEXT_SIZES = ("low", "medium", "high")
# USD per 1M input and output tokens, and the request fee by search context size
# (docs/providers.md §5.4).
PRICES: dict[str, tuple[float, float, tuple[float, float, float]]] = {
    "sonar": (1.0, 1.0, (0.005, 0.008, 0.012)),
    "sonar-pro": (3.0, 15.0, (0.006, 0.010, 0.014)),
    "sonar-reasoning-pro": (2.0, 8.0, (0.006, 0.010, 0.014)),
    "sonar-deep-research": (2.0, 8.0, (0.005, 0.005, 0.005)),
}
CITATIONS = [
    "https://en.wikipedia.org/wiki/Mock_object",
    "https://martinfowler.com/articles/mocksArentStubs.html",
]
SEARCH_RESULTS = [
    {
        "title": "Mock object - Wikipedia",
        "url": CITATIONS[0],
        "date": "2024-03-01",
        "last_updated": "2025-01-15",
        "snippet": "In computer science, a mock object is an object that imitates a real object.",
        "source": "web",
    },
    {
        "title": "Mocks Aren't Stubs",
        "url": CITATIONS[1],
        "date": None,
        "last_updated": "2024-11-02",
        "snippet": "The term 'Mock Objects' has become a popular one to describe special case "
        "objects that mimic real objects for testing.",
        "source": "web",
    },
]
UNAUTHORIZED_HTML = (
    b"<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
    b"<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
DONE = b"data: [DONE]\n\n"
_ERRORS = {
    400: ("bad_request", "Mock error (HTTP 400)."),
    403: ("forbidden", "Forbidden."),
    404: ("not_found", "Not found."),
    429: ("rate_limit_exceeded", "Rate limit exceeded. Please try again later."),
    500: ("internal_server_error", "Internal server error."),
    503: ("service_unavailable", "Service temporarily unavailable."),
}
# The ResponseFormat union's validation errors when the type is none of its members (quoted 400).
_FORMAT_ERRORS = [
    "At body -> response_format -> ResponseFormatText -> type: Input should be 'text'",
    "At body -> response_format -> ResponseFormatJSONSchema -> type: Input should be 'json_schema'",
    "At body -> response_format -> ResponseFormatJSONSchema -> json_schema: Field required",
    "At body -> response_format -> ResponseFormatRegex -> type: Input should be 'regex'",
    "At body -> response_format -> ResponseFormatRegex -> regex: Field required",
]


class PerplexityProtocol(Protocol):
    name = "perplexity"

    def response_headers(self, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
        return {"Content-Type": content_type}

    def auth_error(
        self, request: web.Request, config: MockConfig, started: float
    ) -> web.Response | None:
        token = bearer_token(request)
        if token is not None and key_accepted(token, config):
            return None
        return _unauthorized()

    def bad_request(self, request: web.Request, message: str, started: float) -> web.Response:
        return self.json_response(400, error(400, "bad_request", message), started)

    def directive_text(self, body: Mapping[str, Any]) -> str:
        messages = body.get("messages")
        return last_user_text(messages) if isinstance(messages, list) else ""

    def status_error(self, status: int, call: Call) -> Any:
        default = ("bad_request" if status < 500 else "internal_server_error", "")
        type_, message = _ERRORS.get(status, default)
        return error(status, type_, message or f"Mock error (HTTP {status}).")

    def injected_error(self, call: Call) -> web.Response:
        if call.fault.status == 401 and call.fault.body is None:
            return _unauthorized(call.fault.headers)
        return super().injected_error(call)

    def request_error(self, call: Call) -> web.Response | None:
        problem = request_problem(call.body, call.config)
        return None if problem is None else self.json_response(400, problem, call.started)

    def wants_stream(self, call: Call) -> bool:
        return call.body.get("stream") is True

    def answer(self, call: Call) -> web.Response:
        reply, prompt = plan_reply(call), prompt_tokens(call.body)
        body = {
            "id": str(uuid.uuid4()),
            "model": call.body["model"],
            "created": int(time.time()),
            "usage": usage(call.body, prompt, len(reply.pieces)),
            "citations": CITATIONS,
            "search_results": SEARCH_RESULTS,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
        }
        return web.Response(body=orjson.dumps(body), headers=self.response_headers(call.started))

    def stream(self, call: Call) -> StreamPlan:
        reply = plan_reply(call)
        legacy = bool(call.fault.pplx_legacy)
        frames = _legacy_frames(call, reply) if legacy else _frames(call, reply)
        return StreamPlan(
            frames=frames,
            paced=range(len(reply.pieces)),
            headers=self.response_headers(call.started, SSE_TYPE),
            ending=DONE if call.fault.pplx_done else b"",
            error_event=_ERROR_EVENT,
        )


def error(code: int, type_: str, message: str) -> dict[str, Any]:
    """Perplexity's error body: ``code`` is the HTTP status as an integer, there is no param."""
    return {"error": {"message": message, "type": type_, "code": code}}


def _unauthorized(headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=401,
        body=UNAUTHORIZED_HTML,
        headers={"Content-Type": "text/html", "Server": "openresty", **(headers or {})},
    )


# --- request validation --------------------------------------------------------------------------


def request_problem(body: Mapping[str, Any], config: MockConfig) -> dict[str, Any] | None:
    """The 400 body Perplexity would answer, or None. Checks the fields the mock uses."""
    model = body.get("model")
    if not isinstance(model, str):
        return _bad_request("At body -> model: Field required")
    if model not in PRICES and model not in config.extra_models:
        return error(
            400,
            "invalid_model",
            f"Invalid model '{model}'. Permitted models can be found in the documentation at "
            "https://docs.perplexity.ai/guides/model-cards.",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad_request("At body -> messages: Field required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return _bad_request(
                f"At body -> messages -> {index} -> role: Input should be one of "
                "'system', 'user', 'assistant' or 'tool'"
            )
    if (problem := _alternation_problem(messages)) is not None:
        return problem
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return error(400, "bad_request", orjson.dumps(_FORMAT_ERRORS).decode())
    return None


def _bad_request(message: str) -> dict[str, Any]:
    return error(400, "bad_request", orjson.dumps([message]).decode())


def _alternation_problem(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """After the system messages, user (or tool) and assistant turns alternate; a user ends."""
    roles = ["user" if m["role"] == "tool" else m["role"] for m in messages]
    turns = roles[next((i for i, r in enumerate(roles) if r != "system"), len(roles)) :]
    expected = "user"
    for role in turns:
        if role != expected:
            return error(
                400,
                "invalid_message",
                "After the (optional) system message(s), user and assistant roles should be "
                "alternating.",
            )
        expected = "assistant" if role == "user" else "user"
    if not turns or turns[-1] != "user":
        return error(400, "invalid_message", "Last message must have role `user` or `tool`.")
    return None


# --- replies -------------------------------------------------------------------------------------


def plan_reply(call: Call) -> Reply:
    """JSON for a ``json_schema`` response format, else text (tools are not called)."""
    body = call.body
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return json_reply(schema if isinstance(schema, dict) else {}, limit)
    return text_answer(call.config, last_user_text(body["messages"]), call.chunks, limit)


def prompt_tokens(body: Mapping[str, Any]) -> int:
    return estimate_tokens(content_text(message.get("content")) for message in body["messages"])


def search_context_size(body: Mapping[str, Any]) -> str:
    options = body.get("web_search_options")
    size = options.get("search_context_size") if isinstance(options, dict) else None
    return size if size in SEARCH_CONTEXT_SIZES else "low"


def usage(body: Mapping[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    """The final usage, with the cost in USD (rounded as the API does, to 5 decimals)."""
    size = search_context_size(body)
    input_rate, output_rate, fees = PRICES.get(body["model"], PRICES["sonar"])
    input_cost = round(prompt * input_rate / 1e6, 5)
    output_cost = round(completion * output_rate / 1e6, 5)
    request_cost = fees[SEARCH_CONTEXT_SIZES.index(size)]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "search_context_size": size,
        "cost": {
            "input_tokens_cost": input_cost,
            "output_tokens_cost": output_cost,
            "request_cost": request_cost,
            "total_cost": round(input_cost + output_cost + request_cost, 5),
        },
    }


# --- stream --------------------------------------------------------------------------------------


def _frames(call: Call, reply: Reply) -> list[bytes]:
    """2026 stream: token chunks with running usage (cost still 0), then the done chunk."""
    body = call.body
    prompt = prompt_tokens(body)
    head = _head(body)
    size = search_context_size(body).encode()
    frames = []
    for count, piece in enumerate(reply.pieces, start=1):
        running = (
            b'"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
            b'"search_context_size":"%s","cost":{"input_tokens_cost":0,"output_tokens_cost":0,'
            b'"total_cost":0}},' % (prompt, count, prompt + count, size)
        )
        frames.append(
            head
            + running
            + _CITATIONS
            + b'"object":"chat.completion.chunk","choices":[{"index":0,"delta":'
            + _delta(piece)
            + b',"finish_reason":null}]}\n\n'
        )
    final = orjson.dumps(usage(body, prompt, len(reply.pieces)))
    frames.append(
        head
        + b'"usage":'
        + final
        + b","
        + _CITATIONS
        + _SEARCH_RESULTS
        + b'"object":"chat.completion.done","choices":[{"index":0,"delta":'
        + _delta("")
        + b',"finish_reason":"'
        + reply.finish_reason.encode()
        + b'"}]}\n\n'
    )
    return frames


def _legacy_frames(call: Call, reply: Reply) -> list[bytes]:
    """2025 stream: ``object: chat.completion`` chunks with the text so far and the delta."""
    body = call.body
    prompt = prompt_tokens(body)
    head = _head(body)
    size = search_context_size(body)
    frames = []
    text = ""
    steps = [(piece, None) for piece in reply.pieces] + [("", reply.finish_reason)]
    for count, (piece, finish_reason) in enumerate(steps, start=1):
        text += piece
        completion = min(count, len(reply.pieces))
        running = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "search_context_size": size,
        }
        choice = {
            "index": 0,
            "finish_reason": finish_reason,
            "message": {"role": "assistant", "content": text},
            "delta": {"role": "assistant", "content": piece},
        }
        frames.append(
            head
            + b'"usage":'
            + orjson.dumps(running)
            + b","
            + _CITATIONS
            + _SEARCH_RESULTS
            + b'"object":"chat.completion","choices":['
            + orjson.dumps(choice)
            + b"]}\n\n"
        )
    return frames


def _head(body: Mapping[str, Any]) -> bytes:
    return (
        b'data: {"id":"'
        + str(uuid.uuid4()).encode()
        + b'","model":'
        + orjson.dumps(body["model"])
        + b',"created":'
        + str(int(time.time())).encode()
        + b","
    )


@lru_cache(maxsize=4096)
def _delta(piece: str) -> bytes:
    return orjson.dumps({"role": "assistant", "content": piece})


_CITATIONS = b'"citations":' + orjson.dumps(CITATIONS) + b","
_SEARCH_RESULTS = b'"search_results":' + orjson.dumps(SEARCH_RESULTS) + b","
_ERROR_EVENT = (
    b"data: "
    + orjson.dumps(error(500, "internal_server_error", "Internal server error."))
    + b"\n\n"
)
