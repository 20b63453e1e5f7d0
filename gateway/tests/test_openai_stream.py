"""The OpenAI adapter: request building, JSON answers and SSE pass-through.

Stream payloads have the shape of recorded OpenAI streams (compact JSON, one ``data:``
line per event, a usage chunk with ``"choices": []``, then ``[DONE]``). The adapter forwards
every chunk, the usage chunk included; ``gateway.dataplane.stream_tail`` decides what the
client gets.
"""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment, Endpoint
from gateway.dataplane.providers.base import StreamState
from gateway.dataplane.providers.openai import OpenAIProvider

provider = OpenAIProvider()

ENVELOPE = {
    "id": "chatcmpl-BwoiPxHbJ2Ew4yW2xq3V2n0xrDzMe",
    "object": "chat.completion.chunk",
    "created": 1753357673,
    "model": "gpt-4.1-2025-04-14",
    "service_tier": "default",
    "system_fingerprint": "fp_51e1070cf2",
}
USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 238,
    "total_tokens": 257,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def chunk(delta: dict, finish_reason: str | None = None) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {**ENVELOPE, "choices": [choice], "usage": None}


def event(payload: dict | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "The"}),
    chunk({"content": " answer is 42."}),
    chunk({}, "stop"),
]
TEXT_USAGE_CHUNK = {**ENVELOPE, "choices": [], "usage": USAGE}
TEXT_EVENTS = [event(c) for c in TEXT_CHUNKS]
TEXT_USAGE_EVENT = event(TEXT_USAGE_CHUNK)
TEXT_STREAM = b"".join(TEXT_EVENTS) + TEXT_USAGE_EVENT + b"data: [DONE]\n\n"


def tool_delta(fragment: str, first: bool = False) -> dict:
    call: dict = {"index": 0, "function": {"arguments": fragment}}
    if first:
        call = {
            "index": 0,
            "id": "call_HjeqP7YeRkoNj0de9e3U4X4B",
            "type": "function",
            "function": {"name": "read_file", "arguments": fragment},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
    return {"tool_calls": [call]}


TOOL_CHUNKS = [
    chunk(tool_delta("", first=True)),
    chunk(tool_delta('{"')),
    chunk(tool_delta("path")),
    chunk(tool_delta('":"README.md"}')),
    chunk({}, "tool_calls"),
]
TOOL_USAGE = {**USAGE, "prompt_tokens": 60, "completion_tokens": 15, "total_tokens": 75}
TOOL_EVENTS = [event(c) for c in TOOL_CHUNKS]
TOOL_STREAM = (
    b"".join(TOOL_EVENTS)
    + event({**ENVELOPE, "choices": [], "usage": TOOL_USAGE})
    + b"data: [DONE]\n\n"
)

UPSTREAM_ERROR = (
    b'data: {"error": {"message": "The server had an error while processing your request. '
    b'Sorry about that!", "type": "server_error"}}\n\n'
)


def translate(
    pieces: list[bytes], include_usage: bool = False, **state
) -> tuple[list, StreamState]:
    """Feed ``pieces`` as they would arrive from the socket; collect what is forwarded."""
    stream_state = StreamState(include_usage=include_usage, **state)
    forwarded: list[bytes] = []
    for piece in pieces:
        forwarded += provider.translate_stream(piece, stream_state)
    return forwarded, stream_state


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return split_at(data, rng.sample(range(1, len(data)), rng.randint(1, 40)))


# --- forwarding -----------------------------------------------------------------------------


def test_a_text_stream_forwards_its_chunks_and_the_usage_chunk():
    forwarded, state = translate([TEXT_STREAM])

    assert forwarded == [*TEXT_EVENTS, TEXT_USAGE_EVENT]
    assert state.usage == Usage(prompt_tokens=19, completion_tokens=238, cached_tokens=0)
    assert state.done
    assert state.error is None
    assert state.chunks == 5
    assert state.first == TEXT_CHUNKS[0]


def test_the_usage_chunk_is_forwarded_when_the_client_asked_for_it():
    forwarded, state = translate([TEXT_STREAM], include_usage=True)

    assert forwarded == [*TEXT_EVENTS, TEXT_USAGE_EVENT]
    assert state.usage == Usage(prompt_tokens=19, completion_tokens=238)
    assert state.done


def test_a_tool_call_stream_is_forwarded_byte_for_byte():
    forwarded, state = translate([TOOL_STREAM])

    assert b"".join(forwarded) == TOOL_STREAM.removesuffix(b"data: [DONE]\n\n")
    assert state.usage == Usage(prompt_tokens=60, completion_tokens=15)
    assert state.done and state.chunks == 6


def test_done_is_not_forwarded_and_ends_the_stream():
    after = event(chunk({"content": "late"}))

    forwarded, state = translate([TEXT_STREAM + after])

    assert state.done
    assert b"[DONE]" not in b"".join(forwarded)
    assert after not in forwarded


def test_a_stream_without_done_is_not_done():
    forwarded, state = translate([b"".join(TEXT_EVENTS)])

    assert forwarded == TEXT_EVENTS
    assert not state.done
    assert state.usage is None


def test_an_error_event_mid_stream_sets_the_error_and_is_not_forwarded():
    stream = TEXT_EVENTS[0] + TEXT_EVENTS[1] + UPSTREAM_ERROR + TEXT_EVENTS[2]

    forwarded, state = translate([stream])

    assert forwarded == TEXT_EVENTS[:2]
    assert state.error == UPSTREAM_ERROR
    assert not state.done


def test_an_error_as_the_first_event_sets_the_error():
    forwarded, state = translate([UPSTREAM_ERROR])

    assert forwarded == []
    assert state.error == UPSTREAM_ERROR


def test_comments_and_keep_alives_are_skipped():
    stream = b": keep-alive\n\n" + TEXT_EVENTS[0] + b": ping\n\n" + TEXT_EVENTS[1]

    forwarded, _ = translate([stream])

    assert forwarded == TEXT_EVENTS[:2]


def test_crlf_line_endings_give_the_same_events():
    crlf = TEXT_STREAM.replace(b"\n", b"\r\n")

    forwarded, state = translate([crlf])

    assert forwarded == [*TEXT_EVENTS, TEXT_USAGE_EVENT]
    assert state.done and state.usage == Usage(prompt_tokens=19, completion_tokens=238)


def test_crlf_line_endings_split_between_cr_and_lf_give_the_same_events():
    crlf = TEXT_STREAM.replace(b"\n", b"\r\n")
    cuts = [i + 1 for i in range(len(crlf)) if crlf[i : i + 1] == b"\r"]

    forwarded, state = translate(split_at(crlf, cuts))

    assert forwarded == [*TEXT_EVENTS, TEXT_USAGE_EVENT]
    assert state.done


def test_the_streamed_text_can_be_recovered_from_the_forwarded_events():
    from gateway.dataplane.steps.answer import delta_text as _delta_text

    forwarded, _ = translate([TEXT_STREAM])

    assert "".join(_delta_text(forwarded)) == "The answer is 42."


# --- any chunking gives the same result -----------------------------------------------------


def _outcome(pieces: list[bytes], include_usage: bool) -> tuple:
    forwarded, state = translate(pieces, include_usage=include_usage)
    return b"".join(forwarded), forwarded, state.usage, state.done, state.chunks, state.first


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_text_stream_split_at_any_byte_gives_the_same_events(include_usage):
    whole = _outcome([TEXT_STREAM], include_usage)

    for cut in range(1, len(TEXT_STREAM)):
        assert _outcome(split_at(TEXT_STREAM, [cut]), include_usage) == whole, cut


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tool_calls"])
def test_a_stream_split_at_random_gives_the_same_events(stream):
    whole = _outcome([stream], False)

    for seed in range(200):
        assert _outcome(random_splits(stream, seed), False) == whole, seed


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_events():
    pieces = [TOOL_STREAM[i : i + 1] for i in range(len(TOOL_STREAM))]

    assert _outcome(pieces, True) == _outcome([TOOL_STREAM], True)


def test_an_error_split_at_random_is_still_caught():
    stream = TEXT_EVENTS[0] + UPSTREAM_ERROR

    for seed in range(50):
        forwarded, state = translate(random_splits(stream, seed))
        assert (forwarded, state.error) == ([TEXT_EVENTS[0]], UPSTREAM_ERROR), seed


def test_usage_is_captured_from_json_with_spaces():
    spaced = b"".join(
        b"data: " + orjson.dumps(c).replace(b'":', b'": ') + b"\n\n"
        for c in [*TEXT_CHUNKS, TEXT_USAGE_CHUNK]
    )

    forwarded, state = translate([spaced + b"data: [DONE]\n\n"])

    assert state.usage == Usage(prompt_tokens=19, completion_tokens=238)
    assert len(forwarded) == 5


def test_data_lines_without_a_space_are_events():
    compact = TEXT_STREAM.replace(b"data: ", b"data:")

    forwarded, state = translate([compact])

    assert len(forwarded) == 5
    assert state.done


# --- requests and JSON answers ---------------------------------------------------------------

ENDPOINT = Endpoint(
    name="env-openai", provider="openai", base_url="https://api.openai.com/v1/", api_key="sk-up"
)
MODEL = Deployment(
    name="openai",
    provider="openai",
    endpoint=ENDPOINT,
    upstream_model_id="gpt-4o-2024-08-06",
    max_output_tokens=16_384,
)
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Say hello."}],
    "temperature": 0.2,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
}


def _sent(request) -> dict:
    sent: dict = orjson.loads(request.body)
    return sent


def test_a_streamed_request_always_asks_upstream_for_usage():
    request = provider.build_request(MODEL, {**BODY, "stream": True}, stream=True)

    assert _sent(request)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "options",
    [{"include_usage": False}, {"include_usage": False, "include_obfuscation": False}],
    ids=repr,
)
def test_a_streamed_request_overrides_include_usage_and_keeps_other_options(options):
    body = {**BODY, "stream": True, "stream_options": dict(options)}

    request = provider.build_request(MODEL, body, stream=True)

    assert _sent(request)["stream_options"] == {**options, "include_usage": True}
    assert body["stream_options"] == options  # the client's request is left as it was


def test_a_request_goes_upstream_with_the_upstream_model_id_and_everything_else_as_sent():
    request = provider.build_request(MODEL, dict(BODY), stream=False)

    assert _sent(request) == {**BODY, "model": "gpt-4o-2024-08-06"}
    assert BODY["model"] == "gpt-4o"
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-up",
    }


def test_a_request_to_a_keyless_server_sends_no_authorization():
    local = Endpoint(
        name="ollama", provider="openai_compatible", base_url="http://h:11434/v1", api_key=""
    )

    deployment = Deployment("ollama", "openai_compatible", local, "llama3")
    request = provider.build_request(deployment, dict(BODY), stream=False)

    assert request.url == "http://h:11434/v1/chat/completions"
    assert "Authorization" not in request.headers


RECORDED_RESPONSE = {
    "id": "chatcmpl-BwkyFElDIr1egmFyfQ9z4vPBto7m2",
    "object": "chat.completion",
    "created": 1753343279,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_KjzAbhiZC6nk81tQzL7pwlpc",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path":"README.md"}'},
                    }
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2060,
        "completion_tokens": 15,
        "total_tokens": 2075,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_b3f1157249",
}


def test_a_json_answer_is_returned_with_its_usage_including_cached_tokens():
    data, usage = provider.parse_response(orjson.dumps(RECORDED_RESPONSE), "gpt-4o")

    assert data == RECORDED_RESPONSE
    assert usage == Usage(prompt_tokens=2060, completion_tokens=15, cached_tokens=1920)


def test_a_json_answer_without_usage_has_zero_usage():
    body = {k: v for k, v in RECORDED_RESPONSE.items() if k != "usage"}

    assert provider.parse_response(orjson.dumps(body), "gpt-4o")[1] == Usage()


def test_a_json_answer_that_is_not_an_object_is_rejected():
    with pytest.raises(ValueError):
        provider.parse_response(b'["not", "an", "object"]', "gpt-4o")
