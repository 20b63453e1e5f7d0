"""The end of every stream, shaped as OpenAI's own and carrying the ``aqta`` object.

Every provider adapter produces OpenAI ``chat.completion.chunk`` events and, at the end,
the usage chunk (``"choices": []``), as OpenAI does when ``stream_options.include_usage``
is set (the gateway always asks upstream for usage). This module holds the last chunk
with a ``finish_reason`` back until the usage has arrived (it is the next event), so that
the ``aqta`` object it carries has the final cost; then it sends that chunk, the usage
chunk only if the client asked for it (also carrying ``aqta``), and ``[DONE]``.

A client therefore never sees a chunk with empty ``choices`` unless it asked for usage,
and code such as ``chunk.choices[0].delta.content`` works on every chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

DATA = b"data: "
EVENT_END = b"\n\n"
DONE = b"data: [DONE]\n\n"
# A finish reason other than null, as OpenAI and the adapters write it (compact JSON).
FINISHED = b'"finish_reason":"'
SPACED = b'"finish_reason": '


def _load(event: bytes) -> dict[str, Any] | None:
    try:
        chunk = orjson.loads(event[event.index(b":") + 1 :])
    except (ValueError, orjson.JSONDecodeError):
        return None
    return chunk if isinstance(chunk, dict) else None


def _finishes(event: bytes) -> bool:
    if FINISHED in event:
        return True
    if SPACED not in event:  # only pretty-printed JSON needs a closer look
        return False
    chunk = _load(event)
    return chunk is not None and any(
        isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or []
    )


def _is_usage_chunk(event: bytes) -> bool:
    if b'"usage"' not in event or b'"usage":null' in event:
        return False
    chunk = _load(event)
    return chunk is not None and not chunk.get("choices") and bool(chunk.get("usage"))


class StreamTail:
    """Holds back the final chunks of one stream until its cost is known."""

    __slots__ = ("finish", "include_usage", "usage")

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.finish: bytes | None = None
        self.usage: bytes | None = None

    def feed(self, events: list[bytes]) -> list[bytes]:
        """The events that can go to the client now; the tail is kept."""
        out: list[bytes] = []
        for event in events:
            if self.finish is None:  # the common case: one substring test per event
                if _finishes(event):
                    self.finish = event
                else:
                    out.append(event)
            elif _is_usage_chunk(event):  # it follows the finish chunk
                self.usage = event
            else:  # n > 1: an earlier choice's finish goes as is
                out.append(self.finish)
                self.finish = None
                if _finishes(event):
                    self.finish = event
                else:
                    out.append(event)
        return out

    def close(self, aqta: dict[str, Any], envelope: dict[str, Any], usage: dict[str, Any]) -> bytes:
        """The end of a complete stream: the finish chunk and the usage chunk (if asked)
        with ``aqta``, then ``[DONE]``. ``envelope`` (id, object, created, model) and
        ``usage`` make the chunks the upstream did not send."""
        finish = _load(self.finish) if self.finish is not None else None
        if finish is None:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
            finish = {**envelope, "choices": [choice]}
        parts = [_event({**finish, "aqta": aqta})]
        if self.include_usage:
            chunk = _load(self.usage) if self.usage is not None else None
            if chunk is None:
                chunk = {**envelope, "choices": [], "usage": usage}
            parts.append(_event({**chunk, "aqta": aqta}))
        parts.append(DONE)
        return b"".join(parts)

    def cut(self) -> bytes:
        """A stream that broke off: what was held goes out unchanged (the error follows)."""
        return self.finish or b""


def _event(chunk: dict[str, Any]) -> bytes:
    return DATA + orjson.dumps(chunk) + EVENT_END
