"""An Anthropic message (the JSON answer) → an OpenAI chat completion."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from billing.pricing import Usage
from gateway.dataplane.providers.anthropic.request import JSON_TOOL_PREFIX
from gateway.dataplane.providers.base import JsonObject, openai_usage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "length",
    "model_context_window_exceeded": "length",
}


def completion(raw: bytes, model: str) -> tuple[JsonObject, Usage]:
    data = orjson.loads(raw)
    if not isinstance(data, dict) or data.get("type", "message") != "message":
        raise ValueError("upstream answer is not an Anthropic message")
    texts: list[str] = []
    calls: list[JsonObject] = []
    answer: str | None = None
    for block in data.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            name = str(block.get("name") or "")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if name.startswith(JSON_TOOL_PREFIX):
                answer = arguments if answer is None else answer
            else:
                calls.append(tool_call(block.get("id"), name, arguments))
    content = answer if answer is not None else ("".join(texts) if texts else None)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    message["refusal"] = None
    usage = usage_from(data.get("usage") or {})
    completion = {
        "id": "chatcmpl-" + str(data.get("id") or uuid.uuid4().hex),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or str(data.get("model") or ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(data.get("stop_reason"), bool(calls)),
            }
        ],
        "usage": openai_usage(usage),
    }
    return completion, usage


def tool_call(call_id: Any, name: str, arguments: str) -> JsonObject:
    return {
        "id": str(call_id or ""),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def finish_reason(stop_reason: Any, tool_called: bool) -> str:
    reason = FINISH_REASONS.get(str(stop_reason), "stop")
    # Only the answer tool was called: to the client that is a finished JSON answer.
    return "stop" if reason == "tool_calls" and not tool_called else reason


def usage_from(counts: JsonObject) -> Usage:
    read = int(counts.get("cache_read_input_tokens") or 0)
    written = int(counts.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(counts.get("input_tokens") or 0) + read + written,
        completion_tokens=int(counts.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
    )
