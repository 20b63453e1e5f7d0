"""The mock OpenAI provider, driven by the real ``openai`` SDK (no database, no Django models)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from gateway.mock_provider import MockConfig, MockServer

CHUNKS = 5
REPLY = "This is a mock reply."
# 11 chars: 11 // 4 + 4 = 6 prompt tokens
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockServer]:
    with MockServer(MockConfig(chunks=CHUNKS)) as server:
        yield server


@pytest.fixture
def mock(mock_server: MockServer) -> MockServer:
    mock_server.reset()
    return mock_server


@pytest.fixture
def client(mock: MockServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def raw_post(mock: MockServer, body: Any, **headers: str) -> httpx.Response:
    headers = {"Authorization": "Bearer x", **headers}
    return httpx.post(f"{mock.base_url}/chat/completions", json=body, headers=headers)


def sse_payloads(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- answers --------------------------------------------------------------------------------------


def test_it_answers_a_plain_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    completion = raw.parse()

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o"
    assert completion.system_fingerprint is not None
    assert completion.system_fingerprint.startswith("fp_")
    assert completion.service_tier == "default"
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.message.refusal is None
    assert choice.message.annotations == []
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 6
    assert usage.completion_tokens == CHUNKS
    assert usage.total_tokens == 6 + CHUNKS
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["openai-processing-ms"].isdigit()
    assert raw.headers["x-ratelimit-remaining-requests"]


def test_it_answers_every_choice_when_n_is_2(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=HELLO, n=2)

    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content == REPLY for c in completion.choices)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2 * CHUNKS


def test_it_stops_at_max_tokens_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, max_completion_tokens=2
    )

    assert completion.choices[0].message.content == "This is"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


def test_the_prompt_estimate_counts_text_parts_and_every_message(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": [{"type": "text", "text": "y" * 8}]},
    ]

    completion = client.chat.completions.create(model="gpt-4o", messages=messages)

    assert completion.usage is not None
    assert completion.usage.prompt_tokens == (10 + 4) + (2 + 4)


def test_it_answers_on_the_path_without_v1(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.url}/chat/completions",
        json={"model": "gpt-4o", "messages": HELLO},
        headers={"Authorization": "Bearer x"},
    )

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == REPLY


# --- streaming ------------------------------------------------------------------------------------


def test_a_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))

    assert len(chunks) == 1 + CHUNKS + 1
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    first, *pieces, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    contents = [p.choices[0].delta.content for p in pieces]
    assert None not in contents
    assert "".join(c for c in contents if c is not None) == REPLY
    assert all(p.choices[0].delta.role is None for p in pieces)
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert all(c.usage is None for c in chunks)


def test_a_raw_stream_is_sse_frames_ending_with_done(mock: MockServer) -> None:
    response = raw_post(mock, {"model": "gpt-4o", "messages": HELLO, "stream": True})

    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    frames = [json.loads(p) for p in payloads[:-1]]
    assert all("usage" not in frame for frame in frames)
    assert frames[-1]["choices"][0]["delta"] == {}


def test_a_stream_with_include_usage_ends_with_a_usage_chunk(mock: MockServer) -> None:
    body = {
        "model": "gpt-4o",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    payloads = sse_payloads(raw_post(mock, body).text)

    assert payloads[-1] == "[DONE]"
    *chunks, usage_chunk = [json.loads(p) for p in payloads[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    content_chunks = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert usage_chunk["usage"]["completion_tokens"] == len(content_chunks) == CHUNKS
    assert usage_chunk["usage"]["prompt_tokens"] == 6
    assert usage_chunk["usage"]["total_tokens"] == 6 + CHUNKS


def test_the_sdk_reads_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
            n=2,
        )
    )

    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2 * CHUNKS
    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert texts == {0: REPLY, 1: REPLY}


def test_stream_options_without_stream_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=HELLO, stream_options={"include_usage": True}
        )

    assert caught.value.param == "stream_options"


# --- tools and structured output ------------------------------------------------------------------


def test_it_calls_the_first_tool_when_the_user_spoke_last(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, tools=[WEATHER_TOOL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "celsius"}


def test_a_streamed_tool_call_sends_the_name_first_then_argument_fragments(
    client: openai.OpenAI,
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )

    first, *fragments, last = chunks
    assert first.choices[0].delta.tool_calls is not None
    [head] = first.choices[0].delta.tool_calls
    assert head.id is not None
    assert head.id.startswith("call_")
    assert head.function is not None
    assert head.function.name == "get_weather"
    assert head.function.arguments == ""
    assert len(fragments) > 1
    arguments = ""
    for fragment in fragments:
        calls = fragment.choices[0].delta.tool_calls
        assert calls is not None
        assert calls[0].id is None
        assert calls[0].function is not None
        assert calls[0].function.arguments is not None
        arguments += calls[0].function.arguments
    assert json.loads(arguments) == {"city": "mock", "unit": "celsius"}
    assert last.choices[0].finish_reason == "tool_calls"


def test_it_answers_with_text_after_a_tool_result(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]

    completion = client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
    )

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == REPLY


def test_tool_choice_none_gets_a_text_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none"
    )

    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content == REPLY


def test_a_json_schema_reply_fills_the_schema_properties(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"type": "object", "properties": {"zip": {"type": "string"}}},
            "ok": {"type": "boolean"},
        },
        "required": ["name", "age", "tags", "address", "ok"],
        "additionalProperties": False,
    }

    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )

    assert completion.choices[0].message.content is not None
    assert json.loads(completion.choices[0].message.content) == {
        "name": "mock",
        "age": 1,
        "tags": ["mock"],
        "address": {"zip": "mock"},
        "ok": True,
    }


def test_json_object_mode_answers_a_json_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Reply in JSON please"}],
        response_format={"type": "json_object"},
    )

    assert completion.choices[0].message.content is not None
    assert json.loads(completion.choices[0].message.content) == {"result": "mock"}


def test_json_object_mode_needs_the_word_json_in_the_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=HELLO, response_format={"type": "json_object"}
        )

    assert caught.value.param == "messages"


# --- request errors -------------------------------------------------------------------------------


def test_it_rejects_a_request_without_a_key(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.base_url}/chat/completions", json={"model": "gpt-4o", "messages": HELLO}
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"].startswith("Incorrect API key provided")
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["code"] == "invalid_api_key"


def test_a_configured_key_rejects_any_other_key() -> None:
    with (
        MockServer(MockConfig(api_key="sk-right")) as mock,
        openai.OpenAI(base_url=mock.base_url, api_key="sk-wrong", max_retries=0) as wrong,
        openai.OpenAI(base_url=mock.base_url, api_key="sk-right", max_retries=0) as right,
    ):
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert caught.value.code == "invalid_api_key"
        assert right.chat.completions.create(model="gpt-4o", messages=HELLO).choices


def test_malformed_json_is_a_bad_request(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.base_url}/chat/completions",
        content=b'{"model": "gpt-4o", "messages": [',
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"content": "hi"}]}, "messages.[0].role"),
        ({"model": "gpt-4o", "messages": HELLO, "n": 0}, "n"),
    ],
)
def test_an_invalid_request_names_the_param(
    mock: MockServer, body: dict[str, Any], param: str
) -> None:
    response = raw_post(mock, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


# --- scripted failures ----------------------------------------------------------------------------


def test_a_scripted_500_raises_internal_server_error(
    client: openai.OpenAI, mock: MockServer
) -> None:
    mock.script({"status": 500})

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")


def test_a_scripted_503_raises_internal_server_error(
    client: openai.OpenAI, mock: MockServer
) -> None:
    mock.script({"status": 503})

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)

    assert caught.value.status_code == 503


def test_a_scripted_429_raises_rate_limit_error_with_retry_after(
    client: openai.OpenAI, mock: MockServer
) -> None:
    mock.script({"status": 429, "retry_after": 1})

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"


def test_a_scripted_status_can_carry_its_own_body_and_headers(
    client: openai.OpenAI, mock: MockServer
) -> None:
    body = {
        "error": {
            "message": "Input tokens exceed the configured limit.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    mock.script({"status": 400, "body": body, "headers": {"x-should-retry": "false"}})

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_script_steps_are_consumed_in_order(client: openai.OpenAI, mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.url}/_mock/script", json={"steps": [{"status": 500}, {"status": 429}]}
    )
    assert response.json() == {"queued": 2, "pending": 2}

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices


def test_deleting_the_script_clears_it(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"status": 500}, {"status": 500})

    httpx.delete(f"{mock.url}/_mock/script")

    assert mock.stats()["script_pending"] == 0
    assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices


def test_an_unknown_script_step_is_rejected(mock: MockServer) -> None:
    response = httpx.post(f"{mock.url}/_mock/script", json={"steps": [{"stauts": 500}]})

    assert response.status_code == 400
    assert "stauts" in response.json()["error"]["message"]
    assert mock.stats()["script_pending"] == 0


def test_a_reset_step_drops_the_connection(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"reset": True})

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices


def test_a_cut_non_stream_request_gets_no_response(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"cut_after_chunks": 0})

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)


def test_a_cut_stream_stops_after_the_given_chunks(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"cut_after_chunks": 3})
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True):
            received.append(chunk)

    assert len(received) == 3
    stats = mock.stats()
    assert stats["streams_started"] == 1
    assert stats["streams_completed"] == 0
    assert stats["client_disconnects"] == 0  # the mock hung up, not the client


def test_an_error_event_mid_stream_raises_api_error(
    client: openai.OpenAI, mock: MockServer
) -> None:
    mock.script({"error_event_after_chunks": 2})
    received = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True):
            received.append(chunk)

    assert len(received) == 2
    assert caught.value.type == "server_error"
    assert not isinstance(caught.value, openai.APIConnectionError)


def test_the_raw_error_event_is_the_last_frame_and_there_is_no_done(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 1})

    payloads = sse_payloads(raw_post(mock, {"model": "m", "messages": HELLO, "stream": True}).text)

    assert len(payloads) == 2
    assert json.loads(payloads[-1])["error"]["type"] == "server_error"


def test_a_delay_step_holds_back_the_headers(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"delay_ms": 300})
    started = time.monotonic()

    client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert time.monotonic() - started >= 0.3


def test_a_chunk_delay_step_paces_the_stream(client: openai.OpenAI, mock: MockServer) -> None:
    mock.script({"chunk_delay_ms": 50})
    started = time.monotonic()

    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))

    assert len(chunks) == CHUNKS + 2
    assert time.monotonic() - started >= CHUNKS * 0.05


# --- directives -----------------------------------------------------------------------------------


def test_a_status_directive_fails_that_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi mock:status=503"}]
        )

    assert caught.value.status_code == 503


def test_a_cut_directive_cuts_the_stream(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "mock:cut_after_chunks=2 please"}
    ]
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
            received.append(chunk)

    assert len(received) == 2


def test_a_reset_directive_needs_no_value(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "mock:reset"}]
        )


def test_directives_only_count_in_the_last_user_message(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "mock:status=500"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "mock:chunks=3"},
    ]

    completion = client.chat.completions.create(model="gpt-4o", messages=messages)

    assert completion.choices[0].message.content == "This is a"


def test_an_unknown_directive_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "mock:explode=1"}]
        )

    assert "explode" in caught.value.message


# --- stats, disconnects, models -------------------------------------------------------------------


def test_stats_record_the_last_request_body(client: openai.OpenAI, mock: MockServer) -> None:
    list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    stats = httpx.get(f"{mock.url}/_mock/stats").json()
    assert stats["chat_requests"] == 1
    assert stats["streams_started"] == stats["streams_completed"] == 1
    assert stats["last_request"]["stream_options"] == {"include_usage": True}
    assert stats["last_request_headers"]["authorization"] == "Bearer x"


def test_it_counts_a_client_that_leaves_mid_stream(mock: MockServer) -> None:
    mock.script({"chunk_delay_ms": 100})
    body = {"model": "gpt-4o", "messages": HELLO, "stream": True}

    with (
        httpx.Client() as http,
        http.stream(
            "POST",
            f"{mock.base_url}/chat/completions",
            json=body,
            headers={"Authorization": "Bearer x"},
        ) as response,
    ):
        next(response.iter_bytes())

    assert wait_for(lambda: mock.stats()["client_disconnects"] == 1)
    stats = mock.stats()
    assert stats["streams_started"] == 1
    assert stats["streams_completed"] == 0
    assert stats["last_disconnect_at"] == pytest.approx(time.time(), abs=5)


def test_it_counts_a_client_that_times_out_during_the_delay(
    mock: MockServer,
) -> None:
    mock.script({"delay_ms": 3000})
    with (
        openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0, timeout=0.3) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert wait_for(lambda: mock.stats()["client_disconnects"] == 1, timeout=1.0)


def test_resetting_the_mock_zeroes_the_stats(client: openai.OpenAI, mock: MockServer) -> None:
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    mock.script({"status": 500})

    stats = httpx.post(f"{mock.url}/_mock/reset").json()

    assert stats["chat_requests"] == 0
    assert stats["last_request"] is None
    assert stats["script_pending"] == 0


def test_it_lists_the_fixed_models_and_every_model_seen(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="my-fine-tune", messages=HELLO)

    ids = [model.id for model in client.models.list()]

    assert ids[:4] == ["gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-3.5-turbo"]
    assert "my-fine-tune" in ids
    assert client.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_an_unknown_url_is_an_openai_404(mock: MockServer) -> None:
    response = httpx.get(f"{mock.base_url}/nope")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"


# --- as a process ---------------------------------------------------------------------------------


def test_it_runs_as_a_module_with_cli_flags() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project_root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.mock_provider", "--port", str(port), "--chunks", "3"],
        cwd=project_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=1
    )

    def answers() -> bool:
        try:
            return bool(client.chat.completions.create(model="m", messages=HELLO).choices)
        except openai.APIConnectionError:
            return False

    try:
        assert wait_for(answers, timeout=15), "the mock did not start"
        completion = client.chat.completions.create(model="m", messages=HELLO)
        assert completion.choices[0].message.content == "This is a"
    finally:
        client.close()
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/v1" in output
