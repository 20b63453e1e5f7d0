"""Anthropic's named SSE events → OpenAI chunks (rules in the package docstring).

``state.extra`` holds: "envelope" (id/object/created/model of every chunk), "counts"
(Anthropic's usage so far), "blocks" (Anthropic block index → tool call being streamed) and
"calls" (client tool calls so far, which is also the OpenAI index of the next one).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from aqta.errors import ErrorCode, error_body
from billing.pricing import Usage
from gateway.dataplane.providers.anthropic.errors import summary
from gateway.dataplane.providers.anthropic.request import JSON_TOOL_PREFIX
from gateway.dataplane.providers.anthropic.response import finish_reason, tool_call, usage_from
from gateway.dataplane.providers.base import JsonObject, StreamState, openai_usage

EVENT_END = b"\n\n"


def translate_events(events: list[bytes], state: StreamState, cut: bool = False) -> list[bytes]:
    """``cut``: the last bytes of a body; an event broken off there is a cut, not an error."""
    out: list[bytes] = []
    for raw in events:
        name, payload = _sse_event(raw)
        if not payload:
            continue  # comments, keep-alives
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            if not cut:
                state.error = _error_event("the stream carried an unreadable event")
            break
        kind = event.get("type") or name
        if kind == "error":
            error = event.get("error")
            state.error = _error_event(summary(error) if isinstance(error, dict) else str(error))
            break
        handler = HANDLERS.get(kind)
        if handler is not None:
            out += handler(event, state)
        if state.done:
            break
    return out


def _sse_event(raw: bytes) -> tuple[str, bytes]:
    name, data = "", []
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[len(b"event:") :].strip().decode(errors="replace")
        elif line.startswith(b"data:"):
            data.append(line[len(b"data:") :].strip())
    return name, b"\n".join(data)


def _error_event(summary: str) -> bytes:
    body = error_body(
        f"Upstream provider error: anthropic: {summary or 'stream error'}",
        code=ErrorCode.PROVIDER_ERROR,
        type="api_error",
    )
    return b"data: " + orjson.dumps(body) + EVENT_END


def _chunk(state: StreamState, delta: JsonObject, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    chunk: dict[str, Any] = {**state.extra["envelope"], "choices": [choice]}
    if state.include_usage:  # as OpenAI does: null on every chunk but the usage chunk
        chunk["usage"] = None
    if state.first is None:
        state.first = chunk
    state.chunks += 1
    return b"data: " + orjson.dumps(chunk) + EVENT_END


def _start(state: StreamState, message: JsonObject) -> list[bytes]:
    if "envelope" in state.extra:
        return []
    state.extra.update(
        envelope={
            "id": "chatcmpl-" + str(message.get("id") or uuid.uuid4().hex),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": state.model or str(message.get("model") or ""),
        },
        counts=dict(message.get("usage") or {}),
        blocks={},
        calls=0,
    )
    state.usage = usage_from(state.extra["counts"])
    return [_chunk(state, {"role": "assistant", "content": ""})]


def _on_message_start(event: JsonObject, state: StreamState) -> list[bytes]:
    return _start(state, event.get("message") or {})


def _on_block_start(event: JsonObject, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    block = event.get("content_block") or {}
    if block.get("type") == "text" and block.get("text"):
        out.append(_chunk(state, {"content": block["text"]}))
    if block.get("type") != "tool_use":
        return out  # text, or thinking and server-tool blocks, which OpenAI has no place for
    name = str(block.get("name") or "")
    entry = {"input": block.get("input") or {}, "streamed": False, "call": None}
    state.extra["blocks"][event.get("index")] = entry
    if name.startswith(JSON_TOOL_PREFIX):
        return out  # the answer tool: its input streams as content
    entry["call"] = state.extra["calls"]
    state.extra["calls"] += 1
    call = {"index": entry["call"], **tool_call(block.get("id"), name, "")}
    return [*out, _chunk(state, {"tool_calls": [call]})]


def _arguments(state: StreamState, entry: JsonObject, fragment: str) -> bytes:
    entry["streamed"] = True
    if entry["call"] is None:
        return _chunk(state, {"content": fragment})
    return _chunk(
        state, {"tool_calls": [{"index": entry["call"], "function": {"arguments": fragment}}]}
    )


def _on_block_delta(event: JsonObject, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    delta = event.get("delta") or {}
    if delta.get("type") == "text_delta" and delta.get("text"):
        out.append(_chunk(state, {"content": delta["text"]}))
    elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
        entry = state.extra["blocks"].get(event.get("index"))
        if entry is not None:
            out.append(_arguments(state, entry, delta["partial_json"]))
    return out


def _on_block_stop(event: JsonObject, state: StreamState) -> list[bytes]:
    entry = state.extra.get("blocks", {}).get(event.get("index"))
    if entry is None or entry["streamed"]:
        return []
    return [_arguments(state, entry, orjson.dumps(entry["input"]).decode())]


def _on_message_delta(event: JsonObject, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    usage = event.get("usage") or {}
    # Counts here are cumulative: they replace what message_start said.
    state.extra["counts"].update({k: v for k, v in usage.items() if v is not None})
    state.usage = usage_from(state.extra["counts"])
    if state.finish_reason is None:
        reason = (event.get("delta") or {}).get("stop_reason")
        state.finish_reason = finish_reason(reason, state.extra["calls"] > 0)
        out.append(_chunk(state, {}, state.finish_reason))
    return out


def _on_message_stop(event: JsonObject, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    if state.finish_reason is None:  # no message_delta came: still end with a finish reason
        state.finish_reason = "stop"
        out.append(_chunk(state, {}, "stop"))
    usage = openai_usage(state.usage or Usage())
    chunk = {**state.extra["envelope"], "choices": [], "usage": usage}
    state.chunks += 1
    out.append(b"data: " + orjson.dumps(chunk) + EVENT_END)
    state.done = True
    return out


HANDLERS = {
    "message_start": _on_message_start,
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "content_block_stop": _on_block_stop,
    "message_delta": _on_message_delta,
    "message_stop": _on_message_stop,
}
