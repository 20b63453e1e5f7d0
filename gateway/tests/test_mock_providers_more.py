"""The mock provider's Anthropic, Gemini and Perplexity protocols, checked on the wire.

Raw httpx requests assert the exact shapes each provider sends (docs/providers.md §2-§4 and
the checklist in §6), plus failure injection and stats across all four protocols.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.mock_provider import MockConfig, MockServer

CHUNKS = 5
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


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockServer]:
    with MockServer(MockConfig(chunks=CHUNKS)) as server:
        yield server


@pytest.fixture
def mock(mock_server: MockServer) -> MockServer:
    mock_server.reset()
    return mock_server


# --- helpers --------------------------------------------------------------------------------------


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
    if protocol == "anthropic":
        assert body["type"] == "error"
        assert body["request_id"] == response.headers["request-id"]
        return body["error"]["type"]
    if protocol == "gemini":
        assert body["error"]["code"] == response.status_code
        return body["error"]["status"]
    if protocol == "perplexity":
        assert body["error"]["code"] == response.status_code
        return body["error"]["type"]
    return body["error"]["type"]


# --- Anthropic: answers ---------------------------------------------------------------------------


def test_anthropic_answers_a_message_object(mock: MockServer) -> None:
    response = claude(mock, {"system": "You are terse."})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["anthropic-ratelimit-requests-limit"].isdigit()
    message = response.json()
    assert list(message) == [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", message["id"])
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == CLAUDE
    assert message["content"] == [{"type": "text", "text": REPLY}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    # system "You are terse." (14 chars: 3 + 4) + "hello there" (2 + 4)
    assert message["usage"] == {
        "input_tokens": 13,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": CHUNKS,
        "service_tier": "standard",
    }


def test_anthropic_stops_at_max_tokens(mock: MockServer) -> None:
    message = claude(mock, {"max_tokens": 2}).json()

    assert message["content"] == [{"type": "text", "text": "This is"}]
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 2


def test_anthropic_reads_text_blocks_and_system_blocks(mock: MockServer) -> None:
    body = {
        "system": [{"type": "text", "text": "x" * 40}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 8}]}],
    }

    assert claude(mock, body).json()["usage"]["input_tokens"] == (10 + 4) + (2 + 4)


def test_anthropic_cache_token_counts_come_from_the_config() -> None:
    config = MockConfig(chunks=2, cache_read_input_tokens=100, cache_creation_input_tokens=20)
    with MockServer(config) as mock:
        usage = claude(mock, {}).json()["usage"]

    assert usage["cache_read_input_tokens"] == 100
    assert usage["cache_creation_input_tokens"] == 20


def test_anthropic_cache_token_counts_can_be_scripted(mock: MockServer) -> None:
    mock.script({"cache_read_input_tokens": 7, "cache_creation_input_tokens": 3})

    usage = claude(mock, {}).json()["usage"]

    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (7, 3)
    assert claude(mock, {}).json()["usage"]["cache_read_input_tokens"] == 0


# --- Anthropic: tools -----------------------------------------------------------------------------


def test_anthropic_calls_the_tool_when_the_user_spoke_last(mock: MockServer) -> None:
    message = claude(mock, {"tools": [CLAUDE_TOOL]}).json()

    assert message["stop_reason"] == "tool_use"
    [block] = message["content"]
    assert block["type"] == "tool_use"
    assert re.fullmatch(r"toolu_01[0-9A-Za-z]{22}", block["id"])
    assert block["name"] == "get_weather"
    assert block["input"] == WEATHER_ARGS


def test_anthropic_answers_text_after_a_tool_result(mock: MockServer) -> None:
    messages = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "21C"}],
        },
    ]

    message = claude(mock, {"tools": [CLAUDE_TOOL], "messages": messages}).json()

    assert message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": REPLY}]


@pytest.mark.parametrize(
    ("tool_choice", "kind"),
    [
        ({"type": "auto"}, "tool_use"),
        ({"type": "any"}, "tool_use"),
        ({"type": "tool", "name": "get_time"}, "tool_use"),
        ({"type": "none"}, "text"),
    ],
)
def test_anthropic_tool_choice_decides_between_tool_and_text(
    mock: MockServer, tool_choice: dict[str, Any], kind: str
) -> None:
    time_tool = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    body = {"tools": [CLAUDE_TOOL, time_tool], "tool_choice": tool_choice}

    [block] = claude(mock, body).json()["content"]

    assert block["type"] == kind
    if tool_choice["type"] == "tool":
        assert block["name"] == "get_time"
        assert block["input"] == {}


def test_anthropic_forced_tool_choice_calls_the_tool_even_after_a_result(mock: MockServer) -> None:
    messages = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A"}]},
    ]
    body = {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "any"}, "messages": messages}

    assert claude(mock, body).json()["stop_reason"] == "tool_use"


def test_anthropic_rejects_an_orphaned_tool_use(mock: MockServer) -> None:
    messages = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01X", "name": "get_weather", "input": {}}
            ],
        },
        {"role": "user", "content": "never mind"},
    ]

    response = claude(mock, {"tools": [CLAUDE_TOOL], "messages": messages})

    assert response.status_code == 400
    body = response.json()
    assert body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1: `tool_use` ids were found without `tool_result` blocks "
            "immediately after: toolu_01X. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message.",
        },
        "request_id": response.headers["request-id"],
    }


def test_anthropic_rejects_a_tool_result_without_its_tool_use(mock: MockServer) -> None:
    messages = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Z"}]},
    ]

    response = claude(mock, {"messages": messages})

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("messages.0.content.0: unexpected `tool_use_id`")
    assert "toolu_01Z" in message


# --- Anthropic: request errors --------------------------------------------------------------------


def test_anthropic_rejects_a_request_without_a_key(mock: MockServer) -> None:
    response = claude(mock, {}, **{"x-api-key": ""})

    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
        "request_id": response.headers["request-id"],
    }


def test_anthropic_takes_the_key_as_a_bearer_token_like_current_sdks(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.anthropic_base_url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 10, "messages": HELLO},
        headers={"Authorization": "Bearer sk-ant-x", "anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 200


def test_anthropic_checks_the_configured_key() -> None:
    with MockServer(MockConfig(api_key="sk-ant-right")) as mock:
        wrong = claude(mock, {}, **{"x-api-key": "sk-ant-wrong"})
        right = claude(mock, {}, **{"x-api-key": "sk-ant-right"})

    assert wrong.status_code == 401
    assert wrong.json()["error"] == {
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }
    assert right.status_code == 200


def test_anthropic_requires_the_version_header(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.anthropic_base_url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 10, "messages": HELLO},
        headers={"x-api-key": "sk-ant-x"},
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"model": None}, "model: Field required"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "system", "content": "x"}, *HELLO]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        (
            {"tool_choice": {"type": "any"}},
            "tool_choice may only be specified while providing tools.",
        ),
    ],
)
def test_anthropic_rejects_an_invalid_request(
    mock: MockServer, body: dict[str, Any], message: str
) -> None:
    full = {"model": CLAUDE, "max_tokens": 10, "messages": HELLO, **body}
    full = {key: value for key, value in full.items() if value is not None}

    response = httpx.post(
        f"{mock.anthropic_base_url}/v1/messages", json=full, headers=ANTHROPIC_HEADERS
    )

    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_anthropic_rejects_malformed_json(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.anthropic_base_url}/v1/messages",
        content=b'{"model": ',
        headers={**ANTHROPIC_HEADERS, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- Anthropic: streaming -------------------------------------------------------------------------


def test_anthropic_streams_named_events_in_the_recorded_order(mock: MockServer) -> None:
    response = claude(mock, {"stream": True})

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    assert "[DONE]" not in response.text
    events = named_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * CHUNKS,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_01")
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["stop_sequence"] is None
    assert start["usage"]["input_tokens"] == 6
    assert start["usage"]["output_tokens"] == 1
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(delta["type"] == "text_delta" for delta in deltas)
    assert "".join(delta["text"] for delta in deltas) == REPLY
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": CHUNKS},
    }


def test_anthropic_streams_a_tool_use_as_json_fragments(mock: MockServer) -> None:
    events = named_events(claude(mock, {"stream": True, "tools": [CLAUDE_TOOL]}).text)

    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_01")
    assert block["name"] == "get_weather"
    assert block["input"] == {}
    assert events[2][0] == "ping"
    fragments = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(f["type"] == "input_json_delta" for f in fragments)
    assert fragments[0]["partial_json"] == ""
    assert len(fragments) > 2
    assert json.loads("".join(f["partial_json"] for f in fragments)) == WEATHER_ARGS
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == len(fragments) - 1
    assert events[-1][0] == "message_stop"


def test_anthropic_sends_an_error_event_mid_stream(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 4})

    response = claude(mock, {"stream": True})

    assert response.status_code == 200
    events = named_events(response.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert mock.stats()["streams_completed"] == 0


def test_anthropic_answers_an_injected_529_as_overloaded(mock: MockServer) -> None:
    mock.script({"status": 529})

    response = claude(mock, {"stream": True})

    assert response.status_code == 529
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": response.headers["request-id"],
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_injected_statuses_carry_their_error_types(
    mock: MockServer, status: int, kind: str
) -> None:
    mock.script({"status": status, "retry_after": 2})

    response = claude(mock, {})

    assert response.status_code == status
    assert error_of("anthropic", response) == kind
    assert response.headers["retry-after"] == "2"


def test_anthropic_directives_are_read_from_text_blocks(mock: MockServer) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "mock:chunks=2"}],
        }
    ]

    message = claude(mock, {"messages": messages}).json()

    assert message["content"][0]["text"] == "This is"


def test_anthropic_an_unknown_directive_is_its_own_400(mock: MockServer) -> None:
    response = claude(mock, {"messages": [{"role": "user", "content": "mock:explode"}]})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "explode" in response.json()["error"]["message"]


# --- Gemini: answers ------------------------------------------------------------------------------


def test_gemini_answers_a_generate_content_response(mock: MockServer) -> None:
    response = gemini(mock)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.json()
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert body["candidates"] == [
        {
            "content": {"parts": [{"text": REPLY}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert body["usageMetadata"] == {
        "promptTokenCount": 6,
        "candidatesTokenCount": CHUNKS,
        "totalTokenCount": 6 + CHUNKS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}],
    }
    assert body["modelVersion"] == GEMINI
    assert isinstance(body["responseId"], str) and body["responseId"]


def test_gemini_takes_the_key_from_the_query(mock: MockServer) -> None:
    response = gemini(mock, query="?key=AIza-x", headers={})

    assert response.status_code == 200
    assert mock.stats()["last_path"] == f"/v1beta/models/{GEMINI}:generateContent?key=AIza-x"


@pytest.mark.parametrize("key", ["", "wrong"])
def test_gemini_answers_a_missing_or_wrong_key_with_400_invalid_argument(key: str) -> None:
    with MockServer(MockConfig(api_key="right")) as mock:
        response = gemini(mock, headers={"x-goog-api-key": key} if key else {})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


def test_gemini_answers_an_unknown_model_with_404_not_found(mock: MockServer) -> None:
    response = gemini(mock, model="gemini-2.0-pro")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "models/gemini-2.0-pro is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available "
            "models and their supported methods.",
            "status": "NOT_FOUND",
        }
    }


def test_gemini_serves_the_v1_api_version_too(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.gemini_base_url}/v1/models/{GEMINI}:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=GEMINI_HEADERS,
    )

    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": REPLY}]


def test_gemini_answers_an_unknown_method_with_404(mock: MockServer) -> None:
    response = gemini(mock, method="predict")

    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert mock.stats()["chat_requests"] == 0


@pytest.mark.parametrize(
    "config_key",
    [("generationConfig", "maxOutputTokens"), ("generation_config", "max_output_tokens")],
)
def test_gemini_stops_at_max_output_tokens_in_either_spelling(
    mock: MockServer, config_key: tuple[str, str]
) -> None:
    section, field = config_key

    body = gemini(mock, {section: {field: 2}}).json()

    [candidate] = body["candidates"]
    assert candidate["content"]["parts"] == [{"text": "This is"}]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert body["usageMetadata"]["candidatesTokenCount"] == 2


@pytest.mark.parametrize("spelling", ["systemInstruction", "system_instruction"])
def test_gemini_counts_the_system_instruction_in_either_spelling(
    mock: MockServer, spelling: str
) -> None:
    body = gemini(mock, {spelling: {"parts": [{"text": "x" * 40}]}}).json()

    assert body["usageMetadata"]["promptTokenCount"] == (10 + 4) + 6


def test_gemini_answers_every_candidate(mock: MockServer) -> None:
    body = gemini(mock, {"generationConfig": {"candidateCount": 2}}).json()

    assert [c["index"] for c in body["candidates"]] == [0, 1]
    assert body["usageMetadata"]["candidatesTokenCount"] == 2 * CHUNKS


def test_gemini_rejects_an_unknown_request_field(mock: MockServer) -> None:
    response = gemini(mock, {"messages": HELLO})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == (
        'Invalid JSON payload received. Unknown name "messages": Cannot find field.'
    )


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ([], "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            [{"role": "assistant", "parts": [{"text": "x"}]}],
            "Please use a valid role: user, model.",
        ),
        (
            [{"role": "user", "parts": []}],
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
        ),
    ],
)
def test_gemini_rejects_invalid_contents(
    mock: MockServer, contents: list[Any], message: str
) -> None:
    response = gemini(mock, {"contents": contents})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": message,
        "status": "INVALID_ARGUMENT",
    }


# --- Gemini: function calls and JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "tools",
    [
        {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]},
        {"tools": [{"function_declarations": [GEMINI_FUNCTION]}]},
    ],
)
def test_gemini_calls_a_declared_function(mock: MockServer, tools: dict[str, Any]) -> None:
    body = gemini(mock, tools).json()

    [candidate] = body["candidates"]
    assert candidate["content"] == {
        "parts": [{"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}],
        "role": "model",
    }
    assert candidate["finishReason"] == "STOP"


def test_gemini_fills_an_openapi_schema_with_capital_types(mock: MockServer) -> None:
    function = {
        "name": "lookup",
        "parameters": {
            "type": "OBJECT",
            "properties": {"q": {"type": "STRING"}, "n": {"type": "INTEGER"}},
            "required": ["q", "n"],
        },
    }

    body = gemini(mock, {"tools": [{"functionDeclarations": [function]}]}).json()

    call = body["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call == {"name": "lookup", "args": {"q": "mock", "n": 1}}


@pytest.mark.parametrize(
    "tool_config",
    [
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        {"tool_config": {"function_calling_config": {"mode": "NONE"}}},
    ],
)
def test_gemini_mode_none_gets_text(mock: MockServer, tool_config: dict[str, Any]) -> None:
    body = gemini(mock, {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}], **tool_config})

    assert body.json()["candidates"][0]["content"]["parts"] == [{"text": REPLY}]


def test_gemini_mode_any_calls_the_allowed_function(mock: MockServer) -> None:
    other = {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {}}}
    body = {
        "tools": [{"functionDeclarations": [GEMINI_FUNCTION, other]}],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
        },
    }

    part = gemini(mock, body).json()["candidates"][0]["content"]["parts"][0]

    assert part == {"functionCall": {"name": "get_time", "args": {}}}


def test_gemini_answers_text_after_a_function_response(mock: MockServer) -> None:
    contents = [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 21}}}],
        },
    ]
    body = {"contents": contents, "tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]}

    parts = gemini(mock, body).json()["candidates"][0]["content"]["parts"]

    assert parts == [{"text": REPLY}]


@pytest.mark.parametrize(
    "generation_config",
    [
        {"generationConfig": {"responseMimeType": "application/json", "responseSchema": {}}},
        {"generation_config": {"response_mime_type": "application/json", "response_schema": {}}},
    ],
)
def test_gemini_json_mode_answers_json_built_from_the_schema(
    mock: MockServer, generation_config: dict[str, Any]
) -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "ok": {"type": "BOOLEAN"},
        },
        "propertyOrdering": ["name", "tags", "ok"],
    }
    section = next(iter(generation_config))
    key = "responseSchema" if section == "generationConfig" else "response_schema"
    generation_config[section][key] = schema

    text = gemini(mock, generation_config).json()["candidates"][0]["content"]["parts"][0]["text"]

    assert json.loads(text) == {"name": "mock", "tags": ["mock"], "ok": True}


def test_gemini_safety_block_directive_blocks_the_prompt(mock: MockServer) -> None:
    contents = [{"role": "user", "parts": [{"text": "something mock:safety_block"}]}]

    body = gemini(mock, {"contents": contents}).json()

    assert "candidates" not in body
    assert body["promptFeedback"]["blockReason"] == "SAFETY"
    assert body["promptFeedback"]["safetyRatings"]
    assert body["usageMetadata"]["totalTokenCount"] == body["usageMetadata"]["promptTokenCount"]


# --- Gemini: streaming ----------------------------------------------------------------------------


def test_gemini_streams_data_lines_with_text_deltas_and_a_final_usage(mock: MockServer) -> None:
    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\r\n\r\n")
    assert "event:" not in response.text
    assert "[DONE]" not in response.text
    frames = sse_frames(response.text)
    assert all(frame.startswith("data: ") for frame in frames)
    chunks = [json.loads(frame[6:]) for frame in frames]
    assert len(chunks) == CHUNKS
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert "".join(texts) == REPLY
    assert len({c["responseId"] for c in chunks}) == 1
    assert all(c["modelVersion"] == GEMINI for c in chunks)
    *running, last = chunks
    assert all("finishReason" not in c["candidates"][0] for c in running)
    assert all(c["usageMetadata"]["totalTokenCount"] == 6 for c in running)
    assert all("candidatesTokenCount" not in c["usageMetadata"] for c in running)
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["promptTokenCount"] == 6
    assert last["usageMetadata"]["candidatesTokenCount"] == CHUNKS
    assert last["usageMetadata"]["totalTokenCount"] == 6 + CHUNKS


def test_gemini_streams_a_json_array_without_alt_sse(mock: MockServer) -> None:
    response = gemini(mock, method="streamGenerateContent")

    assert response.headers["content-type"].startswith("application/json")
    chunks = response.json()
    assert isinstance(chunks, list)
    assert len(chunks) == CHUNKS
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert "".join(texts) == REPLY


def test_gemini_streams_a_function_call_whole_in_one_chunk(mock: MockServer) -> None:
    response = gemini(
        mock,
        {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]},
        method="streamGenerateContent",
        query="?alt=sse",
    )

    [chunk] = [json.loads(p) for p in data_payloads(response.text)]
    candidate = chunk["candidates"][0]
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}
    ]
    assert candidate["finishReason"] == "STOP"
    assert chunk["usageMetadata"]["candidatesTokenCount"] > 0


def test_gemini_streams_a_safety_block_as_one_chunk(mock: MockServer) -> None:
    contents = [{"role": "user", "parts": [{"text": "mock:safety_block"}]}]

    response = gemini(
        mock, {"contents": contents}, method="streamGenerateContent", query="?alt=sse"
    )

    [chunk] = [json.loads(p) for p in data_payloads(response.text)]
    assert chunk["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in chunk


def test_gemini_sends_an_error_object_mid_stream(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 2})

    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    payloads = [json.loads(p) for p in data_payloads(response.text)]
    assert len(payloads) == 3
    assert payloads[-1]["error"]["code"] == 500
    assert payloads[-1]["error"]["status"] == "INTERNAL"


def test_gemini_ends_the_json_array_after_a_mid_stream_error(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 1})

    chunks = gemini(mock, method="streamGenerateContent").json()

    assert len(chunks) == 2
    assert chunks[-1]["error"]["status"] == "INTERNAL"


def test_gemini_json_array_stream_wraps_an_early_error_in_an_array(mock: MockServer) -> None:
    mock.script({"status": 429})

    response = gemini(mock, method="streamGenerateContent")

    assert response.status_code == 429
    [body] = response.json()
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_gemini_answers_an_injected_429_as_resource_exhausted(mock: MockServer) -> None:
    mock.script({"status": 429, "retry_after": 30})

    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("You exceeded your current quota")
    retry = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ],
)
def test_gemini_injected_statuses_carry_canonical_names(
    mock: MockServer, status: int, name: str
) -> None:
    mock.script({"status": status})

    response = gemini(mock)

    assert response.status_code == status
    assert error_of("gemini", response) == name


# --- Perplexity -----------------------------------------------------------------------------------


def test_perplexity_answers_with_citations_search_results_and_cost(mock: MockServer) -> None:
    response = pplx(mock, {})

    assert response.status_code == 200
    body = response.json()
    assert UUID_RE.match(body["id"])
    assert body["object"] == "chat.completion"
    assert body["model"] == "sonar"
    assert isinstance(body["created"], int)
    assert "system_fingerprint" not in body
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY},
            "finish_reason": "stop",
        }
    ]
    assert all(url.startswith("https://") for url in body["citations"])
    [first, *_] = body["search_results"]
    assert set(first) == {"title", "url", "date", "last_updated", "snippet", "source"}
    assert first["url"] == body["citations"][0]
    # 6 prompt and 5 completion tokens at $1/M each, rounded to 5 decimals, + $0.005 (low).
    assert body["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": CHUNKS,
        "total_tokens": 6 + CHUNKS,
        "search_context_size": "low",
        "cost": {
            "input_tokens_cost": 0.00001,
            "output_tokens_cost": 0.00001,
            "request_cost": 0.005,
            "total_cost": 0.00502,
        },
    }


def test_perplexity_charges_the_request_fee_of_the_search_context_size(mock: MockServer) -> None:
    body = {"model": "sonar-pro", "web_search_options": {"search_context_size": "high"}}

    usage = pplx(mock, body).json()["usage"]

    assert usage["search_context_size"] == "high"
    assert usage["cost"]["request_cost"] == 0.014
    assert usage["cost"]["output_tokens_cost"] == round(CHUNKS * 15 / 1e6, 5)


def test_perplexity_answers_json_for_a_json_schema(mock: MockServer) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }

    content = pplx(mock, {"response_format": response_format}).json()["choices"][0]["message"]

    assert json.loads(content["content"]) == {"a": "mock"}


def test_perplexity_rejects_json_object_mode(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "answer in json"}]

    response = pplx(mock, {"messages": messages, "response_format": {"type": "json_object"}})

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["type"] == "bad_request"
    assert error["code"] == 400
    assert "ResponseFormatText -> type: Input should be 'text'" in error["message"]


def test_perplexity_rejects_an_unknown_model_with_invalid_model(mock: MockServer) -> None:
    response = pplx(mock, {"model": "llama-3.1-sonar-small-128k-online"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Invalid model 'llama-3.1-sonar-small-128k-online'. Permitted models can "
            "be found in the documentation at https://docs.perplexity.ai/guides/model-cards.",
            "type": "invalid_model",
            "code": 400,
        }
    }


def test_perplexity_accepts_extra_models_from_the_config() -> None:
    with MockServer(MockConfig(extra_models=("sonar-next",))) as mock:
        assert pplx(mock, {"model": "sonar-next"}).status_code == 200
        assert gemini(mock, model="sonar-next").status_code == 200


def test_perplexity_rejects_roles_that_do_not_alternate(mock: MockServer) -> None:
    messages = [*HELLO, {"role": "user", "content": "again"}]

    response = pplx(mock, {"messages": messages})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_message"
    assert response.json()["error"]["code"] == 400


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "Basic abc"}])
def test_perplexity_answers_a_missing_key_with_an_openresty_html_401(
    mock: MockServer, headers: dict[str, str]
) -> None:
    response = pplx(mock, {}, **headers)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>401 Authorization Required</title>" in response.text
    assert "openresty" in response.text


def test_perplexity_answers_a_wrong_configured_key_with_html() -> None:
    with MockServer(MockConfig(api_key="pplx-right")) as mock:
        wrong = pplx(mock, {}, Authorization="Bearer pplx-wrong")
        right = pplx(mock, {}, Authorization="Bearer pplx-right")

    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("text/html")
    assert right.status_code == 200


def test_perplexity_streams_cumulative_usage_and_a_done_object_without_done_marker(
    mock: MockServer,
) -> None:
    response = pplx(mock, {"stream": True})

    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = data_payloads(response.text)
    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    *tokens, done = chunks
    assert len(tokens) == CHUNKS
    assert len({c["id"] for c in chunks}) == 1
    assert UUID_RE.match(done["id"])
    assert all(c["object"] == "chat.completion.chunk" for c in tokens)
    assert [c["usage"]["completion_tokens"] for c in tokens] == list(range(1, CHUNKS + 1))
    assert all(c["citations"] for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in tokens)
    assert "".join(c["choices"][0]["delta"]["content"] for c in tokens) == REPLY
    assert done["object"] == "chat.completion.done"
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert done["search_results"]
    assert done["usage"]["completion_tokens"] == CHUNKS
    assert done["usage"]["cost"]["request_cost"] == 0.005


def test_perplexity_done_directive_adds_the_done_marker(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "hi mock:pplx_done=1"}]

    payloads = data_payloads(pplx(mock, {"stream": True, "messages": messages}).text)

    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["object"] == "chat.completion.done"


def test_perplexity_legacy_directive_streams_message_and_delta(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "hi mock:pplx_legacy=1"}]

    payloads = data_payloads(pplx(mock, {"stream": True, "messages": messages}).text)

    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    assert all(c["object"] == "chat.completion" for c in chunks)
    assert [c["choices"][0]["message"]["content"] for c in chunks[:2]] == ["This", "This is"]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:2]] == ["This", " is"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["message"]["content"] == REPLY
    assert chunks[-1]["usage"]["completion_tokens"] == CHUNKS


def test_perplexity_injected_401_is_html_and_429_is_json(mock: MockServer) -> None:
    mock.script({"status": 401}, {"status": 429})

    unauthorized = pplx(mock, {})
    limited = pplx(mock, {})

    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"].startswith("text/html")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == 429


def test_perplexity_sends_an_error_object_mid_stream(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 2})

    payloads = [json.loads(p) for p in data_payloads(pplx(mock, {"stream": True}).text)]

    assert len(payloads) == 3
    assert payloads[-1]["error"]["code"] == 500


# --- failure injection on every protocol ----------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [
        ("openai", "server_error"),
        ("anthropic", "api_error"),
        ("gemini", "INTERNAL"),
        ("perplexity", "internal_server_error"),
    ],
)
def test_a_status_directive_answers_in_each_providers_shape(
    mock: MockServer, protocol: str, kind: str
) -> None:
    response = send(mock, protocol, "hi mock:status=500")

    assert response.status_code == 500
    assert error_of(protocol, response) == kind


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [
        ("openai", "invalid_request_error"),
        ("anthropic", "invalid_request_error"),
        ("gemini", "INVALID_ARGUMENT"),
        ("perplexity", "bad_request"),
    ],
)
def test_an_unknown_directive_is_a_400_in_each_providers_shape(
    mock: MockServer, protocol: str, kind: str
) -> None:
    response = send(mock, protocol, "mock:explode=1")

    assert response.status_code == 400
    assert error_of(protocol, response) == kind


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reset_directive_drops_the_connection(mock: MockServer, protocol: str) -> None:
    with pytest.raises(httpx.TransportError):
        send(mock, protocol, "mock:reset")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cut_non_stream_request_gets_no_response(mock: MockServer, protocol: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        send(mock, protocol, "mock:cut_after_chunks=0")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cut_stream_delivers_exactly_the_given_frames(mock: MockServer, protocol: str) -> None:
    url, body, headers = request_for(mock, protocol, "mock:cut_after_chunks=2", stream=True)

    received = received_before_cut(url, body, headers)

    assert len(sse_frames(received.decode())) == 2
    stats = mock.stats()
    assert stats["streams_started"] == 1
    assert stats["streams_completed"] == 0


@pytest.mark.parametrize(
    ("protocol", "text_of"),
    [
        ("openai", lambda r: r.json()["choices"][0]["message"]["content"]),
        ("anthropic", lambda r: r.json()["content"][0]["text"]),
        ("gemini", lambda r: r.json()["candidates"][0]["content"]["parts"][0]["text"]),
        ("perplexity", lambda r: r.json()["choices"][0]["message"]["content"]),
    ],
)
def test_a_chunks_directive_sets_the_reply_length(
    mock: MockServer, protocol: str, text_of: Any
) -> None:
    assert text_of(send(mock, protocol, "mock:chunks=3")) == "This is a"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_delay_directive_holds_back_the_answer(mock: MockServer, protocol: str) -> None:
    started = time.monotonic()

    response = send(mock, protocol, "mock:delay_ms=200")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_chunk_delay_step_paces_each_stream(mock: MockServer, protocol: str) -> None:
    mock.script({"chunk_delay_ms": 40})
    started = time.monotonic()

    response = send(mock, protocol, "hello", stream=True)

    assert response.status_code == 200
    assert time.monotonic() - started >= CHUNKS * 0.04


def test_script_steps_are_shared_by_all_protocols_in_order(mock: MockServer) -> None:
    mock.script({"status": 529}, {"status": 429}, {"status": 503})

    assert send(mock, "anthropic", "hi").status_code == 529
    assert send(mock, "gemini", "hi").status_code == 429
    assert send(mock, "perplexity", "hi").status_code == 503
    assert send(mock, "openai", "hi").status_code == 200


# --- stats ----------------------------------------------------------------------------------------


def test_stats_count_requests_by_protocol_and_remember_the_last_one(mock: MockServer) -> None:
    for protocol, times in (("openai", 1), ("anthropic", 2), ("gemini", 3), ("perplexity", 1)):
        for _ in range(times):
            send(mock, protocol, "hello")
    send(mock, "anthropic", "last one")

    stats = httpx.get(f"{mock.url}/_mock/stats").json()

    assert stats["chat_requests"] == 8
    assert stats["requests_by_protocol"] == {
        "openai": 1,
        "anthropic": 3,
        "gemini": 3,
        "perplexity": 1,
    }
    assert stats["last_path"] == "/v1/messages"
    assert stats["last_protocol"] == "anthropic"
    assert stats["last_request"]["messages"] == [{"role": "user", "content": "last one"}]
    assert stats["last_request_headers"]["anthropic-version"] == "2023-06-01"


def test_stats_count_a_rejected_request_too(mock: MockServer) -> None:
    pplx(mock, {}, Authorization="")

    stats = mock.stats()

    assert stats["requests_by_protocol"]["perplexity"] == 1
    assert stats["chat_requests"] == 1


def test_resetting_zeroes_the_protocol_counters(mock: MockServer) -> None:
    send(mock, "gemini", "hello")

    stats = httpx.post(f"{mock.url}/_mock/reset").json()

    assert stats["requests_by_protocol"] == dict.fromkeys(PROTOCOLS, 0)
    assert stats["last_path"] is None


def test_the_perplexity_prefix_keeps_its_id_format_apart_from_openai(mock: MockServer) -> None:
    openai_id = send(mock, "openai", "hello").json()["id"]
    perplexity_id = send(mock, "perplexity", "hello").json()["id"]

    assert openai_id.startswith("chatcmpl-")
    assert uuid.UUID(perplexity_id).version == 4
