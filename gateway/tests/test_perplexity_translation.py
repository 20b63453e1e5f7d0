"""The Perplexity adapter: refused and dropped parameters, answers with citations, streams
normalised to OpenAI chunks, usage with the search context size, and error summaries.

Payloads are the recorded shapes of docs/providers.md §4, in fixtures/perplexity/
(provenance in its README).
"""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from aqta.errors import AqtaError
from billing.models import ModelPrice
from billing.pricing import Usage, cost_usd
from gateway.dataplane.catalog import Deployment, Endpoint
from gateway.dataplane.providers.base import StreamState
from gateway.dataplane.providers.perplexity import PerplexityProvider, requested_search_context_size
from gateway.tests.streams import client_events

FIXTURES = Path(__file__).parent / "fixtures" / "perplexity"
provider = PerplexityProvider()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict:
    loaded: dict = orjson.loads(fixture(name))
    return loaded


ENDPOINT = Endpoint(
    name="env-perplexity",
    provider="perplexity",
    base_url="https://api.perplexity.ai/",
    api_key="pplx-upstream",
)
DEPLOYMENT = Deployment("perplexity", "perplexity", ENDPOINT, "sonar-pro", 8_000)
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def sent(body: dict, stream: bool = False) -> dict:
    request: dict = orjson.loads(provider.build_request(DEPLOYMENT, body, stream).body)
    return request


# --- check_request -------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_parameter_that_would_give_a_wrong_answer_is_refused_by_name(extra, param):
    with pytest.raises(AqtaError) as refused:
        provider.check_request({"model": "sonar", "messages": MESSAGES, **extra})

    assert refused.value.status == 400
    assert refused.value.param == param
    assert refused.value.code == "unsupported_parameter"
    assert refused.value.message.startswith(param)
    assert "Perplexity" in refused.value.message


def test_json_object_is_refused_with_a_pointer_to_json_schema():
    with pytest.raises(AqtaError, match="json_schema"):
        provider.check_request({"response_format": {"type": "json_object"}})


HARMLESS = {
    "seed": 7,
    "stop": ["\n\n"],
    "logit_bias": {"50256": -100},
    "user": "user-42",
    "stream_options": {"include_usage": True},
    "parallel_tool_calls": False,
    "service_tier": "auto",
    "store": False,
    "metadata": {"ticket": "1"},
    "prompt_cache_key": "k",
    "safety_identifier": "s",
    "prediction": {"type": "content", "content": "x"},
    "verbosity": "low",
    "modalities": ["text"],
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "tools": [],
    "tool_choice": "none",
    "functions": [],
    "function_call": "auto",
}
PERPLEXITY_ONLY = {
    "search_domain_filter": ["wikipedia.org", "-reddit.com"],
    "search_recency_filter": "week",
    "search_after_date_filter": "1/1/2025",
    "search_before_date_filter": "3/1/2025",
    "search_mode": "academic",
    "return_images": True,
    "return_related_questions": True,
    "disable_search": False,
    "enable_search_classifier": True,
    "top_k": 0,
    "web_search_options": {"search_context_size": "high", "user_location": {"country": "FR"}},
}
SUPPORTED = {
    "temperature": 0.2,
    "top_p": 0.9,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.1,
    "max_tokens": 300,
    "reasoning_effort": "low",
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": {"type": "object"}},
    },
}


def test_harmless_supported_and_perplexity_parameters_are_accepted():
    provider.check_request(
        {"model": "sonar", "messages": MESSAGES, **HARMLESS, **PERPLEXITY_ONLY, **SUPPORTED}
    )


@pytest.mark.parametrize("response_format", [{"type": "text"}, SUPPORTED["response_format"]])
def test_text_and_json_schema_formats_are_accepted(response_format):
    provider.check_request({"messages": MESSAGES, "response_format": response_format})


# --- build_request --------------------------------------------------------------------------


def test_a_request_goes_to_chat_completions_with_the_upstream_model_and_the_key():
    request = provider.build_request(DEPLOYMENT, {"model": "sonar", "messages": MESSAGES}, False)

    assert request.url == "https://api.perplexity.ai/chat/completions"
    assert request.headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer pplx-upstream",
    }
    assert orjson.loads(request.body) == {
        "model": "sonar-pro",
        "messages": MESSAGES,
        "stream": False,
    }


def test_a_streamed_request_asks_for_server_sent_events():
    request = provider.build_request(DEPLOYMENT, {"messages": MESSAGES, "stream": True}, True)

    assert orjson.loads(request.body)["stream"] is True
    assert request.headers["Accept"] == "text/event-stream"


def test_a_keyless_endpoint_sends_no_authorization():
    local = Endpoint("fake", "perplexity", "http://127.0.0.1:9000", api_key="")

    request = provider.build_request(Deployment("fake", "perplexity", local, "sonar"), {}, False)

    assert request.url == "http://127.0.0.1:9000/chat/completions"
    assert "Authorization" not in request.headers


def test_harmless_unsupported_parameters_are_dropped():
    body = sent({"model": "sonar", "messages": MESSAGES, **HARMLESS})

    assert body == {"model": "sonar-pro", "messages": MESSAGES, "stream": False}


def test_perplexity_parameters_and_supported_ones_pass_through():
    body = sent({"model": "sonar", "messages": MESSAGES, **PERPLEXITY_ONLY, **SUPPORTED})

    assert body == {
        "model": "sonar-pro",
        "messages": MESSAGES,
        "stream": False,
        **PERPLEXITY_ONLY,
        **SUPPORTED,
    }


def test_max_completion_tokens_is_sent_as_max_tokens():
    assert sent({"messages": MESSAGES, "max_completion_tokens": 200})["max_tokens"] == 200
    assert "max_completion_tokens" not in sent({"max_completion_tokens": 200})


def test_an_explicit_max_tokens_wins_over_max_completion_tokens():
    assert sent({"max_tokens": 100, "max_completion_tokens": 200})["max_tokens"] == 100


def test_a_developer_message_is_sent_as_a_system_message_and_the_client_body_is_kept():
    messages = [{"role": "developer", "content": "Be terse."}, *MESSAGES]
    body = {"messages": messages, "seed": 1}

    assert sent(body)["messages"] == [{"role": "system", "content": "Be terse."}, *MESSAGES]
    assert body == {"messages": messages, "seed": 1}
    assert messages[0]["role"] == "developer"


# --- parse_response -------------------------------------------------------------------------


def test_the_citations_answer_becomes_an_openai_completion_keeping_the_citations():
    answer, usage = provider.parse_response(fixture("citations.json"), "perplexity-sonar")

    assert answer == {
        "id": "chatcmpl-702738a1-c1e0-4a7f-b9ab-0f6fe1b13514",
        "object": "chat.completion",
        "created": 1770768226,
        "model": "perplexity-sonar",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The most recent estimates ... [2][3][5]",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 251,
            "total_tokens": 261,
            "search_context_size": "low",
        },
        "citations": [
            "https://populationstat.com/united-states/san-francisco",
            "https://en.wikipedia.org/wiki/San_Francisco",
        ],
    }
    assert usage == Usage(prompt_tokens=10, completion_tokens=251, search_context_size="low")


def test_the_2026_answer_keeps_search_results_and_drops_perplexitys_own_cost():
    recorded = fixture_json("usage_with_cost.json")

    answer, usage = provider.parse_response(fixture("usage_with_cost.json"), "sonar")

    assert answer["id"] == "chatcmpl-3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert answer["search_results"] == recorded["search_results"]
    assert answer["citations"] == recorded["citations"]
    assert answer["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 1,
        "total_tokens": 7,
        "search_context_size": "low",
    }
    assert answer["choices"][0]["message"]["content"] == "OK"
    assert "delta" not in answer["choices"][0]
    assert usage == Usage(prompt_tokens=6, completion_tokens=1, search_context_size="low")


def test_images_related_questions_and_videos_are_kept():
    recorded = fixture_json("citations.json")
    extras = {
        "images": [{"image_url": "https://example.org/sf.jpg", "origin_url": "https://e.org"}],
        "related_questions": ["What is the population of Oakland?"],
        "videos": [{"url": "https://example.org/v"}],
    }

    answer, _ = provider.parse_response(orjson.dumps({**recorded, **extras}), "sonar")

    assert {key: answer[key] for key in extras} == extras


def test_reasoning_tokens_and_search_counts_stay_in_the_usage():
    recorded = fixture_json("usage_with_cost.json")
    recorded["usage"] |= {"reasoning_tokens": 40, "citation_tokens": 900, "num_search_queries": 3}

    answer, _ = provider.parse_response(orjson.dumps(recorded), "sonar-deep-research")

    assert answer["usage"]["citation_tokens"] == 900
    assert answer["usage"]["num_search_queries"] == 3
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}
    assert "cost" not in answer["usage"]


def test_the_size_the_answer_reports_wins_over_the_one_requested():
    recorded = fixture_json("usage_with_cost.json")
    recorded["usage"]["search_context_size"] = "high"

    _, usage = provider.parse_response(orjson.dumps(recorded), "sonar", search_context_size="low")

    assert usage.search_context_size == "high"


@pytest.mark.parametrize(
    ("requested", "billed"), [("medium", "medium"), (None, "low"), ("huge", "low")]
)
def test_without_a_reported_size_the_requested_one_is_billed_else_low(requested, billed):
    _, usage = provider.parse_response(
        fixture("citations.json"), "sonar", search_context_size=requested
    )

    assert usage.search_context_size == billed


def test_the_requested_size_is_read_from_web_search_options():
    assert requested_search_context_size(PERPLEXITY_ONLY) == "high"
    assert requested_search_context_size({"web_search_options": {}}) is None
    assert requested_search_context_size({"web_search_options": "high"}) is None
    assert requested_search_context_size({}) is None


def test_the_billed_size_picks_the_request_fee():
    price = ModelPrice(
        input_usd_per_mtok=Decimal(1),
        output_usd_per_mtok=Decimal(1),
        request_fee_low_usd=Decimal("0.005"),
        request_fee_medium_usd=Decimal("0.008"),
        request_fee_high_usd=Decimal("0.012"),
    )
    _, usage = provider.parse_response(
        fixture("citations.json"), "sonar", search_context_size="medium"
    )

    assert cost_usd(price, usage) == Decimal("0.008") + Decimal(261) / 1_000_000


def test_an_id_that_already_has_the_prefix_keeps_it_once():
    recorded = {**fixture_json("citations.json"), "id": "chatcmpl-abc"}

    assert provider.parse_response(orjson.dumps(recorded), "sonar")[0]["id"] == "chatcmpl-abc"


def test_an_answer_without_an_id_gets_a_chat_completion_id():
    recorded = {k: v for k, v in fixture_json("citations.json").items() if k != "id"}

    answer_id = provider.parse_response(orjson.dumps(recorded), "sonar")[0]["id"]

    assert answer_id.startswith("chatcmpl-") and len(answer_id) > len("chatcmpl-")


@pytest.mark.parametrize("raw", [b"[]", b'{"id": "x"}', b'"ok"'])
def test_an_answer_that_is_not_a_completion_is_unreadable(raw):
    with pytest.raises(ValueError):
        provider.parse_response(raw, "sonar")


# --- streams --------------------------------------------------------------------------------

STREAM_2026 = fixture("stream_2026_done_object.sse")
STREAM_2025 = fixture("stream_2025_message_delta.sse")
RECORDED_2025 = [orjson.loads(line[6:]) for line in STREAM_2025.split(b"\n\n") if line]


def run(
    pieces: list[bytes], include_usage: bool = False, model: str = "perplexity-sonar", **extra
) -> tuple[list[dict], StreamState, int]:
    """Feed ``pieces`` as they arrive, then end the body. Returns the forwarded chunks, the
    state, and how many of them were forwarded before the body ended."""
    state = StreamState(include_usage=include_usage, model=model, extra=dict(extra))
    events: list[bytes] = []
    for piece in pieces:
        events += provider.translate_stream(piece, state)
    before_end = len(client_events(events, state))
    events += provider.finish_stream(state)
    events = client_events(events, state)
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        assert b"\n" not in event[:-2]
    return [orjson.loads(event[6:]) for event in events], state, before_end


def envelope(id_: str, created: int, **fields) -> dict:
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": "perplexity-sonar",
        **fields,
    }


def delta(content: str, first: bool = False) -> list[dict]:
    text = {"role": "assistant", "content": content} if first else {"content": content}
    return [{"index": 0, "delta": text, "logprobs": None, "finish_reason": None}]


FINISH = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
ID_2026 = "chatcmpl-5f0c8b1e-7a3d-4c52-9e1b-2d6f4a8c0b17"
ID_2025 = "chatcmpl-b8e3a6f2-41c9-4d0e-a7c5-93f1e2d4b6a8"
USAGE_CHUNK_2026 = envelope(
    ID_2026,
    1788310800,
    choices=[],
    usage={
        "prompt_tokens": 6,
        "completion_tokens": 1,
        "total_tokens": 7,
        "search_context_size": "low",
    },
)
CHUNKS_2025 = [
    envelope(ID_2025, 1740000000, choices=delta("Paris", first=True)),
    envelope(ID_2025, 1740000000, choices=delta(" is the")),
    envelope(ID_2025, 1740000000, choices=delta(" capital of France [1][2].")),
    envelope(
        ID_2025,
        1740000000,
        choices=FINISH,
        citations=RECORDED_2025[-1]["citations"],
        search_results=RECORDED_2025[-1]["search_results"],
    ),
]
USAGE_CHUNK_2025 = envelope(
    ID_2025,
    1740000000,
    choices=[],
    usage={
        "prompt_tokens": 8,
        "completion_tokens": 8,
        "total_tokens": 16,
        "search_context_size": "low",
    },
)


def test_the_2026_stream_becomes_openai_chunks_and_ends_at_the_done_object():
    chunks, state, before_end = run([STREAM_2026])

    assert chunks == [
        envelope(ID_2026, 1788310800, choices=delta("OK", first=True)),
        envelope(ID_2026, 1788310800, choices=FINISH),
    ]
    assert before_end == 2  # ended by chat.completion.done, not by the end of the body
    assert state.done and state.error is None
    assert state.finish_reason == "stop"
    assert state.usage == Usage(prompt_tokens=6, completion_tokens=1, search_context_size="low")
    assert state.first == chunks[0]
    assert state.chunks == 3  # with the usage chunk, forwarded only when asked for


def test_the_2026_stream_ends_with_one_usage_chunk_when_the_client_asked():
    chunks, state, _ = run([STREAM_2026], include_usage=True)

    assert chunks[-1] == USAGE_CHUNK_2026
    assert [c for c in chunks if "usage" in c] == [USAGE_CHUNK_2026]
    assert state.chunks == 3


def test_the_2025_stream_becomes_deltas_and_its_finish_chunk_carries_the_sources():
    chunks, state, before_end = run([STREAM_2025])

    assert chunks == CHUNKS_2025
    assert before_end == 3  # no end marker: the finish chunk waits for the end of the body
    assert state.done
    assert state.usage == Usage(prompt_tokens=8, completion_tokens=8, search_context_size="low")


def test_no_forwarded_chunk_has_a_message_or_perplexitys_object_names():
    chunks, _, _ = run([STREAM_2025 + STREAM_2026.replace(b"5f0c", b"b8e3")], True)

    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert all("message" not in choice for c in chunks for choice in c["choices"])
    assert [c for c in chunks if "role" in str(c)] == [chunks[0]]


def test_the_2025_stream_ends_with_one_usage_chunk_of_the_last_totals():
    chunks, _, _ = run([STREAM_2025], include_usage=True)

    assert chunks == [*CHUNKS_2025, USAGE_CHUNK_2025]


def test_cumulative_usage_is_taken_once_from_the_last_chunk_not_summed():
    chunks, state, _ = run([STREAM_2025], include_usage=True)

    assert [c["usage"] for c in chunks if "usage" in c] == [USAGE_CHUNK_2025["usage"]]
    assert state.usage is not None
    assert state.usage.completion_tokens == RECORDED_2025[-1]["usage"]["completion_tokens"]
    assert state.usage == Usage(prompt_tokens=8, completion_tokens=8, search_context_size="low")


def test_no_usage_chunk_is_forwarded_when_the_client_did_not_ask():
    chunks, _, _ = run([STREAM_2025, STREAM_2026])

    assert all("usage" not in c for c in chunks)


def test_a_done_marker_is_tolerated_and_ends_the_stream_there():
    late = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"late"}}]}\n\n'

    chunks, state, before_end = run([STREAM_2025 + b"data: [DONE]\n\n" + late])

    assert chunks == CHUNKS_2025
    assert before_end == 4 and state.done


def test_a_done_marker_after_the_done_object_changes_nothing():
    assert run([STREAM_2026 + b"data: [DONE]\n\n"])[0] == run([STREAM_2026])[0]


def test_a_cut_stream_is_not_done_and_has_no_finish_chunk():
    cut = b"\n\n".join(STREAM_2025.split(b"\n\n")[:2]) + b"\n\n"

    chunks, state, _ = run([cut])

    assert chunks == CHUNKS_2025[:2]
    assert not state.done and state.error is None
    # What Perplexity counted so far is billed, with its search fee.
    assert state.usage == Usage(prompt_tokens=8, completion_tokens=3, search_context_size="low")


def test_a_stream_cut_inside_an_event_is_not_done_and_does_not_raise():
    cut = STREAM_2025[: STREAM_2025.rindex(b'"search_results"')]

    chunks, state, _ = run([cut])

    assert chunks == CHUNKS_2025[:3]
    assert not state.done


def test_an_empty_body_is_not_done():
    chunks, state, _ = run([b""])

    assert chunks == [] and not state.done and state.first is None


def test_a_last_event_without_a_blank_line_is_read_at_the_end_of_the_body():
    chunks, state, _ = run([STREAM_2025.rstrip(b"\n")])

    assert chunks == CHUNKS_2025 and state.done


def test_crlf_comments_and_data_without_a_space_give_the_same_chunks():
    noisy = b": keep-alive\r\n\r\n" + STREAM_2025.replace(b"\n", b"\r\n").replace(
        b"data: ", b"data:"
    )

    assert run([noisy])[0] == CHUNKS_2025


def test_the_client_model_is_echoed_and_the_upstream_one_is_the_fallback():
    assert {c["model"] for c in run([STREAM_2026], model="my-alias")[0]} == {"my-alias"}
    assert {c["model"] for c in run([STREAM_2026], model="")[0]} == {"sonar"}


def test_without_a_reported_size_the_requested_one_is_billed_in_a_stream():
    no_size = STREAM_2026.replace(b'"search_context_size":"low",', b"")

    chunks, state, _ = run([no_size], include_usage=True, search_context_size="high")

    assert state.usage is not None
    assert state.usage.search_context_size == "high"
    assert chunks[-1]["usage"]["search_context_size"] == "high"
    plain_usage = run([no_size])[1].usage
    assert plain_usage is not None
    assert plain_usage.search_context_size == "low"


def test_an_error_mid_stream_sets_an_openai_error_event():
    error = b'data: {"error":{"message":"Internal error","type":"server_error","code":500}}\n\n'
    first = STREAM_2025.split(b"\n\n")[0] + b"\n\n"

    chunks, state, _ = run([first + error + STREAM_2025])

    assert chunks == CHUNKS_2025[:1]
    assert not state.done
    assert state.error is not None
    assert orjson.loads(state.error[6:]) == {
        "error": {"message": "Internal error", "type": "server_error", "code": "500"}
    }
    assert state.error.endswith(b"\n\n")


# --- any chunking gives the same result -------------------------------------------------------


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def outcome(pieces: list[bytes], include_usage: bool) -> tuple:
    chunks, state, _ = run(pieces, include_usage)
    return chunks, state.usage, state.done, state.chunks, state.first, state.finish_reason


STREAMS = [STREAM_2026, STREAM_2025, STREAM_2025.replace(b"\n", b"\r\n")]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("stream", STREAMS, ids=["2026", "2025", "2025-crlf"])
def test_a_stream_split_at_any_byte_gives_the_same_chunks(stream, include_usage):
    whole = outcome([stream], include_usage)

    for cut in range(1, len(stream)):
        assert outcome(split_at(stream, [cut]), include_usage) == whole, cut


@pytest.mark.parametrize("stream", STREAMS, ids=["2026", "2025", "2025-crlf"])
def test_a_stream_split_at_random_gives_the_same_chunks(stream):
    whole = outcome([stream], True)

    for seed in range(200):
        rng = random.Random(seed)
        cuts = rng.sample(range(1, len(stream)), rng.randint(1, 60))
        assert outcome(split_at(stream, cuts), True) == whole, seed


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_chunks():
    pieces = [STREAM_2025[i : i + 1] for i in range(len(STREAM_2025))]

    assert outcome(pieces, True) == outcome([STREAM_2025], True)


# --- error_message --------------------------------------------------------------------------


def test_a_json_error_gives_its_message():
    message = provider.error_message(400, fixture("error_invalid_model.json"))

    assert message == fixture_json("error_invalid_model.json")["error"]["message"]


def test_the_json_object_refusal_gives_its_message():
    message = provider.error_message(400, fixture("error_json_object.json"))

    assert message.startswith('["At body -> response_format -> ResponseFormatText')


def test_an_html_401_gives_its_title_and_no_html():
    assert provider.error_message(401, fixture("error_401.html")) == "401 Authorization Required"


def test_an_html_page_without_a_title_gives_its_text_on_one_line():
    page = b"<html><body>\n<p>Bad   gateway</p>\n<hr>nginx</body></html>"

    assert provider.error_message(502, page) == "Bad gateway nginx"


@pytest.mark.parametrize("raw", [b"", b"   ", b"{}", b"null"])
def test_an_empty_error_body_gives_the_status(raw):
    assert provider.error_message(503, raw) == "HTTP 503"


def test_a_long_plain_error_is_shortened_to_one_line():
    message = provider.error_message(500, b"upstream\nexploded " * 100)

    assert len(message) <= 300 and "\n" not in message


def test_a_validation_detail_list_gives_its_messages():
    raw = b'{"detail":[{"loc":["body","model"],"msg":"Field required"},{"msg":"Bad top_k"}]}'

    assert provider.error_message(422, raw) == "Field required; Bad top_k"


def test_an_api_key_in_an_error_is_masked():
    raw = b'{"error":{"message":"Invalid API key pplx-1a2b3c4d5e6f7g","type":"auth","code":401}}'

    assert provider.error_message(401, raw) == "Invalid API key pplx-***"
