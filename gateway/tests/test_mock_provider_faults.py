"""Failure injection and statistics, checked on each of the mock provider's four protocols."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from gateway.mock_provider import MockServer
from gateway.tests.mock_wire import (
    CHUNKS,
    PROTOCOLS,
    error_of,
    pplx,
    received_before_cut,
    request_for,
    send,
    sse_frames,
)

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
