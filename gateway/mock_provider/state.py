"""What one mock instance remembers: the fault script, counters, the last request."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import NO_FAULT, Fault

PROTOCOLS = ("openai", "anthropic", "gemini", "perplexity")
# Models `GET /v1/models` always lists, with plausible creation times.
KNOWN_MODELS = {
    "gpt-4o": 1715367049,
    "gpt-4o-mini": 1721172741,
    "gpt-4-turbo": 1712361441,
    "gpt-3.5-turbo": 1677610602,
}


@dataclass
class MockState:
    """Mutable state; only touched from the server's event loop thread."""

    script: deque[Fault] = field(default_factory=deque)
    chat_requests: int = 0
    requests_by_protocol: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(PROTOCOLS, 0)
    )
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    last_disconnect_at: float | None = None
    last_request: Any = None
    last_request_headers: dict[str, str] | None = None
    last_path: str | None = None
    last_protocol: str | None = None
    models: dict[str, int] = field(default_factory=lambda: dict(KNOWN_MODELS))

    def next_fault(self) -> Fault:
        return self.script.popleft() if self.script else NO_FAULT

    def queue(self, faults: Iterable[Fault]) -> None:
        self.script.extend(faults)

    def count_request(self, protocol: str) -> None:
        """A chat request of any protocol arrived (``chat_requests`` is the total)."""
        self.chat_requests += 1
        self.requests_by_protocol[protocol] += 1

    def record_request(
        self, body: Any, headers: Mapping[str, str], *, path: str, protocol: str
    ) -> None:
        self.last_request = body
        self.last_request_headers = {name.lower(): value for name, value in headers.items()}
        self.last_path = path
        self.last_protocol = protocol

    def note_model(self, model: str) -> None:
        if model not in self.models:
            self.models[model] = int(time.time())

    def note_disconnect(self) -> None:
        self.client_disconnects += 1
        self.last_disconnect_at = time.time()

    def reset(self) -> None:
        """Zero the counters and drop the script; models seen so far stay listed."""
        self.__dict__.update(MockState(models=self.models).__dict__)

    def stats(self) -> dict[str, Any]:
        return {
            "chat_requests": self.chat_requests,
            "requests_by_protocol": dict(self.requests_by_protocol),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "client_disconnects": self.client_disconnects,
            "last_disconnect_at": self.last_disconnect_at,
            "last_request": self.last_request,
            "last_request_headers": self.last_request_headers,
            "last_path": self.last_path,
            "last_protocol": self.last_protocol,
            "script_pending": len(self.script),
        }
