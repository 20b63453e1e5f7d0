"""Request checks for /v1/chat/completions: what the gateway relies on, nothing more."""

from __future__ import annotations

import copy

import pytest

from aqta.errors import AqtaError
from gateway.validation import chat_request

MESSAGES = [{"role": "user", "content": "Say hello."}]

FULL_REQUEST = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image, and what's the weather in Paris?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
            ],
            "name": "alice",
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
            "refusal": None,
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp_c":21}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": False,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": True,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "reply",
            "description": "The answer",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    },
    "stream": True,
    "stream_options": {"include_usage": True},
    "logprobs": True,
    "top_logprobs": 5,
    "logit_bias": {"50256": -100},
    "seed": 42,
    "user": "user-1234",
    "n": 2,
    "stop": ["\n\n", "END", "###", "Observation:"],
    "temperature": 0.2,
    "top_p": 0.9,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "max_tokens": 256,
    "max_completion_tokens": 256,
    "metadata": {"team": "search"},
    "store": False,
    "service_tier": "auto",
    "reasoning_effort": "low",
    "prompt_cache_key": "tenant-7",
    "safety_identifier": "hash-of-user",
}


def with_(**changes) -> dict:
    """A minimal valid request with ``changes`` applied (a value of ... removes the field)."""
    body = {"model": "gpt-4o-mini", "messages": copy.deepcopy(MESSAGES), **changes}
    return {k: v for k, v in body.items() if v is not ...}


def test_it_accepts_a_full_openai_request_unchanged():
    body = copy.deepcopy(FULL_REQUEST)

    assert chat_request(body) == FULL_REQUEST


def test_it_accepts_a_minimal_request():
    assert chat_request(with_()) == with_()


@pytest.mark.parametrize(
    "changes",
    [
        {"stop": "END"},
        {"temperature": 0},
        {"temperature": 2},
        {"top_p": 0},
        {"n": 128},
        {"top_logprobs": 0},
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "text"}},
        {"stream": False},
        {"tools": []},
        {"temperature": None, "stop": None, "stream_options": None},
    ],
    ids=repr,
)
def test_it_accepts_boundary_values(changes):
    assert chat_request(with_(**changes)) == with_(**changes)


INVALID = [
    # (id, request changes, code, param)
    ("model missing", {"model": ...}, "missing_parameter", "model"),
    ("model not a string", {"model": 4}, "invalid_parameter", "model"),
    ("model empty", {"model": ""}, "invalid_parameter", "model"),
    ("messages missing", {"messages": ...}, "missing_parameter", "messages"),
    ("messages empty", {"messages": []}, "invalid_parameter", "messages"),
    ("messages not a list", {"messages": "Say hello."}, "invalid_parameter", "messages"),
    ("message not an object", {"messages": ["Say hello."]}, "invalid_parameter", "messages[0]"),
    (
        "second message not an object",
        {"messages": [*MESSAGES, ["assistant", "Hi"]]},
        "invalid_parameter",
        "messages[1]",
    ),
    (
        "message role not a string",
        {"messages": [{"role": 1, "content": "x"}]},
        "invalid_parameter",
        "messages[0].role",
    ),
    ("temperature above 2", {"temperature": 2.1}, "invalid_parameter", "temperature"),
    ("temperature below 0", {"temperature": -0.1}, "invalid_parameter", "temperature"),
    ("temperature a string", {"temperature": "hot"}, "invalid_parameter", "temperature"),
    ("temperature a boolean", {"temperature": True}, "invalid_parameter", "temperature"),
    ("top_p above 1", {"top_p": 1.5}, "invalid_parameter", "top_p"),
    ("n zero", {"n": 0}, "invalid_parameter", "n"),
    ("n fractional", {"n": 1.5}, "invalid_parameter", "n"),
    ("stop five items", {"stop": ["a", "b", "c", "d", "e"]}, "invalid_parameter", "stop"),
    ("stop non-strings", {"stop": ["END", 7]}, "invalid_parameter", "stop"),
    ("stop a number", {"stop": 7}, "invalid_parameter", "stop"),
    ("max_tokens zero", {"max_tokens": 0}, "invalid_parameter", "max_tokens"),
    (
        "max_completion_tokens zero",
        {"max_completion_tokens": 0},
        "invalid_parameter",
        "max_completion_tokens",
    ),
    (
        "presence_penalty below -2",
        {"presence_penalty": -3},
        "invalid_parameter",
        "presence_penalty",
    ),
    (
        "frequency_penalty above 2",
        {"frequency_penalty": 2.5},
        "invalid_parameter",
        "frequency_penalty",
    ),
    ("top_logprobs above 20", {"top_logprobs": 21}, "invalid_parameter", "top_logprobs"),
    ("stream a string", {"stream": "yes"}, "invalid_parameter", "stream"),
    ("logprobs a string", {"logprobs": "true"}, "invalid_parameter", "logprobs"),
    (
        "stream_options without stream",
        {"stream_options": {"include_usage": True}},
        "invalid_parameter",
        "stream_options",
    ),
    (
        "stream_options with stream false",
        {"stream": False, "stream_options": {"include_usage": True}},
        "invalid_parameter",
        "stream_options",
    ),
    (
        "stream_options not an object",
        {"stream": True, "stream_options": True},
        "invalid_parameter",
        "stream_options",
    ),
    (
        "response_format type unknown",
        {"response_format": {"type": "xml"}},
        "invalid_parameter",
        "response_format",
    ),
    (
        "response_format not an object",
        {"response_format": "json_object"},
        "invalid_parameter",
        "response_format",
    ),
    (
        "json_schema missing",
        {"response_format": {"type": "json_schema"}},
        "invalid_parameter",
        "response_format.json_schema",
    ),
    (
        "json_schema not an object",
        {"response_format": {"type": "json_schema", "json_schema": "reply"}},
        "invalid_parameter",
        "response_format.json_schema",
    ),
    ("tools not a list", {"tools": {"type": "function"}}, "invalid_parameter", "tools"),
]


@pytest.mark.parametrize(
    ("changes", "code", "param"),
    [pytest.param(changes, code, param, id=name) for name, changes, code, param in INVALID],
)
def test_it_rejects_an_invalid_request(changes, code, param):
    with pytest.raises(AqtaError) as caught:
        chat_request(with_(**changes))

    error = caught.value
    assert (error.status, error.code, error.param) == (400, code, param)
    assert error.type == "invalid_request_error"
    assert error.message


def test_a_message_without_a_role_is_a_missing_parameter():
    with pytest.raises(AqtaError) as caught:
        chat_request(with_(messages=[{"content": "Say hello."}]))

    error = caught.value
    assert (error.status, error.code, error.param) == (400, "missing_parameter", "messages[0].role")


def test_a_message_without_a_role_is_rejected_with_its_param():
    with pytest.raises(AqtaError) as caught:
        chat_request(with_(messages=[*MESSAGES, {"content": "Hi!"}]))

    assert (caught.value.status, caught.value.param) == (400, "messages[1].role")


@pytest.mark.parametrize("body", [None, [], ["model", "gpt-4o"], "gpt-4o", 42], ids=repr)
def test_it_rejects_a_body_that_is_not_an_object(body):
    with pytest.raises(AqtaError) as caught:
        chat_request(body)

    assert (caught.value.status, caught.value.code, caught.value.param) == (
        400,
        "invalid_request",
        None,
    )
