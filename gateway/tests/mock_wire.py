"""Requests and parsers for the tests that check the mock provider's protocols on the wire
(``test_mock_provider_*.py``): raw httpx, so the exact shapes are asserted, not an SDK's view."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from gateway.mock_provider import MockServer

CHUNKS = 5  # the reply length of the `mock` fixture's server (conftest.py)
REPLY = "This is a mock reply."
CLAUDE = "claude-3-5-sonnet-20241022"
GEMINI = "gemini-2.0-flash"
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "AIza-x"}
PPLX_HEADERS = {"Authorization": "Bearer pplx-x"}
HELLO = [{"role": "user", "content": "hello there"}]  # 11 chars: 11 // 4 + 4 = 6 prompt tokens
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit"],
}
WEATHER_ARGS = {"city": "mock", "unit": "celsius"}
CLAUDE_TOOL = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
GEMINI_FUNCTION = {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}
PROTOCOLS = ["openai", "anthropic", "gemini", "perplexity"]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def claude(mock: MockServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    full = {"model": CLAUDE, "max_tokens": 256, "messages": HELLO, **body}
    return httpx.post(
        f"{mock.anthropic_base_url}/v1/messages",
        json=full,
        headers={**ANTHROPIC_HEADERS, **headers},
    )


def gemini(
    mock: MockServer,
    body: dict[str, Any] | None = None,
    *,
    method: str = "generateContent",
    model: str = GEMINI,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    full = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}], **(body or {})}
    return httpx.post(
        f"{mock.gemini_base_url}/v1beta/models/{model}:{method}{query}",
        json=full,
        headers=GEMINI_HEADERS if headers is None else headers,
    )


def pplx(mock: MockServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    full = {"model": "sonar", "messages": HELLO, **body}
    return httpx.post(
        f"{mock.perplexity_base_url}/chat/completions",
        json=full,
        headers={**PPLX_HEADERS, **headers},
    )


def request_for(
    mock: MockServer, protocol: str, text: str, *, stream: bool = False
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL, body and headers of a minimal chat request whose last user text is ``text``."""
    messages = [{"role": "user", "content": text}]
    if protocol == "openai":
        body = {"model": "gpt-4o", "messages": messages, "stream": stream}
        return f"{mock.base_url}/chat/completions", body, {"Authorization": "Bearer x"}
    if protocol == "anthropic":
        body = {"model": CLAUDE, "max_tokens": 256, "messages": messages, "stream": stream}
        return f"{mock.anthropic_base_url}/v1/messages", body, ANTHROPIC_HEADERS
    if protocol == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        return f"{mock.gemini_base_url}/v1beta/models/{GEMINI}:{method}", body, GEMINI_HEADERS
    body = {"model": "sonar", "messages": messages, "stream": stream}
    return f"{mock.perplexity_base_url}/chat/completions", body, PPLX_HEADERS


def send(mock: MockServer, protocol: str, text: str, *, stream: bool = False) -> httpx.Response:
    url, body, headers = request_for(mock, protocol, text, stream=stream)
    return httpx.post(url, json=body, headers=headers)


def sse_frames(text: str) -> list[str]:
    """The SSE events of a body (blank-line separated, either line ending)."""
    return [frame for frame in re.split(r"\r?\n\r?\n", text) if frame]


def data_payloads(text: str) -> list[str]:
    return [frame.removeprefix("data: ") for frame in sse_frames(text)]


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Anthropic's ``event:`` + ``data:`` pairs, as (name, parsed data)."""
    events = []
    for frame in sse_frames(text):
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ")
        assert data_line.startswith("data: ")
        events.append((event_line.removeprefix("event: "), json.loads(data_line[6:])))
    return events


def received_before_cut(url: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """The bytes a stream delivered before the mock closed the connection mid-body."""
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.Client() as http:
        with http.stream("POST", url, json=body, headers=headers) as response:
            for chunk in response.iter_raw():
                received += chunk
    return received


def error_of(protocol: str, response: httpx.Response) -> str:
    """The error type (or status name) of a provider's error body."""
    body = response.json()
    kind: str
    if protocol == "anthropic":
        assert body["type"] == "error"
        assert body["request_id"] == response.headers["request-id"]
        kind = body["error"]["type"]
    elif protocol == "gemini":
        assert body["error"]["code"] == response.status_code
        kind = body["error"]["status"]
    elif protocol == "perplexity":
        assert body["error"]["code"] == response.status_code
        kind = body["error"]["type"]
    else:
        kind = body["error"]["type"]
    return kind
