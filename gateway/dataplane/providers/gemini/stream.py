"""Gemini's SSE responses → OpenAI chunks (rules in the package docstring)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from aqta.errors import ErrorCode, error_body
from gateway.dataplane.providers.base import JsonObject, StreamState
from gateway.dataplane.providers.gemini.errors import error_summary
from gateway.dataplane.providers.gemini.response import (
    blocked,
    candidates_of,
    completion_id,
    finish_reason,
    read_parts,
    read_usage,
)


def translate_stream(data: bytes, state: StreamState) -> list[bytes]:
    return _feed(_events(state, data), state)


def finish_stream(state: StreamState) -> list[bytes]:
    """Gemini streams simply end: done if every candidate finished (else it was cut);
    the usage chunk goes out here."""
    out: list[bytes] = []
    last, state.pending = _payload(state.pending.replace(b"\r\n", b"\n")), b""
    if last and state.error is None:  # a last event without its blank line
        try:
            out = _feed([last], state)
        except orjson.JSONDecodeError:
            pass  # cut mid-event
    seen, finished = state.extra.get("seen", set()), state.extra.get("finished", set())
    state.done = state.error is None and bool(finished) and seen <= finished
    if not state.done and state.usage is not None:
        # Cut short: Gemini's running prompt count is exact but its completion count
        # lags (often absent); bill at least a token per forwarded chunk, as the
        # gateway does for streams that never reported usage.
        completion = max(state.usage.completion_tokens, state.chunks)
        state.usage = dataclasses.replace(state.usage, completion_tokens=completion)
    if state.done:
        usage = state.extra.get("usage") or read_usage(None)[0]
        out.append(_sse({**_envelope(state, {}), "choices": [], "usage": usage}))
        state.chunks += 1
    return out


def _events(state: StreamState, data: bytes) -> list[bytes]:
    """Complete SSE events' JSON payloads; the incomplete rest stays in ``state.pending``."""
    buffer = (state.pending + data).replace(b"\r\n", b"\n")
    *events, state.pending = buffer.split(b"\n\n")
    return [payload for event in events if (payload := _payload(event))]


def _payload(event: bytes) -> bytes:
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    payload = b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines).strip()
    return b"" if payload == b"[DONE]" else payload


def _sse(chunk: JsonObject) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _feed(payloads: list[bytes], state: StreamState) -> list[bytes]:
    out: list[bytes] = []
    for payload in payloads:
        data = orjson.loads(payload)
        for response in data if isinstance(data, list) else [data]:
            if not isinstance(response, dict):
                continue
            if "error" in response:
                state.error = _sse(_error_event(response))
                return out
            out += _stream_chunk(response, state)
    return out


def _error_event(response: JsonObject) -> JsonObject:
    error = response["error"] if isinstance(response["error"], dict) else {}
    message = f"Upstream provider error: google reported {error_summary(response, 0)}"
    limited = error.get("code") == 429 or error.get("status") == "RESOURCE_EXHAUSTED"
    kind = "rate_limit_error" if limited else "api_error"
    return error_body(message, code=ErrorCode.PROVIDER_ERROR, type=kind)


def _envelope(state: StreamState, response: JsonObject) -> JsonObject:
    if "id" not in state.extra:
        state.extra["id"] = completion_id(response)
        state.extra["created"] = int(time.time())
    return {
        "id": state.extra["id"],
        "object": "chat.completion.chunk",
        "created": state.extra["created"],
        "model": state.model or str(response.get("modelVersion") or ""),
    }


def _stream_chunk(response: JsonObject, state: StreamState) -> list[bytes]:
    """One Gemini stream response → at most one OpenAI chunk."""
    envelope = _envelope(state, response)
    if isinstance(response.get("usageMetadata"), dict):
        state.extra["usage"], state.usage = read_usage(response["usageMetadata"])
    seen = state.extra.setdefault("seen", set())  # candidates that appeared
    finished = state.extra.setdefault("finished", set())  # ... and those that ended
    started = state.extra.setdefault("started", set())  # ... and got their role delta
    calls_so_far = state.extra.setdefault("calls", {})
    candidates = [(0, {"finishReason": "SAFETY"})] if blocked(response) else candidates_of(response)
    choices = []
    for index, candidate in candidates:
        text, calls = read_parts(candidate)
        seen.add(index)
        delta: dict[str, Any] = {} if index in started else {"role": "assistant"}
        if text:
            delta["content"] = text
        if calls:
            first = calls_so_far.get(index, 0)
            calls_so_far[index] = first + len(calls)
            delta["tool_calls"] = [{"index": first + k, **c} for k, c in enumerate(calls)]
        reason = None
        # Only the first finish counts: captures show a stray trailing chunk such as
        # {"finishReason": "MALFORMED_FUNCTION_CALL"} after the real end.
        if candidate.get("finishReason") and index not in finished:
            finished.add(index)
            reason = finish_reason(candidate["finishReason"], index in calls_so_far)
            state.finish_reason = reason
        if delta.keys() - {"role"} or reason:
            started.add(index)
            choices.append(
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            )
    if not choices:
        return []
    chunk = {**envelope, "choices": choices}
    if state.include_usage:
        chunk["usage"] = None
    if state.first is None:
        state.first = chunk
    state.chunks += 1
    return [_sse(chunk)]
