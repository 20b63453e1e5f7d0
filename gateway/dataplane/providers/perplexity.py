"""Perplexity Sonar (``POST {base}/chat/completions``): OpenAI-shaped, with differences.

Requests: an OpenAI parameter Perplexity cannot honour is refused when ignoring it would
give a wrong answer (tools, n > 1, logprobs, ``json_object``, audio) and dropped when it is
harmless (seed, stop, logit_bias, user, stream_options, ...). Perplexity's own parameters
(``search_domain_filter``, ``web_search_options``, ``return_images``, ...) pass through.

Answers: the UUID id becomes ``chatcmpl-<uuid>``; ``citations``, ``search_results``,
``images``, ``related_questions`` and ``videos`` stay as extra top-level fields (on the
finish chunk when streaming). Perplexity's own USD ``usage.cost`` is not forwarded: the
gateway bills with its own prices and reports that cost itself.

Streams: Perplexity chunks (``object`` "chat.completion", "chat.completion.chunk" or
"chat.completion.done", ``message`` and/or ``delta``, cumulative usage and citations in
every chunk, with or without ``[DONE]``) become OpenAI ``chat.completion.chunk`` events
with deltas only, one finish chunk and, when the client asked for it, one usage chunk.

Billing: Perplexity charges a fee per request by search context size. The size billed is
the one the answer reports, else the one the client asked for (the gateway passes it as
``search_context_size=`` to ``parse_response`` or in ``state.extra["search_context_size"]``;
see :func:`requested_search_context_size`), else "low", Perplexity's default.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from aqta.errors import AqtaError
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.base import (
    JsonObject,
    StreamState,
    UpstreamRequest,
    only_system,
    refusal,
)
from gateway.dataplane.providers.openai import DATA, DONE, EVENT_END

SEARCH_CONTEXT_SIZES = ("low", "medium", "high")
DEFAULT_SEARCH_CONTEXT_SIZE = "low"

# Perplexity-only answer fields that are kept as extra top-level fields.
EXTRA_FIELDS = ("citations", "search_results", "images", "related_questions", "videos")

# OpenAI parameters Perplexity does not take and whose loss changes nothing a client
# relies on for correctness (best-effort or bookkeeping knobs).
DROPPED = frozenset(
    {
        "seed",
        "stop",
        "logit_bias",
        "user",
        "stream_options",
        "parallel_tool_calls",
        "service_tier",
        "store",
        "metadata",
        "prompt_cache_key",
        "safety_identifier",
        "prediction",
        "verbosity",
        "modalities",
        # Refused by check_request unless they ask for nothing (n: 1, logprobs: false, ...).
        "n",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
    }
)

STREAM_DONE_OBJECT = "chat.completion.done"
_KEY = re.compile(r"pplx-[A-Za-z0-9_-]{4,}")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(rb"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(rb"<[^>]+>")


def requested_search_context_size(body: JsonObject) -> str | None:
    """The search context size the client asked for (``web_search_options``), if valid."""
    options = body.get("web_search_options")
    size = options.get("search_context_size") if isinstance(options, dict) else None
    return size if size in SEARCH_CONTEXT_SIZES else None


class PerplexityProvider:
    name = "perplexity"

    # --- requests ---------------------------------------------------------------------

    def check_request(self, body: JsonObject) -> None:
        """Refuse what Perplexity would silently ignore or answer wrongly."""
        _refuse_tool_use(body)
        _refuse_answer_options(body)

    def build_request(
        self, deployment: Deployment, body: JsonObject, stream: bool
    ) -> UpstreamRequest:
        endpoint = deployment.endpoint
        payload = {key: value for key, value in body.items() if key not in DROPPED}
        payload["model"] = deployment.upstream_model_id
        payload["stream"] = stream
        # Perplexity documents max_tokens only; OpenAI's newer name maps onto it.
        limit = payload.pop("max_completion_tokens", None)
        if limit is not None and payload.get("max_tokens") is None:
            payload["max_tokens"] = limit
        messages = body.get("messages") or []
        if only_system(messages):  # Perplexity needs a user turn: they become it
            payload["messages"] = [{**m, "role": "user"} for m in messages]
        elif any(m.get("role") == "developer" for m in messages):
            payload["messages"] = [_developer_as_system(m) for m in messages]
        headers = {"Content-Type": "application/json"}
        if stream:
            headers["Accept"] = "text/event-stream"
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        return UpstreamRequest(
            url=endpoint.base_url.rstrip("/") + "/chat/completions",
            headers=headers,
            body=orjson.dumps(payload),
        )

    # --- answers ----------------------------------------------------------------------

    def parse_response(
        self, raw: bytes, model: str, *, search_context_size: str | None = None
    ) -> tuple[JsonObject, Usage]:
        """An upstream 200 body → (OpenAI chat.completion, usage).

        ``search_context_size`` is what the client asked for: the fallback when the
        answer does not say which size it was billed at."""
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ValueError("upstream answer is not a chat completion")
        raw_usage: JsonObject = data["usage"] if isinstance(data.get("usage"), dict) else {}
        size = _size(raw_usage, search_context_size)
        answer: dict[str, Any] = {
            "id": _chat_id(data.get("id")),
            "object": "chat.completion",
            "created": data.get("created") or int(time.time()),
            "model": model or data.get("model") or "",
            "choices": [_choice(choice) for choice in data["choices"]],
            "usage": _openai_usage(raw_usage, size),
        }
        answer.update({key: data[key] for key in EXTRA_FIELDS if data.get(key) is not None})
        return answer, _usage(raw_usage, size)

    # --- streams ----------------------------------------------------------------------

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        """Perplexity SSE → OpenAI chunks. A ``[DONE]`` or a ``chat.completion.done`` chunk
        ends the stream here; otherwise :meth:`finish_stream` ends it at end of body."""
        return self._translate(_payloads(data, state), state)

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """End of body: a stream that reached a finish_reason is complete (Perplexity often
        sends no end marker); one that did not was cut and stays not done."""
        tail, state.pending = state.pending, b""
        try:
            out = self._translate(_data(tail.replace(b"\r\n", b"\n")), state)
        except orjson.JSONDecodeError:  # the body was cut inside an event
            out = []
        if not (state.done or state.error) and state.extra.get("finish"):
            out += self._end(state)
        return out

    def _translate(self, payloads: list[bytes], state: StreamState) -> list[bytes]:
        out: list[bytes] = []
        for payload in payloads:
            if state.done or state.error:
                break
            if payload == DONE:
                out += self._end(state)
                break
            chunk = orjson.loads(payload)
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                state.error = _event(_openai_error(chunk["error"]))
                break
            out += self._deltas(chunk, state)
            if chunk.get("object") == STREAM_DONE_OBJECT:
                out += self._end(state)
        return out

    def _deltas(self, chunk: JsonObject, state: StreamState) -> list[bytes]:
        """Content deltas of one Perplexity chunk; remembers usage, extras, finish reasons."""
        scratch = state.extra
        if "id" not in scratch:
            scratch["id"] = _chat_id(chunk.get("id"))
            scratch["created"] = chunk.get("created") or int(time.time())
            scratch["model"] = state.model or chunk.get("model") or ""
        extras = scratch.setdefault("extras", {})
        extras.update({key: chunk[key] for key in EXTRA_FIELDS if chunk.get(key) is not None})
        if isinstance(chunk.get("usage"), dict):
            # Cumulative: the latest replaces the previous (never summed), so a cut stream
            # still bills what Perplexity had counted.
            scratch["usage"] = chunk["usage"]
            state.usage = _usage(chunk["usage"], _size(chunk["usage"], _hint(state)))
        out = []
        texts = scratch.setdefault("texts", {})
        for choice in chunk.get("choices") or ():
            index = choice.get("index") or 0
            first = index not in texts
            seen = texts.get(index, "")
            text = _increment(choice, seen)
            texts[index] = seen + text
            if first or text:
                delta = {"role": "assistant", "content": text} if first else {"content": text}
                out.append(self._chunk(state, [_delta_choice(index, delta)]))
            if choice.get("finish_reason"):
                scratch.setdefault("finish", {})[index] = choice["finish_reason"]
                state.finish_reason = choice["finish_reason"]
        return out

    def _end(self, state: StreamState) -> list[bytes]:
        """The finish chunk (with citations and search results), then the usage chunk."""
        state.done = True
        scratch = state.extra
        if "id" not in scratch:  # an end marker before any chunk: nothing to finish
            return []
        finish = scratch.get("finish") or {0: "stop"}
        choices = [_delta_choice(index, {}, reason) for index, reason in sorted(finish.items())]
        out = [self._chunk(state, choices, **scratch["extras"])]
        if "usage" in scratch:
            size = _size(scratch["usage"], _hint(state))
            out.append(self._chunk(state, [], usage=_openai_usage(scratch["usage"], size)))
        return out

    def _chunk(self, state: StreamState, choices: list[JsonObject], **fields: Any) -> bytes:
        scratch = state.extra
        chunk = {
            "id": scratch["id"],
            "object": "chat.completion.chunk",
            "created": scratch["created"],
            "model": scratch["model"],
            "choices": choices,
            **fields,
        }
        if state.first is None:
            state.first = chunk
        state.chunks += 1
        return _event(chunk)

    # --- errors -----------------------------------------------------------------------

    def error_message(self, status: int, raw: bytes) -> str:
        """JSON errors give their message; HTML pages (openresty's 401) their title."""
        message = _json_message(raw)
        if message is None:  # not JSON
            message = _html_message(raw) or _plain(raw)
        return _KEY.sub("pplx-***", message or f"HTTP {status}")[:300]


# --- helpers ----------------------------------------------------------------------------


def _unsupported(param: str, why: str, *, what: str | None = None) -> AqtaError:
    return refusal(f"{what or param} is not supported by Perplexity: {why}.", param)


def _refuse_tool_use(body: JsonObject) -> None:
    if body.get("tools"):
        raise _unsupported("tools", "its models cannot call tools")
    if body.get("functions"):
        raise _unsupported("functions", "its models cannot call functions")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise _unsupported("tool_choice", "its models cannot call tools")
    if body.get("function_call") not in (None, "none", "auto"):
        raise _unsupported("function_call", "its models cannot call functions")


def _refuse_answer_options(body: JsonObject) -> None:
    """Choices, log probabilities, JSON mode and output other than text."""
    if (body.get("n") or 1) > 1:
        raise _unsupported("n", "it returns a single choice; use n = 1", what="n > 1")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name):
            raise _unsupported(name, "it returns no log probabilities")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        raise _unsupported(
            "response_format",
            "use json_schema with a schema instead",
            what="response_format json_object",
        )
    if body.get("audio"):
        raise _unsupported("audio", "its models answer in text only")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _unsupported("modalities", "its models answer in text only")


def _developer_as_system(message: JsonObject) -> JsonObject:
    # Perplexity knows system/user/assistant; "developer" is OpenAI's newer name for system.
    return {**message, "role": "system"} if message.get("role") == "developer" else message


def _chat_id(upstream_id: Any) -> str:
    value = str(upstream_id or uuid.uuid4())
    return value if value.startswith("chatcmpl-") else f"chatcmpl-{value}"


def _choice(choice: JsonObject) -> JsonObject:
    message = choice.get("message") or {}
    return {
        "index": choice.get("index") or 0,
        "message": {
            "role": "assistant",
            "content": message.get("content"),
            "refusal": None,
        },
        "logprobs": None,
        "finish_reason": choice.get("finish_reason") or "stop",
    }


def _delta_choice(index: int, delta: JsonObject, finish_reason: str | None = None) -> JsonObject:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _increment(choice: JsonObject, seen: str) -> str:
    """New text in a chunk: its ``delta``, else what its cumulative ``message`` adds."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        text = delta.get("content")
        return text if isinstance(text, str) else ""
    content = (choice.get("message") or {}).get("content")
    if not isinstance(content, str):
        return ""
    return content[len(seen) :] if content.startswith(seen) else content


def _hint(state: StreamState) -> str | None:
    return state.extra.get("search_context_size")


def _size(raw_usage: JsonObject, requested: str | None) -> str:
    reported = raw_usage.get("search_context_size")
    for size in (reported, requested):
        if size in SEARCH_CONTEXT_SIZES:
            return size
    return DEFAULT_SEARCH_CONTEXT_SIZE


def _usage(raw_usage: JsonObject, size: str) -> Usage:
    return Usage(
        prompt_tokens=int(raw_usage.get("prompt_tokens") or 0),
        completion_tokens=int(raw_usage.get("completion_tokens") or 0),
        search_context_size=size,
    )


def _openai_usage(raw_usage: JsonObject, size: str) -> JsonObject:
    """OpenAI usage plus Perplexity's token counts; the upstream USD ``cost`` is left out."""
    prompt = int(raw_usage.get("prompt_tokens") or 0)
    completion = int(raw_usage.get("completion_tokens") or 0)
    usage: JsonObject = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(raw_usage.get("total_tokens") or prompt + completion),
    }
    usage.update({k: v for k, v in raw_usage.items() if k not in usage and k != "cost"})
    usage["search_context_size"] = size
    if raw_usage.get("reasoning_tokens") is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": raw_usage["reasoning_tokens"]}
    return usage


def _openai_error(error: Any) -> JsonObject:
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    return {
        "error": {
            "message": str(error.get("message") or error.get("type") or "upstream error"),
            "type": str(error.get("type") or "api_error"),
            "code": None if code is None else str(code),
        }
    }


def _event(chunk: JsonObject) -> bytes:
    return DATA + b" " + orjson.dumps(chunk) + EVENT_END


def _payloads(data: bytes, state: StreamState) -> list[bytes]:
    """The data of each complete SSE event; the incomplete rest waits in state.pending."""
    buffer = (state.pending + data).replace(b"\r\n", b"\n")
    *events, state.pending = buffer.split(EVENT_END)
    return [payload for event in events for payload in _data(event)]


def _data(event: bytes) -> list[bytes]:
    """An event's data (its ``data:`` lines joined); none for comments and keep-alives."""
    lines = [line[len(DATA) :].strip() for line in event.split(b"\n") if line.startswith(DATA)]
    return [b"\n".join(lines)] if lines else []


def _json_message(raw: bytes) -> str | None:
    """The message of a JSON error ("" when it has none); None when the body is not JSON."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "")
    detail = data.get("detail")  # request validation errors
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d) if isinstance(d, dict) else d) for d in detail)
    return str(error or detail or data.get("message") or "")


def _html_message(raw: bytes) -> str | None:
    if b"<" not in raw:
        return None
    found = _TITLE.search(raw) or _HEADING.search(raw)
    text = found.group(1) if found else _TAG.sub(b" ", raw)
    return _plain(text)


def _plain(raw: bytes) -> str:
    return " ".join(raw.decode(errors="replace").split())[:200]
