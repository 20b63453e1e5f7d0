"""The provider interface. Each provider is one module that turns the OpenAI request into
its own wire format and its answers (JSON, SSE, errors) back into OpenAI's. Adding a
provider means adding a module and registering it in ``gateway.providers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from billing.pricing import Usage
from gateway.catalog import Endpoint, ModelEntry


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class StreamState:
    """What a stream translation has seen so far (for the trace and for billing)."""

    include_usage: bool
    usage: Usage | None = None
    chunks: int = 0
    first: dict | None = None
    done: bool = False
    error: bytes | None = None
    finish_reason: str | None = None
    pending: bytes = b""
    completion_text: list[str] = field(default_factory=list)
    keep_text: bool = False


class Provider(Protocol):
    name: str

    def build_request(
        self, endpoint: Endpoint, model: ModelEntry, body: dict, stream: bool
    ) -> UpstreamRequest: ...

    def parse_response(self, raw: bytes) -> tuple[dict, Usage]:
        """An upstream 200 body → (OpenAI chat.completion object, usage)."""
        ...

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        """Upstream SSE bytes (any chunking) → complete OpenAI SSE events to forward."""
        ...

    def error_message(self, status: int, raw: bytes) -> str:
        """A short, secret-free summary of an upstream error body."""
        ...
