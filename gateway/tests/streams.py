"""What a client receives of an adapter's stream, for the adapters' own tests."""

from __future__ import annotations

from gateway.dataplane.providers.base import StreamState
from gateway.dataplane.stream_tail import _is_usage_chunk


def client_events(events: list[bytes], state: StreamState) -> list[bytes]:
    """Every adapter ends a complete stream with exactly one usage chunk; the gateway
    forwards it only when the client asked for usage (``gateway.dataplane.stream_tail``)."""
    usage = [i for i, event in enumerate(events) if _is_usage_chunk(event)]
    if state.done:
        assert usage == [len(events) - 1], "a complete stream ends with one usage chunk"
    if state.include_usage:
        return events
    return [event for i, event in enumerate(events) if i not in usage]
