"""The mock provider's Anthropic protocol on the wire: answers, tools, request errors and
streams as docs/providers.md §2 and §6 describe them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from gateway.mock_provider import MockConfig, MockServer
from gateway.tests.mock_wire import (
    ANTHROPIC_HEADERS,
    CHUNKS,
    CLAUDE,
    CLAUDE_TOOL,
    HELLO,
    REPLY,
    WEATHER_ARGS,
    claude,
    error_of,
    named_events,
)

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
