"""What each protocol the mock speaks provides to the shared request pipeline (``server.py``).

The pipeline is the same for every protocol: check the key, parse the body, read directives,
misbehave as the fault says, validate, then answer or stream. A protocol supplies the wire shapes:
its error envelopes, its validation rules, its reply body and its stream frames.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from ..config import MockConfig
from ..faults import Fault
from ..state import MockState

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(slots=True)
class Call:
    """One chat request whose body parsed: what every protocol step gets."""

    request: web.Request
    body: dict[str, Any]
    fault: Fault
    started: float
    config: MockConfig
    state: MockState

    @property
    def chunks(self) -> int:
        """Length of a text reply in tokens."""
        return self.config.chunks if self.fault.chunks is None else self.fault.chunks

    @property
    def chunk_delay(self) -> float:
        """Seconds to wait before each paced stream frame."""
        delay_ms = self.config.chunk_delay_ms
        if self.fault.chunk_delay_ms is not None:
            delay_ms = self.fault.chunk_delay_ms
        return delay_ms / 1000


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """The frames of one stream and how it ends.

    ``frames`` are whole SSE events (or JSON-array elements: then ``head`` is ``[`` and
    ``separator`` goes between elements). A frame in ``paced`` waits the chunk delay first.
    ``ending`` follows a complete stream (``data: [DONE]``, ``]`` or nothing); ``error_event``
    replaces it when the fault asks for a mid-stream error.
    """

    frames: Sequence[bytes]
    paced: range
    headers: Mapping[str, str]
    ending: bytes = b""
    error_event: bytes = b""
    head: bytes = b""
    separator: bytes = b""


class Protocol(ABC):
    """One provider API. Stateless: one instance serves every request."""

    name: ClassVar[str]

    @abstractmethod
    def response_headers(self, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
        """Headers of every response (ids, rate-limit counters, server timing)."""

    def json_response(
        self,
        status: int,
        payload: Any,
        started: float,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(payload),
            headers={**self.response_headers(started), **(headers or {})},
        )

    def error_response(
        self,
        request: web.Request,
        status: int,
        payload: Any,
        started: float,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """An error answer (before any stream started)."""
        return self.json_response(status, payload, started, headers)

    @abstractmethod
    def auth_error(
        self, request: web.Request, config: MockConfig, started: float
    ) -> web.Response | None:
        """The answer to a request without a valid key (or without required headers)."""

    @abstractmethod
    def bad_request(self, request: web.Request, message: str, started: float) -> web.Response:
        """A 400 in this protocol's shape (used for an unknown ``mock:`` directive)."""

    def invalid_json(self, request: web.Request, started: float) -> web.Response:
        return self.bad_request(request, "The request body is not valid JSON.", started)

    @abstractmethod
    def directive_text(self, body: Mapping[str, Any]) -> str:
        """The last user text of the request: where ``mock:`` directives are read."""

    @abstractmethod
    def status_error(self, status: int, call: Call) -> Any:
        """The error body a real deployment sends with ``status`` (injected failures)."""

    def injected_error(self, call: Call) -> web.Response:
        fault = call.fault
        status = fault.status or 500
        headers = dict(fault.headers or {})
        if fault.retry_after is not None:
            headers.setdefault("retry-after", f"{fault.retry_after:g}")
        payload = fault.body or self.status_error(status, call)
        return self.error_response(call.request, status, payload, call.started, headers)

    @abstractmethod
    def request_error(self, call: Call) -> web.Response | None:
        """The answer to a request the provider would reject, or None."""

    @abstractmethod
    def wants_stream(self, call: Call) -> bool: ...

    @abstractmethod
    def answer(self, call: Call) -> web.Response:
        """The complete (non-streamed) reply to a valid request."""

    @abstractmethod
    def stream(self, call: Call) -> StreamPlan:
        """The streamed reply to a valid request."""


def key_accepted(key: str, config: MockConfig) -> bool:
    """Any non-empty key, or only the configured one."""
    return bool(key) and (config.api_key is None or key == config.api_key)


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def base62_id(prefix: str, length: int) -> str:
    """``prefix`` + ``length`` random base62 characters (Anthropic's id style)."""
    number = secrets.randbits(6 * length)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return prefix + "".join(chars)


def int_field(value: Any) -> int | None:
    """``value`` if it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
