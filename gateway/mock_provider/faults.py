"""Failure injection: scripted steps (``POST /_mock/script``) and ``mock:`` directives.

Both describe a :class:`Fault` for one chat request. A script step is consumed by the next chat
request; a directive (``mock:status=503`` in the last user message) applies to the request that
carries it, and wins over the step where both set the same field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DIRECTIVE = re.compile(r"mock:([a-z_]+)(?:=([^\s,;]+))?")
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class FaultError(ValueError):
    """A step or directive the mock does not understand (reported to the client as a 400)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """How to misbehave for one request; ``None`` fields keep the default behaviour.

    - ``reset``: close the TCP connection (RST) before any response.
    - ``delay_ms``: wait before the response headers, on top of the configured latency.
    - ``status`` (+ ``body``, ``headers``, ``retry_after`` seconds): answer with that HTTP error.
    - ``chunk_delay_ms``: per-chunk delay of this stream.
    - ``chunks``: length of this text reply in tokens.
    - ``cut_after_chunks``: close the connection after that many SSE frames (no ``[DONE]``);
      a non-stream request gets its connection closed without a response.
    - ``error_event_after_chunks``: after that many frames send the protocol's mid-stream error
      (OpenAI ``data: {"error": ...}``, Anthropic ``event: error``, ...) and end.
    - ``cache_read_input_tokens``, ``cache_creation_input_tokens``: prompt-cache counts an
      Anthropic reply reports (default: the configured ones, 0).
    - ``safety_block`` (Gemini): block the prompt (``promptFeedback.blockReason: SAFETY``).
    - ``pplx_done`` (Perplexity): end the stream with ``data: [DONE]``, as some models do.
    - ``pplx_legacy`` (Perplexity): stream the 2025 way (``message`` and ``delta`` per chunk).

    A frame is one SSE event (one element of Gemini's JSON-array stream).
    """

    status: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    retry_after: float | None = None
    delay_ms: float | None = None
    chunk_delay_ms: float | None = None
    chunks: int | None = None
    cut_after_chunks: int | None = None
    error_event_after_chunks: int | None = None
    reset: bool | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    safety_block: bool | None = None
    pplx_done: bool | None = None
    pplx_legacy: bool | None = None

    def merged(self, other: Fault) -> Fault:
        """This fault with every field ``other`` sets replaced by ``other``'s value."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) is not None
        }
        return dataclasses.replace(self, **changes) if changes else self

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


NO_FAULT = Fault()
_FIELDS = {f.name for f in dataclasses.fields(Fault)}
_INTS = {
    "status",
    "chunks",
    "cut_after_chunks",
    "error_event_after_chunks",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
}
_FLAGS = {"reset", "safety_block", "pplx_done", "pplx_legacy"}
_FLOATS = {"retry_after", "delay_ms", "chunk_delay_ms"}
# Only a script step can carry JSON objects; a directive is one word in a chat message.
_OBJECTS = {"body", "headers"}


def fault_from_step(step: Any) -> Fault:
    """Parse one script step, e.g. ``{"status": 429, "retry_after": 1}``."""
    if not isinstance(step, Mapping):
        raise FaultError(f"A step must be an object, got {step!r}.")
    return Fault(**{key: _value(key, value, from_text=False) for key, value in step.items()})


def fault_from_text(text: str) -> Fault:
    """The fault described by ``mock:key=value`` directives in a message (``mock:reset`` alone:
    a flag without a value is on)."""
    if "mock:" not in text:
        return NO_FAULT
    fields = {key: _value(key, value, from_text=True) for key, value in _DIRECTIVE.findall(text)}
    return Fault(**fields)


def _value(key: str, value: Any, *, from_text: bool) -> Any:
    if key not in _FIELDS or (from_text and key in _OBJECTS):
        raise FaultError(f"Unknown mock fault '{key}'. Known: {', '.join(sorted(_FIELDS))}.")
    try:
        if key in _OBJECTS:
            return _object(key, value)
        if key in _FLAGS:
            return _flag(value)
        if isinstance(value, bool) or value is None:
            raise ValueError
        number = int(value) if key in _INTS else float(value)
    except (TypeError, ValueError):
        raise FaultError(f"Invalid value for mock fault '{key}': {value!r}.") from None
    if number < 0 or (key == "status" and not 400 <= number <= 599):
        raise FaultError(f"Out of range value for mock fault '{key}': {value!r}.")
    return number


def _object(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError
    return {str(k): str(v) for k, v in value.items()} if key == "headers" else value


def _flag(value: Any) -> bool:
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError
