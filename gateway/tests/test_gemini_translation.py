"""The Gemini adapter: OpenAI requests → Gemini requests, Gemini answers, streams and errors
→ OpenAI's shapes. Payloads are the recorded and assembled shapes of docs/providers.md §3
(``fixtures/gemini/``, provenance in its README).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment, Endpoint
from gateway.dataplane.providers.base import StreamState
from gateway.dataplane.providers.gemini import GeminiProvider, gemini_request_body, gemini_schema
from gateway.dataplane.providers.gemini import response as gemini_response
from gateway.dataplane.steps.answer import delta_text as _delta_text
from gateway.tests.streams import client_events

provider = GeminiProvider()
FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
NOW = 1_753_357_673
MODEL = "gemini-flash"  # what the client asks for
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def loaded(name: str) -> dict:
    parsed: dict = orjson.loads(fixture(name))
    return parsed


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def fixed_ids(monkeypatch):
    """Generated ids become id0, id1, ... so whole outputs can be compared."""
    counter = itertools.count()
    monkeypatch.setattr(gemini_response, "_random_id", lambda: f"id{next(counter)}")


ENDPOINT = Endpoint(
    name="env-google",
    provider="google",
    base_url="https://generativelanguage.googleapis.com",
    api_key="AIza-upstream",
)
DEPLOYMENT = Deployment("google", "google", ENDPOINT, "gemini-2.0-flash")
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
WEATHER_DECLARATION = {
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    },
}


def sent(body: dict, stream: bool = False) -> dict:
    request = provider.build_request(DEPLOYMENT, {"model": MODEL, **body}, stream=stream)
    payload: dict = orjson.loads(request.body)
    return payload


def refusal(body: dict) -> AqtaError:
    """The error for ``body``, which check_request and build_request must agree on."""
    body = {"model": MODEL, "messages": HELLO, **body}
    with pytest.raises(AqtaError) as checked:
        provider.check_request(body)
    with pytest.raises(AqtaError) as built:
        provider.build_request(DEPLOYMENT, body, stream=False)
    assert (checked.value.param, checked.value.status) == (built.value.param, 400)
    return checked.value


# --- URL and headers -------------------------------------------------------------------------


def test_a_request_goes_to_generate_content_with_the_key_in_a_header():
    request = provider.build_request(DEPLOYMENT, {"model": MODEL, "messages": HELLO}, False)

    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert request.headers == {
        "Content-Type": "application/json",
        "x-goog-api-key": "AIza-upstream",
    }
    assert "AIza-upstream" not in request.url


def test_a_streamed_request_goes_to_the_sse_stream_endpoint():
    request = provider.build_request(DEPLOYMENT, {"model": MODEL, "messages": HELLO}, True)

    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash"
        ":streamGenerateContent?alt=sse"
    )


@pytest.mark.parametrize(
    ("base_url", "upstream", "url"),
    [
        ("http://127.0.0.1:8081/", "gemini-2.0-flash", "http://127.0.0.1:8081/v1beta/models/gemini-2.0-flash"),
        ("https://g.example/v1beta", "gemini-2.0-flash", "https://g.example/v1beta/models/gemini-2.0-flash"),
        ("https://g.example/v1beta/", "models/gemini-2.5-pro", "https://g.example/v1beta/models/gemini-2.5-pro"),
        ("https://g.example", "tunedModels/my-model-1", "https://g.example/v1beta/tunedModels/my-model-1"),
    ],
)  # fmt: skip
def test_base_urls_and_model_ids_are_normalised(base_url, upstream, url):
    endpoint = Endpoint("mock", "google", base_url, "")
    deployment = Deployment("mock", "google", endpoint, upstream)

    request = provider.build_request(deployment, {"model": MODEL, "messages": HELLO}, False)

    assert request.url == url + ":generateContent"
    assert "x-goog-api-key" not in request.headers  # a keyless mock gets no key header


# --- messages --------------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_instruction():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        *HELLO,
    ]

    body = sent({"messages": messages})

    assert body == {
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
        "contents": [{"role": "user", "parts": [{"text": "Say hello."}]}],
    }


def test_a_request_of_system_messages_only_sends_them_as_the_user_turn():
    body = sent({"messages": [{"role": "system", "content": "Tell a joke."}]})

    assert body == {"contents": [{"role": "user", "parts": [{"text": "Tell a joke."}]}]}


def test_assistant_turns_become_model_turns_and_same_role_turns_are_merged():
    messages = [
        {"role": "user", "content": "One."},
        {"role": "user", "content": [{"type": "text", "text": "Two."}]},
        {"role": "assistant", "content": "Three."},
        {"role": "assistant", "content": [{"type": "text", "text": "Four."}]},
        {"role": "user", "content": "Five.", "name": "alice"},
    ]

    assert sent({"messages": messages})["contents"] == [
        {"role": "user", "parts": [{"text": "One."}, {"text": "Two."}]},
        {"role": "model", "parts": [{"text": "Three."}, {"text": "Four."}]},
        {"role": "user", "parts": [{"text": "Five."}]},
    ]


def test_empty_messages_add_no_empty_turns():
    messages = [*HELLO, {"role": "assistant", "content": ""}, {"role": "user", "content": "Again."}]

    assert sent({"messages": messages})["contents"] == [
        {"role": "user", "parts": [{"text": "Say hello."}, {"text": "Again."}]}
    ]


def test_the_multi_turn_example_becomes_the_gemini_example():
    """docs/providers.md §1.3's OpenAI request and §3.2's Gemini request tell the same story."""
    messages = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            ],
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
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp_c":21}'},
    ]

    body = sent({"messages": messages, "tools": [WEATHER], "tool_choice": "auto"})

    assert body == {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather in Paris?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                ],
            },
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"output": '{"temp_c":21}'},
                        }
                    }
                ],
            },
        ],
        "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }


def _call(call_id: str, name: str, arguments: str = "{}") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_parallel_calls_and_their_results_are_grouped_and_a_following_user_turn_joins_them():
    messages = [
        *HELLO,
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [_call("call_1", "get_weather"), _call("call_2", "get_time")],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "And tomorrow?"},
    ]

    contents = sent({"messages": messages})["contents"]

    assert contents[1:] == [
        {
            "role": "model",
            "parts": [
                {"text": "Checking both."},
                {"functionCall": {"name": "get_weather", "args": {}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                {"text": "And tomorrow?"},
            ],
        },
    ]


def test_a_thought_signature_carried_in_a_call_id_goes_back_with_the_call():
    call_id = "call_0a1b__thought__CiQBVKhc7e+/sig=="
    messages = [
        *HELLO,
        {"role": "assistant", "tool_calls": [_call(call_id, "get_weather", '{"city":"Rome"}')]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]

    contents = sent({"messages": messages})["contents"]

    assert contents[1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
            "thoughtSignature": "CiQBVKhc7e+/sig==",
        }
    ]
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_empty_arguments_are_an_empty_object():
    messages = [*HELLO, {"role": "assistant", "tool_calls": [_call("c", "now", "")]}]

    assert sent({"messages": messages})["contents"][1]["parts"] == [
        {"functionCall": {"name": "now", "args": {}}}
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"Paris"'])
def test_arguments_that_are_not_a_json_object_are_refused(arguments):
    messages = [*HELLO, {"role": "assistant", "tool_calls": [_call("c", "f", arguments)]}]

    error = refusal({"messages": messages})

    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_a_tool_result_for_an_unknown_call_is_refused():
    messages = [*HELLO, {"role": "tool", "tool_call_id": "call_nowhere", "content": "42"}]

    assert refusal({"messages": messages}).param == "messages[1].tool_call_id"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "function", "name": "f", "content": "1"}, "messages[1].role"),
        ({"role": "robot", "content": "beep"}, "messages[1].role"),
        ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
         "messages[1].content[0]"),
        ({"role": "user", "content": [{"type": "video", "video": {}}]}, "messages[1].content[0]"),
    ],
)  # fmt: skip
def test_unknown_roles_and_parts_are_refused(message, param):
    assert refusal({"messages": [*HELLO, message]}).param == param


# --- images, audio and files -----------------------------------------------------------------


def _user_with(part: dict) -> dict:
    return {"messages": [{"role": "user", "content": [part]}]}


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


@pytest.mark.parametrize(
    ("part", "gemini_part"),
    [
        (_image("data:image/png;base64,iVBORw0KGgo="),
         {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}),
        (_image("data:image/svg+xml,%3Csvg%2F%3E"),
         {"inlineData": {"mimeType": "image/svg+xml", "data": "PHN2Zy8+"}}),
        (_image("https://example.com/cats/tabby.JPG?size=large"),
         {"fileData": {"mimeType": "image/jpeg",
                       "fileUri": "https://example.com/cats/tabby.JPG?size=large"}}),
        (_image("https://generativelanguage.googleapis.com/v1beta/files/abc-123"),
         {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc-123"}}),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
         {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}),
        ({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                   "filename": "report.pdf"}},
         {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}),
        ({"type": "file", "file": {"file_data": "JVBERi0=", "filename": "report.pdf"}},
         {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}),
    ],
    ids=["data-url", "percent-data-url", "http-url", "files-api", "audio", "file-data-url",
         "file-base64"],
)  # fmt: skip
def test_media_parts_become_inline_or_file_data(part, gemini_part):
    assert sent(_user_with(part))["contents"][0]["parts"] == [gemini_part]


def test_an_image_url_whose_type_cannot_be_told_is_refused_clearly():
    error = refusal(_user_with(_image("https://example.com/render?id=7&token=secret")))

    assert error.param == "messages[0].content[0].image_url"
    assert "data: URL" in error.message
    assert "secret" not in error.message


@pytest.mark.parametrize(
    "part",
    [
        _image("data:;base64,AAAA"),
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"file_data": "AAAA", "filename": "blob"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "flac"}},
    ],
    ids=["data-url-without-type", "file-id", "file-without-extension", "unknown-audio"],
)
def test_media_gemini_cannot_be_given_is_refused(part):
    param = refusal(_user_with(part)).param
    assert param is not None
    assert param.startswith("messages[0].content[0]")


# --- generation config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "config"),
    [
        ({"temperature": 0.2, "top_p": 0.95}, {"temperature": 0.2, "topP": 0.95}),
        ({"max_tokens": 256}, {"maxOutputTokens": 256}),
        ({"max_tokens": 256, "max_completion_tokens": 512}, {"maxOutputTokens": 512}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b", "c", "d"]}, {"stopSequences": ["a", "b", "c", "d"]}),
        ({"n": 3}, {"candidateCount": 3}),
        ({"seed": 42}, {"seed": 42}),
        ({"seed": 2**40 + 7}, {"seed": 7}),
        ({"seed": -5}, {"seed": -5}),
        ({"presence_penalty": 0.5, "frequency_penalty": -0.5},
         {"presencePenalty": 0.5, "frequencyPenalty": -0.5}),
        ({"presence_penalty": 0, "frequency_penalty": 0.0}, None),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        ({"response_format": {"type": "text"}}, None),
    ],
    ids=["sampling", "max_tokens", "max_completion_tokens-wins", "stop-string", "stop-list", "n",
         "seed", "big-seed-folded", "negative-seed", "penalties", "zero-penalties", "json_object",
         "text"],
)  # fmt: skip
def test_sampling_parameters_become_generation_config(params, config):
    assert sent({"messages": HELLO, **params}).get("generationConfig") == config


def test_harmless_parameters_gemini_has_no_use_for_are_dropped():
    dropped = {
        "user": "u-1",
        "metadata": {"k": "v"},
        "store": True,
        "service_tier": "auto",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "stream_options": {"include_usage": True},
        "prediction": {"type": "content", "content": "x"},
        "verbosity": "low",
        "reasoning_effort": "low",
        "logprobs": False,
        "top_logprobs": 0,
        "logit_bias": {},
        "modalities": ["text"],
        "parallel_tool_calls": False,
        "tools": [WEATHER],
    }

    assert sent({"messages": HELLO, **dropped}) == sent({"messages": HELLO, "tools": [WEATHER]})


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1234": -100}}, "logit_bias"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"stop": ["1", "2", "3", "4", "5", "6"]}, "stop"),
        ({"parallel_tool_calls": False, "tools": [WEATHER, {**WEATHER, "function": {"name": "g"}}]},
         "parallel_tool_calls"),
        ({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools[0]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
         "tool_choice"),
    ],
)  # fmt: skip
def test_parameters_that_would_give_a_wrong_answer_are_refused_by_name(params, param):
    error = refusal(params)

    assert error.param == param
    assert param in error.message


def test_check_request_accepts_what_can_be_translated():
    provider.check_request({"model": MODEL, "messages": HELLO, "tools": [WEATHER], "n": 2})


def test_the_clients_body_is_left_as_it_was():
    body = {"model": MODEL, "messages": HELLO, "tools": [WEATHER], "response_format": None}
    before = json.dumps(body, sort_keys=True)

    provider.build_request(DEPLOYMENT, body, stream=True)

    assert json.dumps(body, sort_keys=True) == before


# --- tools -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "get_weather"}},
         {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "get_weather"}}]}},
         {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
    ids=["absent", "none", "auto", "required", "function", "allowed-required"],
)  # fmt: skip
def test_tool_choice_becomes_the_function_calling_mode(choice, config):
    params = {"messages": HELLO, "tools": [WEATHER], "tool_choice": choice}

    body = sent({k: v for k, v in params.items() if v is not None})

    assert body["tools"] == [{"functionDeclarations": [WEATHER_DECLARATION]}]
    assert body.get("toolConfig") == (config and {"functionCallingConfig": config})


def test_allowed_tools_in_auto_mode_declare_only_the_allowed_functions():
    clock = {"type": "function", "function": {"name": "get_time"}}
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [clock]}}

    body = sent({"messages": HELLO, "tools": [WEATHER, clock], "tool_choice": choice})

    assert body["tools"] == [{"functionDeclarations": [{"name": "get_time"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_a_tool_choice_without_tools_is_not_sent():
    assert sent({"messages": HELLO, "tool_choice": "none"}) == sent({"messages": HELLO})


@pytest.mark.parametrize(
    "parameters", [None, {}, {"type": "object", "properties": {}}], ids=["absent", "empty", "none"]
)
def test_a_function_without_parameters_is_declared_without_them(parameters):
    tool = {"type": "function", "function": {"name": "now", "parameters": parameters}}

    assert sent({"messages": HELLO, "tools": [tool]})["tools"] == [
        {"functionDeclarations": [{"name": "now"}]}
    ]


# --- schemas ---------------------------------------------------------------------------------


def test_a_json_schema_response_format_sends_the_converted_schema_in_order():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": "Reply",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer", "default": 1}},
        "required": ["zeta", "alpha"],
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": True},
    }

    config = sent({"messages": HELLO, "response_format": response_format})["generationConfig"]

    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"zeta": {"type": "STRING"}, "alpha": {"type": "INTEGER"}},
            "required": ["zeta", "alpha"],
            "propertyOrdering": ["zeta", "alpha"],
        },
    }


def test_nested_objects_and_arrays_are_converted_all_the_way_down():
    schema = {
        "type": "object",
        "properties": {
            "orders": {
                "type": "array",
                "description": "Open orders",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid", "pattern": "^[a-f0-9-]+$"},
                        "total": {"type": "number", "format": "double", "minimum": 0},
                        "placed": {"type": "string", "format": "date-time"},
                        "tags": {"type": "array", "items": {"type": "string"}, "examples": [["x"]]},
                    },
                    "required": ["id", "ghost"],
                    "additionalProperties": False,
                },
            }
        },
    }

    assert gemini_schema(schema, param="p") == {
        "type": "OBJECT",
        "properties": {
            "orders": {
                "type": "ARRAY",
                "description": "Open orders",
                "minItems": 1,
                "items": {
                    "type": "OBJECT",
                    "properties": {
                        "id": {"type": "STRING"},
                        "total": {"type": "NUMBER", "minimum": 0, "format": "double"},
                        "placed": {"type": "STRING", "format": "date-time"},
                        "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
                    },
                    "required": ["id"],
                },
            }
        },
    }


@pytest.mark.parametrize(
    ("schema", "converted"),
    [
        ({"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Nickname"},
         {"type": "STRING", "nullable": True, "description": "Nickname"}),
        ({"type": ["integer", "null"]}, {"type": "INTEGER", "nullable": True}),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
         {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": True}),
        ({"oneOf": [{"type": "string"}, {"type": "boolean"}]},
         {"anyOf": [{"type": "STRING"}, {"type": "BOOLEAN"}]}),
        ({"type": ["string", "number"]}, {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}),
        ({"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "null"}]},
         {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "nullable": True}),
        ({"type": "string", "enum": ["red", "green"]},
         {"type": "STRING", "enum": ["red", "green"]}),
        ({"enum": ["red", None]}, {"type": "STRING", "enum": ["red"], "nullable": True}),
        ({"type": "integer", "enum": [1, 2, 3]}, {"type": "INTEGER"}),
        ({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "integer", "format": "int64"}, {"type": "INTEGER", "format": "int64"}),
        ({"type": "object", "additionalProperties": {"type": "string"}}, {"type": "OBJECT"}),
        ({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
         {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
          "required": ["a", "b"]}),
    ],
    ids=["anyOf-null", "type-list-null", "anyOf-several-null", "oneOf", "type-list",
         "nullable-object", "enum", "nullable-enum", "integer-enum-dropped", "const",
         "unsupported-format-dropped", "integer-format", "map-loosened", "allOf-merged"],
)  # fmt: skip
def test_schema_keywords_are_mapped_to_geminis_subset(schema, converted):
    assert gemini_schema(schema, param="p") == converted


def test_references_are_inlined_from_defs_and_definitions():
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "work": {"$ref": "#/definitions/Address"},
            "past": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
        },
        "$defs": {"Address": {"$ref": "#/$defs/Street"}, "Street": {"type": "string"}},
        "definitions": {"Address": {"type": "string", "title": "Address"}},
    }

    assert gemini_schema(schema, param="p") == {
        "type": "OBJECT",
        "properties": {
            "home": {"type": "STRING", "description": "Where they live"},
            "work": {"type": "STRING"},
            "past": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
    }


def test_a_definition_used_by_two_sibling_branches_is_not_a_cycle():
    schema = {
        "allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}],
        "$defs": {
            "A": {"type": "object", "properties": {"x": {"type": "string"}}},
            "B": {"properties": {"y": {"$ref": "#/$defs/A"}}},
        },
    }

    assert gemini_schema(schema, param="p")["properties"]["y"] == {
        "type": "OBJECT",
        "properties": {"x": {"type": "STRING"}},
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"next": {"$ref": "#"}}},
        {"$ref": "#/$defs/Node", "$defs": {"Node": {
            "type": "object", "properties": {"children": {"type": "array",
                                                           "items": {"$ref": "#/$defs/Node"}}}}}},
    ],
    ids=["root", "definition"],
)  # fmt: skip
def test_a_recursive_schema_is_refused(schema):
    response_format = {"type": "json_schema", "json_schema": {"name": "tree", "schema": schema}}

    error = refusal({"response_format": response_format})

    assert error.param == "response_format.json_schema.schema"
    assert "refers to itself" in error.message


@pytest.mark.parametrize(
    ("schema", "place"),
    [
        ({"allOf": [{"properties": "oops"}]}, "allOf[0].properties"),
        ({"type": "object", "properties": {"a": "oops"}}, "properties.a"),
        ({"type": "object", "properties": ["a"]}, "properties"),
        ({"properties": {"a": {"type": "array", "items": 5}}}, "properties.a.items"),
        ({"items": [{"type": "string"}, "x"]}, "items[1]"),
        ({"allOf": {"type": "object"}}, "allOf"),
        ({"anyOf": "string"}, "anyOf"),
        ({"oneOf": [{"type": "string"}, 3]}, "oneOf[1]"),
        ({"allOf": [{"required": {"a": 1}}]}, "allOf[0].required"),
        ({"properties": {"a": {}}, "required": "a"}, "required"),
        ({"properties": {"a": {}}, "required": [["a"]]}, "required"),
        ({"enum": "red"}, "enum"),
        ({"type": {"name": "string"}}, "type"),
        ({"type": ["string", 1]}, "type"),
        ({"type": "string", "format": ["date-time"]}, "format"),
        ({"nullable": "yes"}, "nullable"),
        ({"description": {"text": "x"}}, "description"),
        ({"type": "array", "minItems": "1"}, "minItems"),
        ({"$ref": None}, "$ref"),
        ({"$defs": ["A"]}, "$defs"),
        ({"$ref": "#/$defs/A", "$defs": {"A": 7}}, "$defs.A"),
        ({"$ref": "#/$defs/A", "$defs": {"A": {"properties": 1}}}, "properties"),
        ({"properties": {"a": {"properties": {"b": {"anyOf": [{"items": {"enum": 1}}]}}}}},
         "properties.a.properties.b.anyOf[0].items.enum"),
    ],
    ids=["allOf-properties", "property", "properties-list", "items", "tuple-item",
         "allOf-object", "anyOf-string", "oneOf-member", "allOf-required", "required-string",
         "required-member", "enum", "type-object", "type-member", "format", "nullable",
         "description", "minItems", "ref-null", "defs-list", "definition", "referenced",
         "deep"],
)  # fmt: skip
@pytest.mark.parametrize("where", ["response_format", "tools"])
def test_a_malformed_schema_is_a_400_naming_the_parameter_and_the_place(schema, place, where):
    body: dict[str, Any]
    if where == "tools":
        function = {"name": "f", "parameters": {"type": "object", **schema}}
        body, param = {"tools": [{"type": "function", "function": function}]}, "tools[0]"
        param += ".function.parameters"
    else:
        json_schema = {"name": "r", "schema": schema}
        body = {"response_format": {"type": "json_schema", "json_schema": json_schema}}
        param = "response_format.json_schema.schema"

    error = refusal(body)

    assert (error.status, error.type, error.code) == (
        400,
        "invalid_request_error",
        ErrorCode.INVALID_PARAMETER,
    )
    assert error.param == param
    assert f"at {place}," in error.message


def test_boolean_and_tuple_sub_schemas_are_loosened_not_refused():
    schema = {
        "type": "object",
        "properties": {"any": True, "none": False, "pair": {"type": "array", "items": [True, {}]}},
    }

    assert gemini_schema(schema, param="p") == {
        "type": "OBJECT",
        "properties": {"any": {}, "none": {}, "pair": {"type": "ARRAY"}},
    }  # fmt: skip


def _chain(length: int, keyword: str) -> dict:
    """A schema whose definitions refer each to the next, ``length`` deep."""
    defs: dict[str, Any] = {
        f"D{i}": {keyword: {"$ref": f"#/$defs/D{i + 1}"}} for i in range(length)
    }
    if keyword == "allOf":
        defs = {f"D{i}": {"allOf": [{"$ref": f"#/$defs/D{i + 1}"}]} for i in range(length)}
    return {"$ref": "#/$defs/D0", "$defs": {**defs, f"D{length}": {"type": "string"}}}


@pytest.mark.parametrize("keyword", ["items", "allOf"])
def test_a_schema_nested_too_deep_through_references_is_refused(keyword):
    assert gemini_schema(_chain(50, keyword), param="p")  # deep, but within the bound
    response_format: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "r"}}
    response_format["json_schema"]["schema"] = _chain(5000, keyword)

    error = refusal({"response_format": response_format})

    assert error.param == "response_format.json_schema.schema"
    assert "nested more than 100 levels" in error.message


def test_a_schema_that_explodes_once_references_are_inlined_is_refused():
    # Each definition uses the next twice: 2**40 parts inlined, from 40 definitions.
    defs = {
        f"D{i}": {"properties": {"a": {"$ref": f"#/$defs/D{i + 1}"},
                                 "b": {"$ref": f"#/$defs/D{i + 1}"}}}
        for i in range(40)
    }  # fmt: skip
    schema = {"$ref": "#/$defs/D0", "$defs": {**defs, "D40": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    error = refusal({"response_format": response_format})

    assert "more than 10000 parts" in error.message


SCHEMA_WORDS = ["type", "properties", "items", "allOf", "anyOf", "oneOf", "required", "enum",
                "const", "$ref", "$defs", "definitions", "nullable", "format", "description",
                "minItems", "maximum", "additionalProperties"]  # fmt: skip
schema_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.sampled_from(["object", "array", "string", "null", "#", "#/$defs/A", "#/definitions/B"]),
)
# JSON-ish schemas: objects keyed mostly by the keywords the conversion reads, any values.
arbitrary_schemas = st.recursive(
    schema_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from([*SCHEMA_WORDS, "A", "B", "a"]), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schema=arbitrary_schemas, where=st.sampled_from(["response_format", "tools"]))
def test_any_schema_is_translated_or_refused_with_a_400_never_a_crash(schema, where):
    body: dict[str, Any]
    if where == "tools":
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        body = {"model": MODEL, "messages": HELLO, "tools": [tool]}
    else:
        json_schema = {"name": "r", "schema": schema}
        body = {"model": MODEL, "messages": HELLO,
                "response_format": {"type": "json_schema", "json_schema": json_schema}}  # fmt: skip
    try:
        provider.check_request(body)
    except AqtaError as error:
        assert error.status == 400
        assert error.param is not None and error.param.startswith(where)
    else:
        orjson.dumps(gemini_request_body(body))  # and what is sent is JSON


def test_tool_parameters_are_converted_without_property_ordering():
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": ["string", "null"], "default": None}},
                "$defs": {},
            },
        },
    }

    declaration = sent({"messages": HELLO, "tools": [tool]})["tools"][0]["functionDeclarations"][0]

    assert declaration["parameters"] == {
        "type": "OBJECT",
        "properties": {"id": {"type": "STRING", "nullable": True}},
    }


# --- JSON answers ----------------------------------------------------------------------------


def test_a_text_answer_becomes_a_chat_completion():
    completion, usage = provider.parse_response(fixture("text_response.json"), MODEL)

    assert completion == {
        "id": "chatcmpl-b0MraIMFoqnf-Q-D66G4BQ",
        "object": "chat.completion",
        "created": NOW,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert usage == Usage(prompt_tokens=10, completion_tokens=20)


def test_a_function_call_answer_becomes_tool_calls_with_string_arguments():
    completion, usage = provider.parse_response(fixture("function_call_response.json"), MODEL)

    choice = completion["choices"][0]
    (call,) = choice["message"].pop("tool_calls")
    assert CALL_ID.fullmatch(call.pop("id"))
    assert call == {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": None},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert usage == Usage(prompt_tokens=41, completion_tokens=6)


def test_each_function_call_gets_its_own_id_and_a_signature_rides_along():
    data = loaded("function_call_response.json")
    parts = data["candidates"][0]["content"]["parts"]
    parts.append({"functionCall": {"name": "get_time"}, "thoughtSignature": "CiQBsig/+=="})

    completion, _ = provider.parse_response(orjson.dumps(data), MODEL)

    first, second = completion["choices"][0]["message"]["tool_calls"]
    assert first["id"] != second["id"].split("__")[0]
    assert re.fullmatch(r"call_[0-9a-f]{24}__thought__CiQBsig/\+==", second["id"])
    assert second["function"] == {"name": "get_time", "arguments": "{}"}


def test_a_signature_round_trips_from_answer_to_next_request():
    data = loaded("function_call_response.json")
    data["candidates"][0]["content"]["parts"][0]["thoughtSignature"] = "Q2lRQg=="
    completion, _ = provider.parse_response(orjson.dumps(data), MODEL)
    message = completion["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]

    messages = [*HELLO, message, {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]
    contents = sent({"messages": messages})["contents"]

    assert contents[1]["parts"][0]["thoughtSignature"] == "Q2lRQg=="


def test_several_candidates_become_several_choices():
    completion, usage = provider.parse_response(fixture("two_candidates_response.json"), MODEL)

    assert [
        (c["index"], c["message"]["content"], c["finish_reason"]) for c in completion["choices"]
    ] == [(0, "Heads.", "stop"), (1, "Tails, and", "length")]
    assert usage == Usage(prompt_tokens=7, completion_tokens=6)


@pytest.mark.parametrize(
    ("reason", "finish_reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("OTHER", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons_are_mapped(reason, finish_reason):
    data = loaded("text_response.json")
    data["candidates"][0]["finishReason"] = reason

    completion, _ = provider.parse_response(orjson.dumps(data), MODEL)

    assert completion["choices"][0]["finish_reason"] == finish_reason


def test_a_candidate_stopped_for_safety_without_content_has_null_content():
    data = loaded("text_response.json")
    data["candidates"][0] = {"finishReason": "SAFETY", "index": 0}

    choice = provider.parse_response(orjson.dumps(data), MODEL)[0]["choices"][0]

    assert (choice["message"]["content"], choice["finish_reason"]) == (None, "content_filter")


def test_a_blocked_prompt_becomes_one_filtered_choice_with_null_content():
    completion, usage = provider.parse_response(fixture("safety_blocked_response.json"), MODEL)

    assert completion["id"] == "chatcmpl-pD5raKSBJ9O0-Q-Wx5ygBg"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert usage == Usage(prompt_tokens=8, completion_tokens=0)


def test_usage_counts_thoughts_as_completion_and_cached_tokens_inside_the_prompt():
    completion, usage = provider.parse_response(fixture("thinking_cached_response.json"), MODEL)

    assert completion["choices"][0]["message"]["content"] == "The report says revenue grew 12%."
    assert completion["usage"] == {
        "prompt_tokens": 140210,
        "completion_tokens": 309,
        "total_tokens": 140519,
        "prompt_tokens_details": {"cached_tokens": 131072},
        "completion_tokens_details": {"reasoning_tokens": 298},
    }
    assert usage == Usage(prompt_tokens=140210, completion_tokens=309, cached_tokens=131072)


def test_tool_use_prompt_tokens_count_as_prompt():
    data = loaded("text_response.json")
    data["usageMetadata"] = {
        "promptTokenCount": 10,
        "toolUsePromptTokenCount": 90,
        "candidatesTokenCount": 20,
        "totalTokenCount": 120,
    }

    assert provider.parse_response(orjson.dumps(data), MODEL)[1] == Usage(100, 20)


def test_an_answer_without_response_id_or_usage_gets_an_id_and_zero_usage():
    data = loaded("text_response.json")
    del data["responseId"], data["usageMetadata"]

    completion, usage = provider.parse_response(orjson.dumps(data), MODEL)

    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", completion["id"])
    assert usage == Usage()


def test_an_answer_wrapped_in_an_array_is_unwrapped():
    raw = b"[" + fixture("text_response.json") + b"]"

    assert provider.parse_response(raw, MODEL) == provider.parse_response(
        fixture("text_response.json"), MODEL
    )


@pytest.mark.parametrize(
    "raw",
    [b'["not", "an", "object"]', b"{}", b'{"candidates": []}', fixture("error_500_internal.json")],
    ids=["array", "empty", "no-candidates", "error"],
)
def test_an_unusable_answer_is_rejected(raw):
    with pytest.raises(ValueError):
        provider.parse_response(raw, MODEL)


# --- streams ---------------------------------------------------------------------------------

TEXT_SSE = fixture("stream_text.sse").replace(b"\r\n", b"\n")  # however git stored it
TEXT_SSE_CRLF = TEXT_SSE.replace(b"\n", b"\r\n")
CALL_SSE = fixture("stream_function_call.sse").replace(b"\r\n", b"\n")


def translate(
    pieces: list[bytes], include_usage: bool = False, finish: bool = True, **state
) -> tuple[list[dict], StreamState, list[bytes]]:
    """Feed ``pieces`` as they would arrive from the socket, then end the body."""
    stream_state = StreamState(include_usage=include_usage, model=MODEL, **state)
    events: list[bytes] = []
    for piece in pieces:
        events += provider.translate_stream(piece, stream_state)
    if finish:
        events += provider.finish_stream(stream_state)
    events = client_events(events, stream_state)
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    return [orjson.loads(e[len(b"data: ") :]) for e in events], stream_state, events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return split_at(data, rng.sample(range(1, len(data)), rng.randint(1, 40)))


def envelope(chunk_id: str = "chatcmpl-id0") -> dict:
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": NOW, "model": MODEL}


def choice(delta: dict, finish_reason: str | None = None, index: int = 0) -> dict:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


TEXT_CHUNKS = [
    {**envelope(), "choices": [choice({"role": "assistant", "content": "Certainly"})]},
    {**envelope(), "choices": [choice({"content": "! I'll create a simple page"})]},
    {**envelope(), "choices": [choice({}, "stop")]},
]
TEXT_USAGE = {
    "prompt_tokens": 399,
    "completion_tokens": 191,
    "total_tokens": 590,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def test_a_recorded_text_stream_becomes_openai_chunks(fixed_ids):
    chunks, state, _ = translate([TEXT_SSE])

    assert chunks == TEXT_CHUNKS
    assert state.usage == Usage(prompt_tokens=399, completion_tokens=191)
    assert state.done and state.error is None
    assert state.first == TEXT_CHUNKS[0]
    assert state.chunks == 4  # with the usage chunk, forwarded only when asked for
    assert state.finish_reason == "stop"


def test_the_stream_is_only_done_once_the_body_ends():
    _, state, _ = translate([TEXT_SSE], finish=False)

    assert not state.done  # a trailing chunk may still carry the final usage
    [usage_chunk] = provider.finish_stream(state)  # the body ended: the usage chunk goes out
    assert orjson.loads(usage_chunk[len(b"data: ") :])["choices"] == []
    assert state.done


def test_with_include_usage_chunks_carry_null_usage_and_the_end_adds_the_usage_chunk(fixed_ids):
    chunks, state, _ = translate([TEXT_SSE], include_usage=True)

    assert chunks == [
        *({**c, "usage": None} for c in TEXT_CHUNKS),
        {**envelope(), "choices": [], "usage": TEXT_USAGE},
    ]
    assert state.done and state.chunks == 4


def test_crlf_separators_give_the_same_chunks(monkeypatch):
    monkeypatch.setattr(gemini_response, "_random_id", lambda: "same")

    assert translate([TEXT_SSE_CRLF], True)[0] == translate([TEXT_SSE], True)[0]


def test_a_function_call_arrives_as_complete_tool_call_deltas():
    chunks, state, _ = translate([CALL_SSE], include_usage=True)

    assert [c["id"] for c in chunks] == ["chatcmpl-Qm5raN2aB8ek-Q-6n5iQCw"] * 3
    assert chunks[0]["choices"] == [choice({"role": "assistant", "content": "Let me check."})]
    (finish,) = chunks[1]["choices"]
    calls = finish["delta"]["tool_calls"]
    assert all(CALL_ID.fullmatch(call.pop("id")) for call in calls)
    assert calls == [
        {"index": 0, "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"index": 1, "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}},
    ]  # fmt: skip
    assert finish["finish_reason"] == "tool_calls"
    assert chunks[2]["usage"]["completion_tokens"] == 14
    assert state.done and state.finish_reason == "tool_calls"


def test_calls_in_separate_chunks_keep_counting_their_index():
    first, second = (
        b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{}}}]}}]}'
        b"\n\n",
        b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"b","args":{}},'
        b'"thoughtSignature":"c2ln"}]},"finishReason":"STOP"}]}\n\n',
    )

    chunks, state, _ = translate([first, second])

    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "a"), (1, "b")]
    assert calls[1]["id"].endswith("__thought__c2ln")
    assert state.done and chunks[1]["choices"][0]["finish_reason"] == "tool_calls"


def _outcome(pieces: list[bytes], include_usage: bool) -> tuple:
    chunks, state, events = translate(pieces, include_usage)
    return events, chunks, state.usage, state.done, state.chunks, state.first


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    "stream", [TEXT_SSE, TEXT_SSE_CRLF, CALL_SSE], ids=["text", "text-crlf", "tool-calls"]
)
def test_a_stream_split_at_any_byte_gives_the_same_chunks(monkeypatch, stream, include_usage):
    monkeypatch.setattr(gemini_response, "_random_id", lambda: "same")
    whole = _outcome([stream], include_usage)

    for cut in range(1, len(stream)):
        assert _outcome(split_at(stream, [cut]), include_usage) == whole, cut


@pytest.mark.parametrize(
    "stream", [TEXT_SSE, TEXT_SSE_CRLF, CALL_SSE], ids=["text", "text-crlf", "tool-calls"]
)
def test_a_stream_split_at_random_gives_the_same_chunks(monkeypatch, stream):
    monkeypatch.setattr(gemini_response, "_random_id", lambda: "same")
    whole = _outcome([stream], True)

    for seed in range(200):
        assert _outcome(random_splits(stream, seed), True) == whole, seed


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_chunks(monkeypatch):
    monkeypatch.setattr(gemini_response, "_random_id", lambda: "same")
    pieces = [TEXT_SSE_CRLF[i : i + 1] for i in range(len(TEXT_SSE_CRLF))]

    assert _outcome(pieces, True) == _outcome([TEXT_SSE_CRLF], True)


def test_a_stream_cut_before_its_finish_reason_is_not_done():
    cut = TEXT_SSE[: TEXT_SSE.rindex(b"data:")]

    chunks, state, _ = translate([cut], include_usage=True)

    assert len(chunks) == 2  # the text so far, but no usage chunk
    assert not state.done
    # Gemini's running prompt count, and a token per forwarded chunk (none were reported)
    assert state.usage == Usage(prompt_tokens=399, completion_tokens=2)


def test_a_last_event_without_its_blank_line_still_counts():
    chunks, state, _ = translate([TEXT_SSE.rstrip(b"\n")])

    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert state.done


def test_a_last_event_cut_mid_json_is_a_cut_stream():
    chunks, state, _ = translate([TEXT_SSE[:-40]], include_usage=True)

    assert len(chunks) == 2
    assert not state.done


def test_an_error_mid_stream_sets_an_openai_error_event_and_stops():
    error = b"data: " + orjson.dumps(loaded("error_503_unavailable.json")) + b"\n\n"
    events = TEXT_SSE.split(b"\n\n")
    stream = b"\n\n".join(events[:1]) + b"\n\n" + error + b"\n\n".join(events[1:])

    chunks, state, _ = translate([stream], include_usage=True)

    assert len(chunks) == 1
    assert not state.done
    assert state.error is not None
    assert orjson.loads(state.error[len(b"data: ") :]) == {
        "error": {
            "message": "Upstream provider error: google reported UNAVAILABLE: "
            "The model is overloaded. Please try again later.",
            "type": "api_error",
            "code": "provider_error",
        }
    }
    assert state.error.endswith(b"\n\n")


def test_an_error_wrapped_in_an_array_is_caught_as_the_first_event():
    error = b"data: [" + orjson.dumps(loaded("error_429_resource_exhausted.json")) + b"]\r\n\r\n"

    chunks, state, _ = translate([error])

    assert chunks == []
    assert state.error is not None
    assert b'"rate_limit_error"' in state.error and b"RESOURCE_EXHAUSTED" in state.error
    assert not state.done


def test_a_prompt_blocked_at_the_start_of_a_stream_ends_it_filtered():
    blocked = b"data: " + orjson.dumps(loaded("safety_blocked_response.json")) + b"\n\n"

    chunks, state, _ = translate([blocked], include_usage=True)

    assert [c["choices"] for c in chunks] == [
        [choice({"role": "assistant"}, "content_filter")],
        [],
    ]
    assert state.done and state.finish_reason == "content_filter"
    assert chunks[1]["usage"]["prompt_tokens"] == 8


def test_a_stray_chunk_after_the_finish_is_tolerated():
    stray = (
        b'data: {"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}],'
        b'"usageMetadata": {"promptTokenCount": 399,"candidatesTokenCount": 192,'
        b'"totalTokenCount": 591}}\n\n'
    )

    chunks, state, _ = translate([TEXT_SSE + stray])

    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert state.done and state.finish_reason == "stop"
    assert state.usage == Usage(prompt_tokens=399, completion_tokens=192)


def test_comments_event_names_and_empty_events_are_skipped(fixed_ids):
    noisy = b": keep-alive\n\nevent: message\n" + TEXT_SSE.replace(b"\n\n", b"\n\n\n\n", 1)

    assert translate([noisy])[0] == TEXT_CHUNKS


def test_several_candidates_stream_as_indexed_choices_and_finish_together():
    first = (
        b'data: {"candidates": [{"content": {"parts": [{"text": "A"}]}, "index": 0},'
        b'{"content": {"parts": [{"text": "B"}]}, "index": 1, "finishReason": "STOP"}]}\n\n'
    )
    last = b'data: {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "MAX_TOKENS"}]}\n\n'  # noqa: E501

    chunks, cut, _ = translate([first])
    assert [c["delta"] for c in chunks[0]["choices"]] == [
        {"role": "assistant", "content": "A"},
        {"role": "assistant", "content": "B"},
    ]
    assert not cut.done  # candidate 0 never finished

    chunks, state, _ = translate([first, last])
    assert chunks[1]["choices"] == [choice({"content": "!"}, "length")]
    assert state.done


def test_thought_parts_are_not_streamed_and_kept_text_is_collected():
    thinking = (
        b'data: {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true},'
        b'{"text": "Hi"}]}}]}\n\n'
        b'data: {"candidates": [{"content": {"parts": [{"text": " there"}]}, "finishReason": '
        b'"STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, '
        b'"thoughtsTokenCount": 5, "totalTokenCount": 10}}\n\n'
    )

    chunks, state, events = translate([thinking], keep_text=True)

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert _delta_text(events) == ["Hi", " there"]  # what content logging keeps
    assert state.usage == Usage(prompt_tokens=3, completion_tokens=7)


def test_the_model_version_names_the_chunks_when_the_state_has_no_model():
    stream_state = StreamState(include_usage=False)

    (event,) = provider.translate_stream(TEXT_SSE.split(b"\n\n")[0] + b"\n\n", stream_state)

    assert orjson.loads(event[len(b"data: ") :])["model"] == "gemini-1.5-pro-002"


# --- error bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "message"),
    [
        (400, "error_400_invalid_argument.json",
         "INVALID_ARGUMENT: API key not valid. Please pass a valid API key."),
        (404, "error_404_not_found.json",
         "NOT_FOUND: models/gemini-2.0-pro is not found for API version v1beta, or is not "
         "supported for generateContent. Call ListModels to see the list of available models "
         "and their supported methods."),
        (429, "error_429_resource_exhausted.json",
         "RESOURCE_EXHAUSTED: You exceeded your current quota, please check your plan and "
         "billing details. (retry after 30s)"),
        (500, "error_500_internal.json",
         "INTERNAL: An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting"),
        (503, "error_503_unavailable.json",
         "UNAVAILABLE: The model is overloaded. Please try again later."),
    ],
)  # fmt: skip
def test_error_bodies_are_summarised_with_their_status(status, name, message):
    assert provider.error_message(status, fixture(name)) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" + fixture("error_404_not_found.json") + b"]", "NOT_FOUND: models/gemini-2.0-pro"),
        (b"<html>\n<title>Error 502 (Server Error)!!1</title>\n</html>",
         "<html> <title>Error 502 (Server Error)!!1</title> </html>"),
        (b"", "HTTP 502"),
        (b'{"error": "quota"}', "quota"),
        (b'{"error": {"code": 502}}', "HTTP 502"),
    ],
    ids=["array", "html", "empty", "string-error", "no-message"],
)  # fmt: skip
def test_other_error_bodies_still_give_a_short_summary(raw, message):
    summary = provider.error_message(502, raw)

    assert summary.startswith(message)
    assert len(summary) <= 300


def test_a_long_error_is_cut_short():
    raw = orjson.dumps(
        {"error": {"code": 400, "message": "x" * 5000, "status": "INVALID_ARGUMENT"}}
    )

    assert len(provider.error_message(400, raw)) == 300
