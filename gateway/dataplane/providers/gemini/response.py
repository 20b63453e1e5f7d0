"""A ``generateContent`` answer → an OpenAI chat completion, and the pieces streams share."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from billing.pricing import Usage
from gateway.dataplane.providers.base import JsonObject

THOUGHT_SEPARATOR = "__thought__"


FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "LANGUAGE",
            "OTHER",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ),
        "content_filter",
    ),
}  # anything else (MALFORMED_FUNCTION_CALL, TOO_MANY_TOOL_CALLS, ...) ends as "stop"


def _random_id() -> str:
    return secrets.token_hex(12)


def completion(raw: bytes, model: str) -> tuple[JsonObject, Usage]:
    data = one_object(raw)
    if "error" in data:
        raise ValueError("upstream answer is an error")
    # A blocked prompt has no candidates: one filtered, empty choice (as LiteLLM does).
    candidates = [(0, {"finishReason": "SAFETY"})] if blocked(data) else candidates_of(data)
    choices: list[JsonObject] = []
    for index, candidate in candidates:
        text, calls = read_parts(candidate)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        reason = finish_reason(candidate.get("finishReason", "STOP"), bool(calls))
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
        )
    if not choices:
        raise ValueError("upstream answer has no candidates")
    usage, billed = read_usage(data.get("usageMetadata"))
    completion = {
        "id": completion_id(data),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": sorted(choices, key=lambda c: c["index"]),
        "usage": usage,
    }
    return completion, billed


def read_usage(meta: Any) -> tuple[JsonObject, Usage]:
    """OpenAI's usage object and the billing usage from Gemini's ``usageMetadata``."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    cached = int(meta.get("cachedContentTokenCount") or 0)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }
    return usage, Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


def _call_id(part: JsonObject) -> str:
    signature = part.get("thoughtSignature")
    suffix = f"{THOUGHT_SEPARATOR}{signature}" if signature else ""
    return f"call_{_random_id()}{suffix}"


def read_parts(candidate: JsonObject) -> tuple[str | None, list[JsonObject]]:
    """(answer text or None, tool calls) of one candidate; thoughts are left out."""
    parts = (candidate.get("content") or {}).get("parts") or []
    texts, calls = [], []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            calls.append(
                {
                    "id": _call_id(part),
                    "type": "function",
                    "function": {
                        "name": call.get("name", ""),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    text = "".join(texts)
    # An empty text part is an empty answer; no text at all (or only calls) is null.
    return (text if text or (texts and not calls) else None), calls


def finish_reason(reason: Any, has_calls: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def candidates_of(data: JsonObject) -> list[tuple[int, JsonObject]]:
    candidates = [c for c in data.get("candidates") or [] if isinstance(c, dict)]
    return [(int(c.get("index", i) or 0), c) for i, c in enumerate(candidates)]


def blocked(data: JsonObject) -> bool:
    return not data.get("candidates") and bool(
        (data.get("promptFeedback") or {}).get("blockReason")
    )


def one_object(raw: bytes) -> JsonObject:
    data = orjson.loads(raw)
    if isinstance(data, list) and len(data) == 1:  # the non-SSE stream shape, [ {...} ]
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError("upstream answer is not a JSON object")
    return data


def completion_id(data: JsonObject) -> str:
    return f"chatcmpl-{data.get('responseId') or _random_id()}"
