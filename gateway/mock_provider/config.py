"""Settings of one mock provider instance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock answers when no fault is injected.

    ``chunks`` is the length of the text reply in tokens: the number of content chunks a stream
    carries and the ``completion_tokens`` a reply reports. ``api_key=None`` accepts any non-empty
    bearer token; a string accepts only that key (to check which key the gateway sends upstream).
    """

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    chunks: int = 20
    reply_text: str = "This is a mock reply."
    api_key: str | None = None
