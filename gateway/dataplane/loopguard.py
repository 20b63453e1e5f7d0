"""Loop guard (policy ``loop_guard``): signs of a runaway agent in a request.

(a) The same fingerprint (model + normalised messages + tools) from one key too often in
    a window: counted by the limiter (``gateway/dataplane/policy.py``).
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


def _normal_message(message: dict[str, Any]) -> list[Any]:
    return [
        message.get("role"),
        _normal_text(message.get("content")),
        _calls(message),
        message.get("tool_call_id"),
    ]


def _calls(message: dict[str, Any]) -> list[list[Any]]:
    """Signatures of an assistant turn's tool calls (and of a legacy ``function_call``)."""
    calls = [_call_signature(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append(_call_signature({"function": legacy}))
    return calls


def _call_signature(call: dict[str, Any]) -> list[Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    try:  # the same arguments in another key order or spacing are the same call
        arguments = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        arguments = _normal_text(arguments)
    return [function.get("name"), arguments]


def fingerprint(model: str, messages: list[Any], tools: Any) -> str:
    payload = [model, [_normal_message(m) for m in messages if isinstance(m, dict)], tools]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _assistant_turns(messages: list[Any]) -> list[tuple[bytes, bytes]]:
    """Per assistant turn: (what it did, what the user said since the previous turn).

    Tool results are left out (an agent's retries see different errors or timestamps),
    but user turns count: a person who sends three different messages and gets "OK"
    three times is not in a loop.
    """
    turns = []
    said: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user":
            said.append(_normal_text(message.get("content")))
        elif role == "assistant":
            calls = _calls(message)
            text = "" if calls else _normal_text(message.get("content")).lower()
            action = orjson.dumps([calls, text], option=orjson.OPT_SORT_KEYS)
            turns.append((action, orjson.dumps(said)))
            said = []
    return turns


def repeats_a_cycle(messages: list[Any]) -> bool:
    """True when the trailing assistant turns repeat one cycle at least MIN_REPEATS times,
    with the same user input between them (none, for an agent talking to its tools)."""
    turns = _assistant_turns(messages)
    for period in range(1, MAX_PERIOD + 1):
        needed = period * MIN_REPEATS
        if len(turns) < needed:
            break
        actions = [action for action, _ in turns[-needed:]]
        said = [user for _, user in turns[-needed:]]
        cycle = actions[:period]
        if (
            len(set(cycle)) == period
            and all(actions[i] == cycle[i % period] for i in range(needed))
            # What led to the first turn of the window is outside the cycle.
            and all(said[i] == said[i + period] for i in range(1, needed - period))
        ):
            return True
    return False
