"""Request checks for /v1/chat/completions: OpenAI's published schema, the depth cap, and what
the gateway itself relies on."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aqta.errors import AqtaError
from gateway.dataplane import schema as openai_schema
from gateway.dataplane.schema import generate
from gateway.dataplane.validation import chat_request

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
    ("stop non-strings", {"stop": ["END", 7]}, "invalid_parameter", "stop[1]"),
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
        "response_format.type",
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
        "missing_parameter",
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


def rejected(body: dict) -> AqtaError:
    with pytest.raises(AqtaError) as caught:
        chat_request(body)
    assert (caught.value.status, caught.value.type) == (400, "invalid_request_error")
    return caught.value


def assert_error(error: AqtaError, code: str, param: str, message: str) -> None:
    assert (error.code, error.param, error.message) == (code, param, message)


# --- what fuzzing the production setup found --------------------------------------------


def test_an_unknown_role_names_the_message_and_the_allowed_roles():
    messages = [*MESSAGES, {"role": "assistant", "content": "Hi"}, *MESSAGES]
    error = rejected(with_(messages=[*messages, {"role": "wizard", "content": "Abracadabra"}]))

    assert_error(
        error,
        "invalid_parameter",
        "messages[3].role",
        "messages[3].role must be one of developer, system, user, assistant, tool, function.",
    )


def test_an_unknown_content_part_type_names_the_part():
    part = {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "video"}]}
    error = rejected(with_(messages=[*MESSAGES, *MESSAGES, part]))

    assert_error(
        error,
        "invalid_parameter",
        "messages[2].content[1].type",
        "messages[2].content[1].type must be one of text, image_url, input_audio, file.",
    )


@pytest.mark.parametrize(
    ("content", "code", "param", "message"),
    [
        (
            [{"type": "text", "text": 5}],
            "invalid_parameter",
            "messages[0].content[0].text",
            "messages[0].content[0].text must be a string.",
        ),
        (
            [{"text": "Say hello."}],
            "missing_parameter",
            "messages[0].content[0].type",
            "messages[0].content[0].type is required.",
        ),
        (
            ["Say hello."],
            "invalid_parameter",
            "messages[0].content[0]",
            "messages[0].content[0] must be an object.",
        ),
        (
            [{"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "max"}}],
            "invalid_parameter",
            "messages[0].content[0].image_url.detail",
            "messages[0].content[0].image_url.detail must be one of auto, low, high.",
        ),
        (
            5,
            "invalid_parameter",
            "messages[0].content",
            "messages[0].content must be a string or an array of objects.",
        ),
        (
            [],
            "invalid_parameter",
            "messages[0].content",
            "messages[0].content must be a non-empty array.",
        ),
    ],
    ids=["text not a string", "part without type", "part a string", "bad detail", "a number", "[]"],
)
def test_a_wrong_content_part_names_the_field_at_fault(content, code, param, message):
    error = rejected(with_(messages=[{"role": "user", "content": content}]))

    assert_error(error, code, param, message)


@pytest.mark.parametrize(
    ("changes", "param", "message"),
    [
        ({"logit_bias": "50256"}, "logit_bias", "logit_bias must be an object."),
        (
            {"logit_bias": {"50256": "-100"}},
            "logit_bias.50256",
            "logit_bias.50256 must be an integer between -100 and 100.",
        ),
        ({"tool_choice": 5}, "tool_choice", "tool_choice must be a string or an object."),
        (
            {"tool_choice": "always"},
            "tool_choice",
            "tool_choice must be one of none, auto, required.",
        ),
        (
            {"tool_choice": {"type": "tool", "function": {"name": "f"}}},
            "tool_choice.type",
            "tool_choice.type must be one of allowed_tools, function, custom.",
        ),
        ({"user": 1234}, "user", "user must be a string."),
        ({"metadata": ["team", "search"]}, "metadata", "metadata must be an object."),
        ({"metadata": {"team": 7}}, "metadata.team", "metadata.team must be a string."),
        ({"tools": [5]}, "tools[0]", "tools[0] must be an object."),
        ({"modalities": 5}, "modalities", "modalities must be an array of strings."),
    ],
    ids=repr,
)
def test_a_wrongly_typed_parameter_is_refused_before_going_upstream(changes, param, message):
    assert_error(rejected(with_(**changes)), "invalid_parameter", param, message)


def test_a_message_without_a_role_names_the_role_as_missing():
    error = rejected(with_(messages=[*MESSAGES, {"content": "Hi!"}]))

    assert_error(error, "missing_parameter", "messages[1].role", "messages[1].role is required.")


def test_a_missing_required_field_of_a_message_is_a_missing_parameter():
    error = rejected(with_(messages=[{"role": "tool", "content": "21 degrees"}]))

    assert_error(
        error,
        "missing_parameter",
        "messages[0].tool_call_id",
        "messages[0].tool_call_id is required.",
    )


def test_a_tool_call_without_arguments_names_the_call():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    error = rejected(with_(messages=[{"role": "assistant", "tool_calls": [call]}]))

    assert_error(
        error,
        "missing_parameter",
        "messages[0].tool_calls[0].function.arguments",
        "messages[0].tool_calls[0].function.arguments is required.",
    )


@pytest.mark.parametrize(
    ("tool", "code", "param", "message"),
    [
        (
            {"type": "fn", "function": {"name": "f"}},
            "invalid_parameter",
            "tools[0].type",
            "tools[0].type must be one of function, custom.",
        ),
        (
            {"type": "function"},
            "missing_parameter",
            "tools[0].function",
            "tools[0].function is required.",
        ),
        (
            {"type": "function", "function": {"name": "f", "parameters": []}},
            "invalid_parameter",
            "tools[0].function.parameters",
            "tools[0].function.parameters must be an object.",
        ),
        (
            {"type": "custom", "custom": {"name": "sql", "format": {"type": "text", "lark": "x"}}},
            "invalid_parameter",
            "tools[0].custom.format.lark",
            "tools[0].custom.format.lark is not a recognised field.",
        ),
    ],
    ids=["unknown type", "no function", "parameters a list", "unknown format field"],
)
def test_a_wrong_tool_names_the_field_at_fault(tool, code, param, message):
    assert_error(rejected(with_(tools=[tool])), code, param, message)


# --- every parameter of the spec: types and enums ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "param", "message"),
    [
        (
            {"modalities": ["video"]},
            "invalid_parameter",
            "modalities[0]",
            "modalities[0] must be one of text, audio.",
        ),
        (
            {"audio": {"voice": "alloy"}},
            "missing_parameter",
            "audio.format",
            "audio.format is required.",
        ),
        (
            {"audio": {"voice": "alloy", "format": "ogg"}},
            "invalid_parameter",
            "audio.format",
            "audio.format must be one of wav, aac, mp3, flac, opus, pcm16.",
        ),
        (
            {"audio": {"voice": {"name": "mine"}, "format": "mp3"}},
            "invalid_parameter",
            "audio.voice.name",
            "audio.voice.name is not a recognised field.",
        ),
        (
            {"prediction": {"type": "content", "content": 5}},
            "invalid_parameter",
            "prediction.content",
            "prediction.content must be a string or an array of objects.",
        ),
        (
            {"prediction": {"type": "diff", "content": "x"}},
            "invalid_parameter",
            "prediction.type",
            "prediction.type must be one of content.",
        ),
        (
            {"web_search_options": {"search_context_size": "huge"}},
            "invalid_parameter",
            "web_search_options.search_context_size",
            "web_search_options.search_context_size must be one of low, medium, high.",
        ),
        (
            {"web_search_options": {"user_location": {"latitude": "48.85"}}},
            "invalid_parameter",
            "web_search_options.user_location.latitude",
            "web_search_options.user_location.latitude must be a number.",
        ),
        (
            {"reasoning_effort": "extreme"},
            "invalid_parameter",
            "reasoning_effort",
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh, max.",
        ),
        (
            {"service_tier": "gold"},
            "invalid_parameter",
            "service_tier",
            "service_tier must be one of auto, default, flex, scale, priority, fast.",
        ),
        ({"store": "yes"}, "invalid_parameter", "store", "store must be a boolean."),
        (
            {"verbosity": "loud"},
            "invalid_parameter",
            "verbosity",
            "verbosity must be one of low, medium, high.",
        ),
        (
            {"function_call": "always"},
            "invalid_parameter",
            "function_call",
            "function_call must be one of none, auto.",
        ),
        (
            {"functions": []},
            "invalid_parameter",
            "functions",
            "functions must be a non-empty array.",
        ),
        ({"stop": []}, "invalid_parameter", "stop", "stop must be a non-empty array."),
        ({"stop": 7}, "invalid_parameter", "stop", "stop must be a string or an array of strings."),
        (
            {"stop": ["a", "b", "c", "d", "e"]},
            "invalid_parameter",
            "stop",
            "stop must have at most 4 items.",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": 5}}},
            "invalid_parameter",
            "response_format.json_schema.name",
            "response_format.json_schema.name must be a string.",
        ),
        (
            {"stream": True, "stream_options": {"include_usage": "yes"}},
            "invalid_parameter",
            "stream_options.include_usage",
            "stream_options.include_usage must be a boolean.",
        ),
        (
            {"moderation": {"model": 5}},
            "invalid_parameter",
            "moderation.model",
            "moderation.model must be a string.",
        ),
        (
            {"temperature": True},
            "invalid_parameter",
            "temperature",
            "temperature must be a number between 0 and 2.",
        ),
        ({"n": 2.0}, "invalid_parameter", "n", "n must be an integer between 1 and 128."),
        (
            {"max_tokens": 100.0},
            "invalid_parameter",
            "max_tokens",
            "max_tokens must be an integer between 1 and 10000000.",
        ),
        (
            {"seed": 2**63},
            "invalid_parameter",
            "seed",
            "seed must be an integer between -9223372036854775808 and 9223372036854775807.",
        ),
    ],
    ids=repr,
)
def test_every_spec_parameter_is_checked_by_type_and_enum(changes, code, param, message):
    assert_error(rejected(with_(**changes)), code, param, message)


SPEC = openai_schema.chat_completion_request()
WRONG_VALUES = [True, "text", 7, 1.5, [1], {"k": 1}]


def _accepted_types(node: dict) -> set[str]:
    while "$ref" in node:
        node = SPEC["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        return set().union(*(_accepted_types(branch) for branch in node["anyOf"]))
    kind = node["type"]
    types = set(kind) if isinstance(kind, list) else {kind}
    return types | ({"integer"} if "number" in types else set())


def _json_type(value) -> str:
    names = {bool: "boolean", str: "string", int: "integer", float: "number", list: "array"}
    return names.get(type(value), "object")


def _wrong_value(name: str):
    types = _accepted_types(SPEC["properties"][name])
    return next(v for v in WRONG_VALUES if _json_type(v) not in types)


@pytest.mark.parametrize("name", sorted(SPEC["properties"]))
def test_a_wrong_type_for_any_top_level_parameter_names_it(name):
    error = rejected(with_(**{name: _wrong_value(name)}))

    assert (error.code, error.param) == ("invalid_parameter", name)
    assert error.message.startswith(f"{name} must be ")


def test_the_schema_covers_every_current_openai_parameter():
    assert len(SPEC["properties"]) == 37
    assert {
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "reasoning_effort",
        "service_tier",
        "store",
        "verbosity",
        "moderation",
        "prompt_cache_options",
    } <= set(SPEC["properties"])


# --- what passes ---------------------------------------------------------------------------

PERPLEXITY = {
    "search_domain_filter": ["wikipedia.org", "-reddit.com"],
    "search_recency_filter": "week",
    "search_after_date_filter": "1/1/2025",
    "search_mode": "academic",
    "return_images": True,
    "return_related_questions": True,
    "disable_search": False,
    "top_k": 0,
    "web_search_options": {
        "search_context_size": "high",
        "search_type": "pro",
        "user_location": {"country": "FR", "city": "Paris", "latitude": 48.85, "longitude": 2.35},
    },
}


def test_provider_extension_parameters_pass_unchanged():
    assert chat_request(with_(**PERPLEXITY)) == with_(**PERPLEXITY)


def test_a_json_schema_without_a_name_passes_as_perplexity_documents_it():
    response_format = {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}

    assert chat_request(with_(response_format=response_format)) == with_(
        response_format=response_format
    )


def test_openai_web_search_location_passes_too():
    options = {"user_location": {"type": "approximate", "approximate": {"city": "Paris"}}}

    assert chat_request(with_(web_search_options=options)) == with_(web_search_options=options)


def test_unknown_fields_inside_known_objects_pass():
    part = {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}
    body = with_(messages=[{"role": "user", "content": [part], "x-trace": [1, 2]}])

    assert chat_request(copy.deepcopy(body)) == body


def test_a_null_where_the_spec_has_none_means_not_given():
    body = with_(tools=None, tool_choice=None, user=None, parallel_tool_calls=None, n=None)

    assert chat_request(body) == with_(n=None)


def test_nul_bytes_in_strings_are_accepted_unchanged():
    body = with_(
        messages=[{"role": "user", "content": "a\x00b", "name": "\x00"}],
        user="\x00\x00",
        metadata={"k\x00": "v\x00"},
        stop=["\x00"],
    )

    assert chat_request(copy.deepcopy(body)) == body


@pytest.mark.parametrize(
    ("changes", "param", "message"),
    [
        (
            {"metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
            "metadata must have at most 16 entries.",
        ),
        (
            {"metadata": {"k" * 65: "v"}},
            "metadata",
            "metadata keys must be at most 64 characters long.",
        ),
        (
            {"metadata": {"k": "v" * 513}},
            "metadata.k",
            "metadata.k must be at most 512 characters long.",
        ),
        (
            {"logit_bias": {"50256": 101}},
            "logit_bias.50256",
            "logit_bias.50256 must be an integer between -100 and 100.",
        ),
        (
            {"safety_identifier": "s" * 65},
            "safety_identifier",
            "safety_identifier must be at most 64 characters long.",
        ),
    ],
    ids=repr,
)
def test_sizes_the_spec_bounds_are_enforced(changes, param, message):
    assert_error(rejected(with_(**changes)), "invalid_parameter", param, message)


def test_sizes_at_the_spec_bounds_pass():
    body = with_(
        metadata={f"{i:064d}": "v" * 512 for i in range(16)},
        logit_bias={"1": -100, "2": 100},
        safety_identifier="s" * 64,
    )

    assert chat_request(copy.deepcopy(body)) == body


# --- nesting depth ---------------------------------------------------------------------------


def nested(levels: int, key: str | None = None):
    """``levels`` arrays (or objects keyed ``key``) nested inside each other, around 1."""
    value: object = 1
    for _ in range(levels):
        value = {key: value} if key else [value]
    return value


def tool_with(parameters) -> list[dict]:
    return [{"type": "function", "function": {"name": "f", "parameters": parameters}}]


# (place, body changes for a value nested n levels deep there, the param of that value, the
# level of that value: the request object is level 1).
# Where a nesting goes: the request fields, the param named, its depth there, the step.
PLACES: dict[str, tuple[Callable[[int], dict[str, Any]], str, int, str]] = {
    "tools[0].function.parameters": (
        lambda n: {"tools": tool_with(nested(n, "a"))},
        "tools[0].function.parameters",
        5,
        ".a",
    ),
    "response_format.json_schema.schema": (
        lambda n: {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": nested(n, "properties")},
            }
        },
        "response_format.json_schema.schema",
        4,
        ".properties",
    ),
    "messages[0].content": (
        lambda n: {"messages": [{"role": "user", "content": nested(n)}]},
        "messages[0].content",
        4,
        "[0]",
    ),
    "logit_bias": (lambda n: {"logit_bias": nested(n, "50256")}, "logit_bias", 2, ".50256"),
    "an unknown parameter": (lambda n: {"x_extension": nested(n)}, "x_extension", 2, "[0]"),
    "an unknown field of a message": (
        lambda n: {"messages": [{"role": "user", "content": "Hi", "x": nested(n)}]},
        "messages[0].x",
        4,
        "[0]",
    ),
}


@pytest.mark.parametrize("levels", [255, 10_000])
@pytest.mark.parametrize("place", PLACES)
def test_deep_nesting_is_refused_naming_where(place, levels):
    changes, param, level, step = PLACES[place]

    error = rejected(with_(**changes(levels)))

    # The first container past level 64, reached from the place's own value.
    where = param + step * (65 - level)
    assert_error(
        error,
        "invalid_parameter",
        where,
        f"{where} is nested too deeply: at most 64 levels of arrays and objects are accepted.",
    )


def test_nesting_up_to_the_cap_passes_and_serialises():
    body = with_(tools=tool_with(nested(60, "a")))  # levels 5 (parameters) to 64

    assert chat_request(copy.deepcopy(body)) == body
    assert orjson.loads(orjson.dumps(body)) == body


def test_one_level_past_the_cap_is_refused():
    error = rejected(with_(tools=tool_with(nested(61, "a"))))

    assert error.param == "tools[0].function.parameters" + ".a" * 60


def test_the_depth_cap_follows_the_setting(settings):
    settings.AQTA_MAX_JSON_DEPTH = 16

    error = rejected(with_(tools=tool_with(nested(13, "a"))))

    assert error.param == "tools[0].function.parameters" + ".a" * 12
    assert error.message.endswith("at most 16 levels of arrays and objects are accepted.")
    assert chat_request(with_(tools=tool_with(nested(12, "a"))))


# --- the vendored schema -------------------------------------------------------------------


def test_the_vendored_schema_records_the_spec_it_comes_from():
    source = openai_schema.source()

    assert source["repository"] == "openai/openai-openapi"
    assert len(source["commit"]) == 40
    assert source["version"] == "2.3.0"
    assert source["commit"] in SPEC["$comment"]


def test_the_vendored_and_the_depth_capped_schemas_are_valid_json_schemas():
    assert jsonschema_rs.meta.is_valid(SPEC)
    assert jsonschema_rs.meta.is_valid(openai_schema.depth_limited(SPEC, 64))


def test_the_generator_turns_openapi_into_json_schema():
    spec: dict[str, Any] = {
        "info": {"version": "9.9"},
        "components": {
            "schemas": {
                "CreateChatCompletionRequest": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Base"},
                        {
                            "type": "object",
                            "properties": {
                                "a": {"type": "integer", "nullable": True, "description": "x"},
                                "e": {"type": "string", "enum": ["x"], "nullable": True},
                                "b": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Cat"},
                                        {"$ref": "#/components/schemas/Dog"},
                                    ],
                                    "discriminator": {"propertyName": "kind"},
                                },
                                "c": {"oneOf": [{"type": "string"}, {"type": "string"}]},
                                "u": {"type": "string", "format": "uri", "x-oaiMeta": {}},
                            },
                            "required": ["a"],
                        },
                    ]
                },
                "Base": {"type": "object", "properties": {"a": {"type": "string"}}},
                "Cat": {
                    "type": "object",
                    "properties": {"kind": {"type": "string", "enum": ["cat"]}},
                    "required": ["kind"],
                },
                "Dog": {
                    "type": "object",
                    "properties": {"kind": {"type": "string", "enum": ["dog"]}},
                    "required": ["kind"],
                },
            }
        },
    }
    converter = generate.Converter(spec["components"]["schemas"])

    root = converter.convert(spec["components"]["schemas"]["CreateChatCompletionRequest"])

    assert root == {
        "type": "object",
        "properties": {
            "a": {"type": ["integer", "null"]},  # the request's own definition wins
            "e": {"type": ["string", "null"], "enum": ["x", None]},
            "b": {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]},  # exclusive
            "c": {"oneOf": [{"type": "string"}, {"type": "string"}]},  # not exclusive: kept
            "u": {"type": "string"},
        },
        "required": ["a"],
    }


# --- never anything but a 400 ----------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    # The integers orjson decodes as such (it makes floats of the others).
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    # Past orjson's 254 levels: what crashed the gateway after admission.
    | st.integers(250, 300).map(nested),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=24,
)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*path, i))


FULL_PATHS = [p for p in _paths(FULL_REQUEST) if p]
NAMES = sorted(SPEC["properties"])


def _outcome(body):
    try:
        result = chat_request(body)
    except AqtaError as error:
        assert error.status == 400
        assert error.code in {"invalid_parameter", "missing_parameter", "invalid_request"}
        assert error.message
        return error
    assert isinstance(result, dict)
    # What passes is within the cap and can be serialised for the upstream request.
    assert depth(result) <= 64
    orjson.dumps(result)
    return result


def depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(JSON)
def test_any_json_value_is_answered_with_an_aqta_error_or_accepted(value):
    _outcome(value)
    if isinstance(value, dict):
        _outcome({"model": "gpt-4o", "messages": copy.deepcopy(MESSAGES), **value})


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(st.data())
def test_a_mutated_valid_request_is_answered_with_an_aqta_error_or_accepted(data):
    body = copy.deepcopy(FULL_REQUEST)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            path = data.draw(st.sampled_from(FULL_PATHS))
            parent: Any = body
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if data.draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = data.draw(JSON)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced that place
        else:
            body[data.draw(st.sampled_from(NAMES))] = data.draw(JSON)

    _outcome(body)
