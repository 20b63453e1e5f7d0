"""Loop guard (policy ``loop_guard``): signs of a runaway agent in a request.

(a) The same fingerprint (model + normalised messages + tools) from one key too often in
    a window: counted by the limiter (``gateway/policy.py``).
(b) A conversation whose trailing assistant turns repeat a cycle: the same tool call with
    the same arguments, or the same assistant text, ``MIN_REPEATS`` times or more, possibly
    as a cycle of up to ``MAX_PERIOD`` different turns (A B A B A B). Decided here, from the
    request alone.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

MIN_REPEATS = 3
MAX_PERIOD = 3


def _normal_text(content: Any) -> str:
    if isinstance(content, str):
        return " ".join(content.split())
    if isinstance(content, list):
        return " ".join(
            _normal_text(part.get("text", "")) if isinstance(part, dict) else str(part)
            for part in content
        )
    return "" if content is None else str(content)


def _normal_message(message: dict) -> list:
    calls = message.get("tool_calls") or []
    return [
        message.get("role"),
        _normal_text(message.get("content")),
        [_call_signature(call) for call in calls if isinstance(call, dict)],
        message.get("tool_call_id") and _normal_text(message.get("content")),
    ]


def _call_signature(call: dict) -> list:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    try:  # the same arguments in another key order or spacing are the same call
        arguments = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        arguments = _normal_text(arguments)
    return [function.get("name"), arguments]


def fingerprint(model: str, messages: list, tools: Any) -> str:
    payload = [model, [_normal_message(m) for m in messages if isinstance(m, dict)], tools]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _assistant_turns(messages: list) -> list[bytes]:
    turns = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "assistant":
            calls = [
                _call_signature(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)
            ]
            turn = [calls, "" if calls else _normal_text(message.get("content")).lower()]
            turns.append(orjson.dumps(turn, option=orjson.OPT_SORT_KEYS))
    return turns


def repeats_a_cycle(messages: list) -> bool:
    """True when the trailing assistant turns repeat one cycle at least MIN_REPEATS times."""
    turns = _assistant_turns(messages)
    for period in range(1, MAX_PERIOD + 1):
        needed = period * MIN_REPEATS
        if len(turns) < needed:
            break
        tail = turns[-needed:]
        cycle = tail[:period]
        if len(set(cycle)) == period and all(tail[i] == cycle[i % period] for i in range(needed)):
            return True
    return False
