"""The Anthropic adapter: OpenAI requests → Messages API, and its answers, streams and errors back.

Upstream payloads are the recorded shapes of docs/providers.md §2 (``fixtures/anthropic``);
the OpenAI side is checked against golden objects and against the OpenAI SDK's own types.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aqta.errors import AqtaError
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment, Endpoint
from gateway.dataplane.providers.anthropic import AnthropicProvider
from gateway.dataplane.providers.base import StreamState
from gateway.dataplane.steps.answer import delta_text as _delta_text
from gateway.tests.streams import client_events

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
NOW = 1753357673
provider = AnthropicProvider()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


TEXT_RESPONSE = fixture("text_response.json")
TOOL_RESPONSE = fixture("tool_use_response.json")
TEXT_STREAM = fixture("text_stream.txt")
TOOL_STREAM = fixture("tool_stream.txt")
ERROR_STREAM = fixture("error_stream.txt")


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


ENDPOINT = Endpoint(
    name="env-anthropic",
    provider="anthropic",
    base_url="https://api.anthropic.com/",
    api_key="sk-ant-up",
)
DEPLOYMENT = Deployment(
    name="anthropic",
    provider="anthropic",
    endpoint=ENDPOINT,
    upstream_model_id="claude-3-5-sonnet-20241022",
    max_output_tokens=8192,
)
WEATHER_TOOL: dict[str, Any] = {
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
WEATHER_SPEC = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}
REPLY_SCHEMA = {
    "type": "object",
    "properties": {"key": {"type": "string"}},
    "required": ["key"],
    "additionalProperties": False,
}


def body(**fields) -> dict:
    return {"model": "claude-3-5-sonnet", "messages": [{"role": "user", "content": "Hi"}], **fields}


def sent(request_body: dict, deployment: Deployment = DEPLOYMENT, stream: bool = False) -> dict:
    payload: dict = orjson.loads(provider.build_request(deployment, request_body, stream).body)
    return payload


def refusal(request_body: dict) -> AqtaError:
    with pytest.raises(AqtaError) as caught:
        provider.check_request(request_body)
    assert caught.value.status == 400
    return caught.value


# --- requests -------------------------------------------------------------------------------------


def test_a_request_goes_to_v1_messages_with_the_key_and_the_api_version():
    request = provider.build_request(DEPLOYMENT, body(), stream=False)

    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-up",
    }
    assert orjson.loads(request.body) == {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_a_base_url_that_already_ends_in_v1_is_not_doubled():
    endpoint = Endpoint("proxy", "anthropic", "http://proxy:8080/v1", api_key="")
    deployment = Deployment("proxy", "anthropic", endpoint, "claude-3-haiku-20240307")

    request = provider.build_request(deployment, body(), stream=False)

    assert request.url == "http://proxy:8080/v1/messages"
    assert "x-api-key" not in request.headers


def test_a_streamed_request_asks_for_a_stream():
    assert sent(body(stream=True), stream=True)["stream"] is True
    assert "stream" not in sent(body())


def test_system_and_developer_messages_anywhere_become_the_system_blocks_in_order():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "user", "content": "Again"},
    ]

    payload = sent(body(messages=messages))

    assert payload["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert [turn["role"] for turn in payload["messages"]] == ["user", "assistant", "user"]


def test_cache_control_on_text_parts_is_kept():
    cached = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}

    payload = sent(body(messages=[{"role": "system", "content": [cached]}, *body()["messages"]]))

    assert payload["system"] == [cached]


@pytest.mark.parametrize(
    ("fields", "deployment_max", "expected"),
    [
        ({"max_completion_tokens": 256, "max_tokens": 100}, 8192, 256),
        ({"max_tokens": 100}, 8192, 100),
        ({}, 8192, 8192),
        ({}, None, 4096),
    ],
    ids=["max_completion_tokens", "max_tokens", "deployment", "default"],
)
def test_max_tokens_comes_from_the_request_then_the_deployment_then_4096(
    fields, deployment_max, expected
):
    deployment = Deployment(
        "anthropic", "anthropic", ENDPOINT, "claude-3-5-sonnet-20241022", deployment_max
    )

    assert sent(body(**fields), deployment)["max_tokens"] == expected


@pytest.mark.parametrize(
    ("stop", "expected"), [("\n\nHuman:", ["\n\nHuman:"]), (["END", "STOP"], ["END", "STOP"])]
)
def test_stop_becomes_stop_sequences(stop, expected):
    assert sent(body(stop=stop))["stop_sequences"] == expected


def test_no_stop_sends_no_stop_sequences():
    assert "stop_sequences" not in sent(body(stop=None))
    assert "stop_sequences" not in sent(body(stop=[]))


def test_sampling_settings_in_anthropics_range_pass_through():
    payload = sent(body(temperature=0.2, top_p=0.9))

    assert (payload["temperature"], payload["top_p"]) == (0.2, 0.9)


def test_images_become_base64_or_url_image_blocks():
    content = [
        {"type": "text", "text": "What is in these images?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    payload = sent(body(messages=[{"role": "user", "content": content}]))

    assert payload["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these images?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/bmp;base64,Qk0=", "data:image/png,rawbytes", "ftp://example.com/cat.png"],
    ids=["bmp", "not-base64", "ftp"],
)
def test_images_anthropic_cannot_take_are_refused_naming_the_part(url):
    part = {"type": "image_url", "image_url": {"url": url}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "See"}, part]}]

    error = refusal(body(messages=messages))

    assert error.param == "messages[0].content[1].image_url.url"


def test_audio_input_is_refused_naming_the_part():
    part = {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}

    error = refusal(body(messages=[{"role": "user", "content": [part]}]))

    assert error.param == "messages[0].content[0].type"


CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "toolu_01B",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_01A", "content": '{"temp_c":21}'},
    {
        "role": "tool",
        "tool_call_id": "toolu_01B",
        "content": [{"type": "text", "text": '{"temp_c":25}'}],
    },
    {"role": "user", "content": "And in Fahrenheit?"},
]


def test_a_tool_conversation_becomes_tool_use_and_merged_tool_result_turns():
    payload = sent(body(messages=CONVERSATION, tools=[WEATHER_TOOL]))

    assert payload["system"] == [{"type": "text", "text": "You are terse."}]
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": '{"temp_c":21}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": '{"temp_c":25}'}],
                },
                {"type": "text", "text": "And in Fahrenheit?"},
            ],
        },
    ]
    assert payload["tools"] == [WEATHER_SPEC]
    assert payload["tool_choice"] == {"type": "auto"}


def test_tool_results_come_first_even_when_a_user_message_came_between_them():
    messages = [
        *CONVERSATION[1:3],
        CONVERSATION[3],
        {"role": "user", "content": "(one more result follows)"},
        CONVERSATION[4],
    ]

    turn = sent(body(messages=messages, tools=[WEATHER_TOOL]))["messages"][-1]

    assert [block["type"] for block in turn["content"]] == ["tool_result", "tool_result", "text"]
    assert [block.get("tool_use_id") for block in turn["content"][:2]] == ["toolu_01A", "toolu_01B"]


def test_consecutive_assistant_messages_become_one_turn():
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "Bye"},
    ]

    turns = sent(body(messages=messages))["messages"]

    assert turns[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Hello."},
            {"type": "text", "text": "How can I help?"},
        ],
    }


def test_a_call_without_arguments_has_an_empty_input_and_its_empty_result_no_content():
    messages = [
        {"role": "user", "content": "Time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "now", "arguments": ""}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
    ]

    turns = sent(body(messages=messages))["messages"]

    assert turns[1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}
    ]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1"}]


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]"], ids=["cut", "array"])
def test_tool_call_arguments_that_are_not_a_json_object_are_refused(arguments):
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": [call]}]

    error = refusal(body(messages=messages))

    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_a_final_assistant_prefill_loses_its_trailing_whitespace():
    messages = [{"role": "user", "content": "List"}, {"role": "assistant", "content": "1. \n"}]

    turns = sent(body(messages=messages))["messages"]

    assert turns[-1] == {"role": "assistant", "content": [{"type": "text", "text": "1."}]}


def test_a_request_with_only_system_messages_sends_them_as_the_user_turn():
    payload = sent(body(messages=[{"role": "system", "content": "Name a colour."}]))

    assert "system" not in payload
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}
    ]


def test_tools_without_parameters_get_an_empty_object_schema():
    tool = {"type": "function", "function": {"name": "now"}}

    assert sent(body(tools=[tool]))["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("none", {"type": "none"}),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
    ids=["none", "auto", "required", "function"],
)
def test_tool_choice_is_mapped(tool_choice, expected):
    assert sent(body(tools=[WEATHER_TOOL], tool_choice=tool_choice))["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use():
    payload = sent(body(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False))

    assert payload["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_without_tools_is_dropped_when_harmless_and_refused_when_not():
    assert "tool_choice" not in sent(body(tool_choice="auto"))
    assert "tool_choice" not in sent(body(tool_choice="none"))
    assert refusal(body(tool_choice="required")).param == "tool_choice"


def test_a_json_schema_response_format_becomes_a_forced_tool():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": REPLY_SCHEMA, "strict": True},
    }

    payload = sent(body(response_format=response_format))

    assert payload["tools"] == [
        {
            "name": "aqta_json_reply",
            "description": "Give your whole answer by calling this tool; its input is the answer.",
            "input_schema": REPLY_SCHEMA,
        }
    ]
    assert payload["tool_choice"] == {
        "type": "tool",
        "name": "aqta_json_reply",
        "disable_parallel_tool_use": True,
    }


def test_a_json_object_response_format_forces_a_tool_with_a_permissive_schema():
    payload = sent(body(response_format={"type": "json_object"}))

    assert payload["tools"][0]["name"] == "aqta_json_object"
    assert payload["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True}
    assert payload["tool_choice"]["name"] == "aqta_json_object"


def test_a_text_response_format_changes_nothing():
    assert sent(body(response_format={"type": "text"})) == sent(body())


def test_the_answer_tool_name_keeps_to_the_characters_anthropic_allows():
    response_format = {"type": "json_schema", "json_schema": {"name": "my reply.v2" + "x" * 80}}

    name = sent(body(response_format=response_format))["tools"][0]["name"]

    assert name == ("aqta_json_my_reply_v2" + "x" * 80)[:64]


def test_a_json_schema_that_is_not_an_object_is_refused():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "l", "schema": {"type": "array"}},
    }

    assert refusal(body(response_format=response_format)).param == (
        "response_format.json_schema.schema"
    )


SCHEMA_WORDS = ["type", "properties", "items", "allOf", "anyOf", "oneOf", "required", "enum",
                "$ref", "$defs", "additionalProperties"]  # fmt: skip
# JSON-ish schemas: objects keyed mostly by JSON Schema keywords, with any values at all.
arbitrary_schemas = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.text(max_size=4),
        st.sampled_from(["object", "array", "#", "#/$defs/A"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from([*SCHEMA_WORDS, "A", "a"]), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schema=arbitrary_schemas, where=st.sampled_from(["response_format", "tools"]))
def test_any_schema_is_passed_on_or_refused_with_a_400_never_a_crash(schema, where):
    """Anthropic validates schemas itself: the translation only insists on an object schema
    at the top and sends it as it came (``type: object`` added when left out)."""
    if where == "tools":
        request = body(
            tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}]
        )
    else:
        json_schema = {"name": "r", "schema": schema}
        request = body(response_format={"type": "json_schema", "json_schema": json_schema})
    try:
        provider.check_request(request)
    except AqtaError as error:
        assert error.status == 400
        assert error.param is not None and error.param.startswith(where)
        return
    sent_schema = sent(request)["tools"][0]["input_schema"]
    if isinstance(schema, dict) and schema:
        assert sent_schema == {"type": "object", **schema}


def test_a_json_answer_with_client_tools_lets_the_model_pick_a_tool_or_the_answer():
    payload = sent(body(tools=[WEATHER_TOOL], response_format={"type": "json_object"}))

    assert [tool["name"] for tool in payload["tools"]] == ["get_weather", "aqta_json_object"]
    assert payload["tool_choice"] == {"type": "any"}


def test_a_json_answer_with_tools_forbidden_sends_only_the_answer_tool():
    payload = sent(
        body(tools=[WEATHER_TOOL], tool_choice="none", response_format={"type": "json_object"})
    )

    assert [tool["name"] for tool in payload["tools"]] == ["aqta_json_object"]
    assert payload["tool_choice"]["type"] == "tool"


def test_a_required_tool_call_takes_precedence_over_the_json_answer():
    payload = sent(
        body(tools=[WEATHER_TOOL], tool_choice="required", response_format={"type": "json_object"})
    )

    assert payload["tools"] == [WEATHER_SPEC]
    assert payload["tool_choice"] == {"type": "any"}


def test_client_tools_may_not_use_the_reserved_answer_tool_prefix():
    tool = {"type": "function", "function": {"name": "aqta_json_x"}}

    assert refusal(body(tools=[tool])).param == "tools[0].function.name"


REFUSED = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"temperature": 1.5}, "temperature"),
    ({"stop": ["\n"]}, "stop"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ({"messages": [{"role": "function", "name": "f", "content": "1"}]}, "messages[0].role"),
]


@pytest.mark.parametrize(("fields", "param"), REFUSED, ids=[param for _, param in REFUSED])
def test_parameters_that_would_change_the_answer_are_refused_by_name(fields, param):
    assert refusal(body(**fields)).param == param


def test_harmless_unsupported_parameters_are_dropped():
    noisy = body(
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        n=1,
        logprobs=False,
        metadata={"team": "a"},
        store=True,
        service_tier="auto",
        reasoning_effort="low",
        stream_options={"include_usage": True},
    )

    provider.check_request(noisy)
    assert sent(noisy) == sent(body())


@pytest.mark.parametrize(
    ("user", "metadata"),
    [("user-4c1f", {"user_id": "user-4c1f"}), ("ann@example.com", None), ("x" * 257, None)],
    ids=["opaque", "email", "too-long"],
)
def test_user_becomes_metadata_user_id_unless_it_is_personal_or_too_long(user, metadata):
    assert sent(body(user=user)).get("metadata") == metadata


def test_the_clients_request_is_left_as_it_was():
    request_body = body(messages=CONVERSATION, tools=[WEATHER_TOOL], stop="END")
    before = orjson.dumps(request_body)

    provider.check_request(request_body)
    provider.build_request(DEPLOYMENT, request_body, stream=True)

    assert orjson.dumps(request_body) == before


# --- JSON answers ---------------------------------------------------------------------------------


def parse(raw: bytes | dict, model: str = "claude-3-5-sonnet") -> tuple[dict, Usage]:
    raw = orjson.dumps(raw) if isinstance(raw, dict) else raw
    completion, usage = provider.parse_response(raw, model)
    ChatCompletion.model_validate(completion)  # the OpenAI SDK can read it
    return completion, usage


def test_a_text_answer_becomes_a_chat_completion():
    completion, usage = parse(TEXT_RESPONSE)

    assert completion == {
        "id": "chatcmpl-msg_01Pvyf26bY17RcjmWfJsXGBn",
        "object": "chat.completion",
        "created": NOW,
        "model": "claude-3-5-sonnet",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "This is a famous philosophical question, ...",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 18,
            "completion_tokens": 254,
            "total_tokens": 272,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    assert usage == Usage(prompt_tokens=18, completion_tokens=254)


def test_a_tool_use_answer_becomes_tool_calls_with_json_string_arguments():
    completion, usage = parse(TOOL_RESPONSE)

    assert completion["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "I'll check the weather in Paris.",
            "tool_calls": [
                {
                    "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
            "refusal": None,
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert usage == Usage(prompt_tokens=379, completion_tokens=65)


def test_the_answer_tool_input_becomes_the_content_and_the_answer_is_finished():
    answer = orjson.loads(TOOL_RESPONSE)
    answer["content"] = [
        {"type": "tool_use", "id": "toolu_01", "name": "aqta_json_reply", "input": {"key": "v"}}
    ]

    completion, _ = parse(answer)

    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": '{"key":"v"}',
        "refusal": None,
    }
    assert completion["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason, finish_reason):
    answer = {**orjson.loads(TEXT_RESPONSE), "stop_reason": stop_reason}

    assert parse(answer)[0]["choices"][0]["finish_reason"] == finish_reason


def test_cache_reads_and_writes_are_part_of_the_prompt_tokens():
    answer = orjson.loads(TEXT_RESPONSE)
    answer["usage"].update(
        input_tokens=18, cache_read_input_tokens=1920, cache_creation_input_tokens=300
    )

    completion, usage = parse(answer)

    assert usage == Usage(
        prompt_tokens=2238, completion_tokens=254, cached_tokens=1920, cache_write_tokens=300
    )
    assert completion["usage"] == {
        "prompt_tokens": 2238,
        "completion_tokens": 254,
        "total_tokens": 2492,
        "prompt_tokens_details": {"cached_tokens": 1920},
    }


def test_null_cache_counts_count_as_zero():
    answer = orjson.loads(TEXT_RESPONSE)
    answer["usage"].update(cache_read_input_tokens=None, cache_creation_input_tokens=None)

    assert parse(answer)[1] == Usage(prompt_tokens=18, completion_tokens=254)


def test_thinking_blocks_are_left_out_of_the_answer():
    answer = orjson.loads(TEXT_RESPONSE)
    answer["content"].insert(0, {"type": "thinking", "thinking": "Hmm.", "signature": "sig"})

    assert parse(answer)[0]["choices"][0]["message"]["content"] == (
        "This is a famous philosophical question, ..."
    )


@pytest.mark.parametrize("raw", [b"[]", fixture("error_529.json")], ids=["array", "error"])
def test_a_body_that_is_not_a_message_is_unreadable(raw):
    with pytest.raises(ValueError):
        provider.parse_response(raw, "claude-3-5-sonnet")


# --- streams --------------------------------------------------------------------------------------


def translate(
    pieces: list[bytes], include_usage: bool = False, **fields
) -> tuple[list[bytes], StreamState]:
    """Feed ``pieces`` as they would arrive from the socket; collect what the client gets
    (a complete stream ends with the usage chunk, which goes out only when asked for)."""
    state = StreamState(include_usage=include_usage, **fields)
    forwarded: list[bytes] = []
    for piece in pieces:
        forwarded += provider.translate_stream(piece, state)
    forwarded += provider.finish_stream(state)
    return client_events(forwarded, state), state


def payloads(forwarded: list[bytes]) -> list[dict]:
    chunks = []
    for event in forwarded:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        chunks.append(orjson.loads(event[len(b"data: ") :]))
    return chunks


def envelope(msg_id: str, model: str = "claude-3-opus-latest") -> dict:
    return {
        "id": f"chatcmpl-{msg_id}",
        "object": "chat.completion.chunk",
        "created": NOW,
        "model": model,
    }


TEXT_ENVELOPE = envelope("msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK")
TOOL_ENVELOPE = envelope("msg_01Aq9w938a90dw8q", "claude-3-5-sonnet-20241022")


def chunk(base: dict, delta: dict, finish_reason: str | None = None) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {**base, "choices": [choice]}


TEXT_CHUNKS = [
    chunk(TEXT_ENVELOPE, {"role": "assistant", "content": ""}),
    chunk(TEXT_ENVELOPE, {"content": "Hello"}),
    chunk(TEXT_ENVELOPE, {"content": " there"}),
    chunk(TEXT_ENVELOPE, {}, "stop"),
]
TEXT_USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 6,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 0},
}


def tool_call_delta(fragment: str, first: bool = False) -> dict:
    if first:
        call = {
            "index": 0,
            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "type": "function",
            "function": {"name": "get_weather", "arguments": fragment},
        }
    else:
        call = {"index": 0, "function": {"arguments": fragment}}
    return {"tool_calls": [call]}


TOOL_CHUNKS = [
    chunk(TOOL_ENVELOPE, {"role": "assistant", "content": ""}),
    chunk(TOOL_ENVELOPE, {"content": "I'll check the weather"}),
    chunk(TOOL_ENVELOPE, {"content": " in Paris."}),
    chunk(TOOL_ENVELOPE, tool_call_delta("", first=True)),
    chunk(TOOL_ENVELOPE, tool_call_delta('{"locati')),
    chunk(TOOL_ENVELOPE, tool_call_delta('on": "Paris"}')),
    chunk(TOOL_ENVELOPE, {}, "tool_calls"),
]


def test_a_text_stream_becomes_openai_chunks():
    forwarded, state = translate([TEXT_STREAM])

    assert payloads(forwarded) == TEXT_CHUNKS
    assert state.done and state.error is None
    assert state.usage == Usage(prompt_tokens=11, completion_tokens=6)
    assert state.first == TEXT_CHUNKS[0]
    assert state.chunks == 5  # with the usage chunk, forwarded only when asked for
    assert state.finish_reason == "stop"


def test_with_include_usage_every_chunk_has_null_usage_and_a_usage_chunk_comes_last():
    forwarded, state = translate([TEXT_STREAM], include_usage=True)

    assert payloads(forwarded) == [
        *({**c, "usage": None} for c in TEXT_CHUNKS),
        {**TEXT_ENVELOPE, "choices": [], "usage": TEXT_USAGE},
    ]
    assert state.done and state.chunks == 5


def test_a_tool_call_stream_becomes_tool_call_deltas():
    forwarded, state = translate([TOOL_STREAM])

    assert payloads(forwarded) == TOOL_CHUNKS
    assert state.done and state.finish_reason == "tool_calls"
    assert state.usage == Usage(prompt_tokens=379, completion_tokens=65)


def test_every_forwarded_chunk_is_readable_by_the_openai_sdk():
    for stream in (TEXT_STREAM, TOOL_STREAM):
        for payload in payloads(translate([stream], include_usage=True)[0]):
            ChatCompletionChunk.model_validate(payload)


def test_a_tool_call_stream_assembles_to_the_same_message_as_the_json_answer():
    forwarded, _ = translate([TOOL_STREAM])
    content, arguments = "", ""
    for payload in payloads(forwarded):
        delta = payload["choices"][0]["delta"]
        content += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            arguments += call["function"]["arguments"]

    message = parse(TOOL_RESPONSE)[0]["choices"][0]["message"]
    assert content == message["content"]
    assert orjson.loads(arguments) == orjson.loads(
        message["tool_calls"][0]["function"]["arguments"]
    )


def test_the_clients_model_is_echoed_in_the_chunks():
    forwarded, state = translate([TEXT_STREAM], model="claude-3-opus")

    assert {payload["model"] for payload in payloads(forwarded)} == {"claude-3-opus"}
    assert state.first is not None
    assert state.first["model"] == "claude-3-opus"


def sse(*events: dict) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def tool_block_stream(name: str, fragments: list[str], stop_reason: str = "tool_use") -> bytes:
    """A stream with one tool_use block: the Anthropic message_start … message_stop sequence."""
    start = orjson.loads(TOOL_STREAM.split(b"\n\n")[0].split(b"data: ")[1])
    block = {"type": "tool_use", "id": "toolu_01", "name": name, "input": {}}
    deltas = [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        }
        for fragment in fragments
    ]
    return sse(
        start,
        {"type": "content_block_start", "index": 0, "content_block": block},
        *deltas,
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    )


def test_a_streamed_json_answer_becomes_content_and_finishes_with_stop():
    stream = tool_block_stream("aqta_json_reply", ["", '{"key"', ': "v"}'])

    forwarded, state = translate([stream])

    assert payloads(forwarded)[1:] == [
        chunk(TOOL_ENVELOPE, {"content": '{"key"'}),
        chunk(TOOL_ENVELOPE, {"content": ': "v"}'}),
        chunk(TOOL_ENVELOPE, {}, "stop"),
    ]
    assert state.finish_reason == "stop"


def test_a_streamed_tool_call_without_argument_fragments_still_gets_valid_json():
    forwarded, _ = translate([tool_block_stream("now", [""])])

    assert payloads(forwarded)[2] == chunk(TOOL_ENVELOPE, tool_call_delta("{}"))


def test_parallel_tool_calls_get_their_own_openai_index():
    first = tool_block_stream("now", ['{"tz": "UTC"}']).split(b"\n\n")
    second_block = {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}},
    }
    second = sse(
        second_block,
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Rome"}'},
        },
        {"type": "content_block_stop", "index": 1},
    )
    stream = b"\n\n".join(first[:4]) + b"\n\n" + second + b"\n\n".join(first[4:])

    calls = [
        call
        for payload in payloads(translate([stream])[0])
        for call in payload["choices"][0]["delta"].get("tool_calls", [])
    ]

    assert [(c["index"], c.get("id")) for c in calls] == [
        (0, "toolu_01"),
        (0, None),
        (1, "toolu_02"),
        (1, None),
    ]


def test_cache_counts_from_message_start_and_cumulative_counts_from_message_delta_are_billed():
    start = orjson.loads(TOOL_STREAM.split(b"\n\n")[0].split(b"data: ")[1])
    start["message"]["usage"].update(cache_read_input_tokens=1000, cache_creation_input_tokens=50)
    rest = TOOL_STREAM.split(b"\n\n", 1)[1]
    stream = sse(start) + rest.replace(
        b'"usage":{"output_tokens":65}', b'"usage":{"output_tokens":65,"input_tokens":380}'
    )

    forwarded, state = translate([stream], include_usage=True)

    assert state.usage == Usage(
        prompt_tokens=1430, completion_tokens=65, cached_tokens=1000, cache_write_tokens=50
    )
    assert payloads(forwarded)[-1]["usage"] == {
        "prompt_tokens": 1430,
        "completion_tokens": 65,
        "total_tokens": 1495,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }


def test_an_error_event_mid_stream_sets_an_openai_error_and_is_not_done():
    forwarded, state = translate([ERROR_STREAM])

    envelope_ = envelope("msg_01Xk2Lm7eR9YtQp3", "claude-3-5-sonnet-20241022")
    assert payloads(forwarded) == [
        chunk(envelope_, {"role": "assistant", "content": ""}),
        chunk(envelope_, {"content": "Once upon"}),
    ]
    assert state.error == (
        b'data: {"error":{"message":"Upstream provider error: anthropic: Overloaded (api_error)",'
        b'"type":"api_error","code":"provider_error"}}\n\n'
    )
    assert not state.done


def test_an_overloaded_error_event_names_its_type():
    stream = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    forwarded, state = translate([stream])

    assert forwarded == []
    assert state.error is not None
    assert orjson.loads(state.error[len(b"data: ") :])["error"]["message"] == (
        "Upstream provider error: anthropic: Overloaded (overloaded_error)"
    )


def test_an_unreadable_event_ends_the_stream_with_an_error():
    forwarded, state = translate([TEXT_STREAM.split(b"\n\n")[0] + b"\n\ndata: {oops\n\n"])

    assert len(forwarded) == 1
    assert state.error is not None
    assert b"unreadable" in state.error


def test_a_stream_cut_before_message_stop_is_not_done_but_keeps_its_usage():
    cut = TEXT_STREAM[: TEXT_STREAM.index(b"event: message_stop")]

    forwarded, state = translate([cut])

    assert payloads(forwarded) == TEXT_CHUNKS
    assert not state.done
    assert state.usage == Usage(prompt_tokens=11, completion_tokens=6)


def test_a_last_event_without_its_blank_line_still_ends_the_stream():
    forwarded, state = translate([TEXT_STREAM.rstrip(b"\n")])

    assert payloads(forwarded) == TEXT_CHUNKS
    assert state.done


def test_a_body_that_ends_inside_an_event_is_a_cut_not_an_error():
    cut = TEXT_STREAM[: TEXT_STREAM.index(b'"message_stop"}') + 5]

    forwarded, state = translate([cut])

    assert payloads(forwarded) == TEXT_CHUNKS
    assert not state.done
    assert state.error is None


def test_nothing_after_message_stop_is_forwarded():
    late = sse(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}
    )

    forwarded, _ = translate([TEXT_STREAM + late])

    assert payloads(forwarded) == TEXT_CHUNKS


def test_the_streamed_text_can_be_recovered_for_content_logging_once():
    forwarded, _ = translate([TOOL_STREAM], keep_text=True)

    # The gateway collects it from what it forwards; the adapter adds nothing of its own.
    assert "".join(_delta_text(forwarded)) == "I'll check the weather in Paris."


@pytest.mark.parametrize(
    "variant",
    [
        lambda s: s.replace(b"\n", b"\r\n"),
        lambda s: s.replace(b"data: ", b"data:"),
        lambda s: s.replace(b"}\n", b"}   \n"),
        lambda s: b": keep-alive\n\n" + s.replace(b"\n\nevent", b"\n\n\n: comment\n\nevent"),
    ],
    ids=["crlf", "no-space", "trailing-spaces", "comments-and-blank-lines"],
)
def test_sse_spelling_variants_give_the_same_chunks(variant):
    for stream, expected in ((TEXT_STREAM, TEXT_CHUNKS), (TOOL_STREAM, TOOL_CHUNKS)):
        forwarded, state = translate([variant(stream)])
        assert payloads(forwarded) == expected
        assert state.done


# --- any chunking gives the same result -----------------------------------------------------------


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return split_at(data, rng.sample(range(1, len(data)), rng.randint(1, 60)))


def outcome(pieces: list[bytes], include_usage: bool = False) -> tuple:
    forwarded, state = translate(pieces, include_usage=include_usage)
    return (
        b"".join(forwarded),
        state.usage,
        state.done,
        state.error,
        state.chunks,
        state.first,
        state.finish_reason,
    )


STREAMS = {"text": TEXT_STREAM, "tool": TOOL_STREAM, "error": ERROR_STREAM}


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage-off", "usage-on"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_a_stream_split_at_any_byte_gives_the_same_chunks(name, include_usage):
    stream = STREAMS[name]
    whole = outcome([stream], include_usage)

    for cut in range(1, len(stream)):
        assert outcome(split_at(stream, [cut]), include_usage) == whole, cut


@pytest.mark.parametrize("name", list(STREAMS))
def test_a_stream_split_at_random_gives_the_same_chunks(name):
    stream = STREAMS[name]
    whole = outcome([stream], True)

    for seed in range(200):
        assert outcome(random_splits(stream, seed), True) == whole, seed


def test_a_crlf_stream_split_between_cr_and_lf_gives_the_same_chunks():
    crlf = TOOL_STREAM.replace(b"\n", b"\r\n")
    cuts = [i + 1 for i in range(len(crlf)) if crlf[i : i + 1] == b"\r"]

    assert outcome(split_at(crlf, cuts)) == outcome([TOOL_STREAM])


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_chunks():
    pieces = [TOOL_STREAM[i : i + 1] for i in range(len(TOOL_STREAM))]

    assert outcome(pieces, True) == outcome([TOOL_STREAM], True)


# --- error bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "summary"),
    [
        (
            400,
            "error_400.json",
            "prompt is too long: 205429 tokens > 200000 maximum (invalid_request_error)",
        ),
        (
            429,
            "error_429.json",
            "Number of request tokens has exceeded your per-minute rate limit (...) "
            "(rate_limit_error)",
        ),
        (529, "error_529.json", "Overloaded (overloaded_error)"),
    ],
)
def test_an_error_body_is_summarised_with_its_type(status, name, summary):
    assert provider.error_message(status, fixture(name)) == summary


@pytest.mark.parametrize(
    ("status", "raw", "summary"),
    [
        (529, b"", "overloaded"),
        (500, b"", "HTTP 500"),
        (502, b"upstream connect error", "upstream connect error"),
        (
            413,
            b"<html><head><title>413 Request Entity Too Large</title></head></html>",
            "413 Request Entity Too Large",
        ),
    ],
    ids=["empty-529", "empty-500", "text", "html"],
)
def test_an_error_body_that_is_not_anthropic_json_is_still_summarised(status, raw, summary):
    assert provider.error_message(status, raw) == summary


def test_an_error_summary_is_short():
    raw = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": "x" * 5000}})

    assert len(provider.error_message(500, raw)) == 300
