"""Google Gemini API (``POST /v1beta/models/{model}:generateContent``), docs/providers.md §3.

Request fields are read in camelCase or snake_case, as Google's proto-JSON parser accepts both.
Errors are ``{"error": {"code", "message", "status"}}``; a bad or missing key is a 400. Streams
(``:streamGenerateContent``) are ``data:`` lines with ``?alt=sse`` and one JSON array without it;
either way there is no ``[DONE]``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from ..clinical import text_answer
from ..config import MockConfig
from ..replies import Reply, estimate_tokens, json_reply, tool_reply
from .base import Call, Protocol, StreamPlan, int_field, key_accepted

JSON_TYPE = "application/json; charset=UTF-8"
SSE_TYPE = "text/event-stream"
METHODS = ("generateContent", "streamGenerateContent")
ROLES = ("user", "model")
MAX_CANDIDATES = 8
KNOWN_MODELS = frozenset(
    {
        "gemini-1.5-pro",
        "gemini-1.5-pro-001",
        "gemini-1.5-pro-002",
        "gemini-1.5-pro-latest",
        "gemini-1.5-flash",
        "gemini-1.5-flash-001",
        "gemini-1.5-flash-002",
        "gemini-1.5-flash-latest",
        "gemini-1.5-flash-8b",
        "gemini-1.5-flash-8b-001",
        "gemini-1.5-flash-8b-latest",
        "gemini-2.0-flash",
        "gemini-2.0-flash-001",
        "gemini-2.0-flash-exp",
        "gemini-2.0-flash-lite",
        "gemini-2.0-flash-lite-001",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-flash-latest",
        "gemini-flash-lite-latest",
        "gemini-pro-latest",
        "gemini-3.5-flash-lite",
        "gemini-3.8-flash",
        "gemini-4-argon",
    }
)
# GenerateContentRequest's fields (camelCase; snake_case spellings are accepted too).
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "contents",
        "systemInstruction",
        "generationConfig",
        "tools",
        "toolConfig",
        "safetySettings",
        "cachedContent",
    }
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_INTERNAL = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    429: "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: _INTERNAL,
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_BAD_KEY = "API key not valid. Please pass a valid API key."
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
]


class GeminiProtocol(Protocol):
    name = "gemini"

    def response_headers(self, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
        processing_ms = int((time.monotonic() - started) * 1000)
        return {**_STATIC_HEADERS, "Content-Type": content_type, **_timing(processing_ms)}

    def error_response(
        self,
        request: web.Request,
        status: int,
        payload: Any,
        started: float,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        # The JSON-array stream reports even its early errors inside an array.
        if _target(request)[1] == "streamGenerateContent" and not _sse(request):
            payload = [payload]
        return self.json_response(status, payload, started, headers)

    def auth_error(
        self, request: web.Request, config: MockConfig, started: float
    ) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or ""
        if key_accepted(key, config):
            return None
        return self.error_response(request, 400, _bad_key_error(), started)

    def bad_request(self, request: web.Request, message: str, started: float) -> web.Response:
        return self.error_response(request, 400, error(400, message), started)

    def invalid_json(self, request: web.Request, started: float) -> web.Response:
        return self.bad_request(
            request, "Invalid JSON payload received. Unexpected token.", started
        )

    def directive_text(self, body: Mapping[str, Any]) -> str:
        return _last_user_text(body)

    def status_error(self, status: int, call: Call) -> Any:
        if status == 404:
            return error(404, _model_not_found(call.request))
        message = _MESSAGES.get(status, f"Mock error (HTTP {status}).")
        if status != 429:
            return error(status, message)
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            }
        ]
        if call.fault.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{call.fault.retry_after:g}s",
                }
            )
        return error(429, message, details)

    def request_error(self, call: Call) -> web.Response | None:
        model = _target(call.request)[0]
        if model not in KNOWN_MODELS and model not in call.config.extra_models:
            body = error(404, _model_not_found(call.request))
            return self.error_response(call.request, 404, body, call.started)
        problem = request_problem(call.body)
        if problem is None:
            return None
        return self.error_response(call.request, 400, problem, call.started)

    def wants_stream(self, call: Call) -> bool:
        return _target(call.request)[1] == "streamGenerateContent"

    def answer(self, call: Call) -> web.Response:
        model = _target(call.request)[0]
        prompt = prompt_tokens(call.body)
        if call.fault.safety_block:
            body: dict[str, Any] = {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS},
                "usageMetadata": usage(prompt),
            }
        else:
            reply, n = plan_reply(call), _candidate_count(call.body)
            body = {
                "candidates": [
                    {"content": _content(reply), "finishReason": _finish(reply), "index": i}
                    for i in range(n)
                ],
                "usageMetadata": usage(prompt, n * len(reply.pieces)),
            }
        body["modelVersion"] = model
        body["responseId"] = _response_id()
        return web.Response(body=orjson.dumps(body), headers=self.response_headers(call.started))

    def stream(self, call: Call) -> StreamPlan:
        objects = _stream_objects(call)
        if _sse(call.request):
            return StreamPlan(
                frames=[b"data: " + obj + b"\r\n\r\n" for obj in objects],
                paced=range(len(objects)),
                headers=self.response_headers(call.started, SSE_TYPE),
                error_event=b"data: " + _STREAM_ERROR + b"\r\n\r\n",
            )
        return StreamPlan(
            frames=objects,
            paced=range(len(objects)),
            headers=self.response_headers(call.started),
            ending=b"]",
            error_event=_STREAM_ERROR + b"]",
            head=b"[",
            separator=b",\r\n",
        )


def error(code: int, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """A ``google.rpc.Status`` error body."""
    status = _STATUS_NAMES.get(code, "INVALID_ARGUMENT" if code < 500 else "INTERNAL")
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return {"error": body}


def gemini_method_error(request: web.Request) -> web.Response | None:
    """A 404 for ``models/{model}:{method}`` with a method the mock does not serve."""
    if _target(request)[1] in METHODS:
        return None
    body = error(404, f"Method not found: {request.match_info['target']}.")
    return web.Response(status=404, body=orjson.dumps(body), content_type="application/json")


def _bad_key_error() -> dict[str, Any]:
    return error(
        400,
        _BAD_KEY,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": _BAD_KEY,
            },
        ],
    )


def _model_not_found(request: web.Request) -> str:
    model, method = _target(request)
    version = request.path.split("/", 2)[1]
    return (
        f"models/{model} is not found for API version {version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods."
    )


def _target(request: web.Request) -> tuple[str, str]:
    """``(model, method)`` of ``models/{model}:{method}``."""
    model, _, method = request.match_info["target"].rpartition(":")
    return model, method


def _sse(request: web.Request) -> bool:
    return request.query.get("alt") == "sse"


# --- request fields ------------------------------------------------------------------------------


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` in camelCase or snake_case spelling (None when absent)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


@lru_cache(maxsize=256)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def request_problem(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The 400 body Gemini would answer, or None. Checks the fields the mock uses."""
    for name in body:
        if _camel(name) not in _REQUEST_FIELDS:
            message = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            violation = {"description": message}
            return error(
                400,
                message,
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [violation],
                    }
                ],
            )
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return error(400, "* GenerateContentRequest.contents: contents is not specified\n")
    for index, content in enumerate(contents):
        if not isinstance(content, dict):
            return error(400, f"Invalid value at 'contents[{index}]', must be an object.")
        if (content.get("role") or "user") not in ROLES:
            return error(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return error(
                400,
                f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be "
                "empty.\n",
            )
    return None


def _last_user_text(body: Mapping[str, Any]) -> str:
    contents = body.get("contents")
    if not isinstance(contents, list):
        return ""
    for content in reversed(contents):
        if isinstance(content, dict) and (content.get("role") or "user") == "user":
            return _text(content)
    return ""


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def prompt_tokens(body: Mapping[str, Any]) -> int:
    system = field(body, "systemInstruction")
    texts = [_text(system)] if system else []
    texts += [_text(content) for content in body["contents"]]
    return estimate_tokens(texts)


def _candidate_count(body: Mapping[str, Any]) -> int:
    count = int_field(field(field(body, "generationConfig"), "candidateCount"))
    return 1 if count is None else min(max(count, 1), MAX_CANDIDATES)


# --- replies -------------------------------------------------------------------------------------


def plan_reply(call: Call) -> Reply:
    """A function call when the request lets the model call one, JSON in JSON mode, else text."""
    body = call.body
    config = field(body, "generationConfig")
    limit = field(config, "maxOutputTokens")
    function = _function_to_call(body)
    if function is not None:
        parameters = field(function, "parameters") or field(function, "parametersJsonSchema")
        # A function call arrives whole, so maxOutputTokens does not cut it here.
        return tool_reply(function["name"], parameters)
    if field(config, "responseMimeType") == "application/json":
        schema = field(config, "responseSchema") or field(config, "responseJsonSchema")
        return json_reply(schema if isinstance(schema, dict) else None, limit)
    return text_answer(call.config, _last_user_text(body), call.chunks, limit)


def _function_to_call(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """With mode ``ANY`` the first allowed function; with ``AUTO`` the first function when the
    user spoke last with more than function responses, so a tool round trip terminates."""
    declarations = [
        declaration
        for tool in _dicts(field(body, "tools"))
        for declaration in _dicts(field(tool, "functionDeclarations"))
        if isinstance(declaration.get("name"), str)
    ]
    calling = field(field(body, "toolConfig"), "functionCallingConfig")
    mode = str(field(calling, "mode") or "AUTO").upper()
    if not declarations or mode == "NONE":
        return None
    if mode == "ANY":
        allowed = field(calling, "allowedFunctionNames") or ()
        return next((d for d in declarations if d["name"] in allowed), declarations[0])
    last = body["contents"][-1]
    if (last.get("role") or "user") != "user":
        return None
    if any(field(part, "functionResponse") is not None for part in _dicts(last.get("parts"))):
        return None
    return declarations[0]


def _dicts(values: Any) -> Iterable[dict[str, Any]]:
    return (v for v in values if isinstance(v, dict)) if isinstance(values, list) else ()


def _content(reply: Reply) -> dict[str, Any]:
    if reply.tool_name is not None:
        call = {"name": reply.tool_name, "args": orjson.loads(reply.text)}
        return {"parts": [{"functionCall": call}], "role": "model"}
    if not reply.pieces:
        return {"role": "model"}  # what Gemini sends when it produced nothing
    return {"parts": [{"text": reply.text}], "role": "model"}


def _finish(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.finish_reason == "length" else "STOP"


def usage(prompt: int, candidates: int | None = None) -> dict[str, Any]:
    """``usageMetadata``; without ``candidates`` the running form of a stream chunk."""
    metadata: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        metadata["candidatesTokenCount"] = candidates
    metadata["totalTokenCount"] = prompt + (candidates or 0)
    metadata["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return metadata


def _response_id() -> str:
    return secrets.token_urlsafe(16)[:22]


# --- stream --------------------------------------------------------------------------------------


def _stream_objects(call: Call) -> list[bytes]:
    """The ``GenerateContentResponse`` objects of a stream, as JSON (assembled from parts)."""
    model = _target(call.request)[0]
    prompt = prompt_tokens(call.body)
    tail = (
        b',"modelVersion":'
        + orjson.dumps(model)
        + b',"responseId":'
        + orjson.dumps(_response_id())
        + b"}"
    )
    if call.fault.safety_block:
        feedback = {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        head = b'{"promptFeedback":' + orjson.dumps(feedback)
        return [head + b',"usageMetadata":' + orjson.dumps(usage(prompt)) + tail]
    reply, n = plan_reply(call), _candidate_count(call.body)
    final_usage = b'],"usageMetadata":' + orjson.dumps(usage(prompt, n * len(reply.pieces))) + tail
    finish = b',"finishReason":"' + _finish(reply).encode() + b'"'
    if reply.tool_name is not None:
        parts = orjson.dumps(_content(reply))
        return [_candidates(parts, finish, n) + final_usage]
    running_usage = b'],"usageMetadata":' + orjson.dumps(usage(prompt)) + tail
    pieces = reply.pieces or ("",)
    objects = [_candidates(_text_content(p), b"", n) + running_usage for p in pieces[:-1]]
    objects.append(_candidates(_text_content(pieces[-1]), finish, n) + final_usage)
    return objects


def _candidates(content: bytes, finish: bytes, n: int) -> bytes:
    return b'{"candidates":[' + b",".join(
        b'{"content":' + content + finish + b',"index":' + str(i).encode() + b"}" for i in range(n)
    )


@lru_cache(maxsize=4096)
def _text_content(piece: str) -> bytes:
    return b'{"parts":[{"text":' + orjson.dumps(piece) + b'}],"role":"model"}'


@lru_cache(maxsize=1024)
def _timing(processing_ms: int) -> dict[str, str]:
    return {"Server-Timing": f"gfet4t7; dur={processing_ms}"}


_STATIC_HEADERS = {
    "Vary": "Origin, X-Origin, Referer",
    "Server": "scaffolding on HTTPServer2",
    "X-XSS-Protection": "0",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
}
_STREAM_ERROR = orjson.dumps(error(500, _INTERNAL))
