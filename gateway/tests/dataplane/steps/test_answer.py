"""Step 7, the answer (gateway/dataplane/steps/answer.py): the one error envelope, a JSON
completion with the ``aqta`` object, and a stream relayed chunk by chunk, its end carrying
``aqta`` before ``[DONE]`` (or an error event when it was cut). Upstream answers come from a
real local HTTP server in the provider's wire format, opened by the call_upstream step."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from accounts.key_records import KeyRecord
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane.call import Call, call_new
from gateway.dataplane.steps import answer
from gateway.dataplane.steps.call_upstream import call_upstream
from gateway.models import TraceStatus
from gateway.tests.dataplane.steps import provider as wire
from gateway.tests.dataplane.steps.fakes import Sent, catalog, key_record, routed, run, runtime
from gateway.tests.dataplane.steps.provider import ANTHROPIC_PATH, OPENAI_PATH, Reply

# 10 prompt and 5 completion tokens at 1 and 2 USD per million, 0.9 EUR per USD.
COST = Decimal("0.000018")


def answered(
    path: str, reply: Reply, record: KeyRecord | None = None, **fields: Any
) -> tuple[Sent, Call, Any]:
    """The step's answer to one call: what it sent, the call, and what it returned (the
    body for the cache, None for a stream) or the AqtaError it raised."""
    sent = Sent()
    out: list[Any] = []

    async def scenario() -> None:
        async with wire.serving() as server:
            server.script(path, reply)
            found = catalog(server.url, server.url)
            async with runtime(found) as rt:
                call = routed(found, record or key_record(), **fields)
                out.append(call)
                opened = await call_upstream(rt, call)
                try:
                    if call.stream:
                        await answer.stream(found, sent, call, opened)
                        out.append(None)
                    else:
                        out.append(await answer.completion(found, sent, call, opened))
                except AqtaError as error:
                    out.append(error)

    run(scenario)
    return sent, out[0], out[1]


def errored(call: Call, failure: AqtaError) -> Sent:
    sent = Sent()

    async def scenario() -> None:
        await answer.error(sent, call, failure)

    run(scenario)
    return sent


def test_an_error_before_the_key_is_known_is_the_bare_envelope():
    call = call_new()
    sent = errored(call, AqtaError("Invalid API key provided.", code=ErrorCode.INVALID_API_KEY))
    assert sent.status == 401
    assert sent.json() == {
        "error": {
            "message": "Invalid API key provided.",
            "type": "authentication_error",
            "code": "invalid_api_key",
        }
    }
    assert sent.headers == {
        "content-type": "application/json",
        "content-length": str(len(sent.body)),
        "x-aqta-trace-id": call.trace_id,
        "x-request-id": call.trace_id,
    }
    assert (call.http_status, call.error_code) == (401, ErrorCode.INVALID_API_KEY)


def test_an_error_for_a_known_key_carries_aqta_limits_and_retry_after():
    call = call_new()
    call.record = key_record(rate_limit_per_minute=60)
    call.status, call.deployment = TraceStatus.BLOCKED, "openai"
    failure = AqtaError("Slow down.", code=ErrorCode.RATE_LIMIT_EXCEEDED, retry_after=7)
    sent = errored(call, failure)
    assert sent.status == 429
    assert sent.json() == {
        "error": {
            "message": "Slow down.",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "retry_after": 7,
        },
        "aqta": {
            "trace_id": call.trace_id,
            "cost_eur": 0.0,
            "provider": "openai",
            "status": "blocked",
            "cached": False,
            "loop_detected": False,
        },
    }
    headers = sent.headers
    assert headers["retry-after"] == "7"
    assert (headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"]) == ("60", "60")
    assert (call.http_status, call.error_code) == (429, ErrorCode.RATE_LIMIT_EXCEEDED)


def test_an_error_about_a_parameter_names_it():
    failure = AqtaError(
        "max_tokens is too large.", code=ErrorCode.INVALID_PARAMETER, param="max_tokens"
    )
    error = errored(call_new(), failure).json()["error"]
    assert (error["param"], error["type"], error["code"]) == (
        "max_tokens",
        "invalid_request_error",
        "invalid_parameter",
    )


def test_a_completion_is_the_providers_answer_with_the_aqta_object():
    sent, call, cached = answered(OPENAI_PATH, wire.openai_completion())
    upstream = orjson.loads(wire.openai_completion().body)
    assert sent.status == 200
    assert sent.headers["x-aqta-trace-id"] == call.trace_id
    body = sent.json()
    assert body.pop("aqta") == {
        "trace_id": call.trace_id,
        "cost_eur": float(COST),
        "provider": "openai",
        "status": "passed",
        "cached": False,
        "loop_detected": False,
    }
    assert body == upstream
    assert cached == upstream  # what the cache keeps has no aqta object
    assert call.usage == Usage(prompt_tokens=10, completion_tokens=5)
    assert call.cost_eur == COST
    assert call.ttfb_ms is not None and call.completion is None


def test_an_anthropic_answer_is_translated_to_a_chat_completion():
    sent, call, _ = answered(ANTHROPIC_PATH, wire.anthropic_message(), model="claude-sonnet")
    body = sent.json()
    assert (body["id"], body["object"], body["model"]) == (
        "chatcmpl-msg_01",
        "chat.completion",
        "claude-sonnet",
    )
    [choice] = body["choices"]
    assert choice["message"]["content"] == "Hi there"
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 10 and body["usage"]["completion_tokens"] == 5
    assert body["aqta"]["provider"] == "anthropic"
    assert call.cost_eur == COST


def test_with_content_logging_the_answers_text_is_kept():
    _, call, _ = answered(
        OPENAI_PATH, wire.openai_completion("Secret"), key_record(content_logging=True)
    )
    assert call.completion is not None
    assert orjson.loads(call.completion)[0]["message"]["content"] == "Secret"


def test_an_unreadable_answer_is_a_provider_error_and_nothing_is_sent():
    reply = Reply(body=b"<html>gateway timeout</html>", headers={"Content-Type": "text/html"})
    sent, _, got = answered(OPENAI_PATH, reply)
    assert isinstance(got, AqtaError)
    assert (got.code, got.status) == (ErrorCode.PROVIDER_ERROR, 502)
    assert got.message == "Upstream provider error: openai answered 200: unreadable answer"
    assert sent.messages == []


def chunks(sent: Sent) -> list[Any]:
    return [e.decode() if e == b"[DONE]" else orjson.loads(e) for e in sent.events()]


def test_a_stream_is_relayed_in_order_and_ends_with_aqta_then_done():
    sent, call, _ = answered(OPENAI_PATH, wire.openai_stream("Hi", " there"), stream=True)
    assert sent.status == 200
    assert sent.headers["content-type"] == "text/event-stream"
    assert sent.headers["cache-control"] == "no-cache"
    events = chunks(sent)
    assert events[-1] == "[DONE]"
    role, first, second, finish = events[:-1]  # no usage chunk: the client did not ask
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [first["choices"][0]["delta"], second["choices"][0]["delta"]] == [
        {"content": "Hi"},
        {"content": " there"},
    ]
    assert "aqta" not in role and "aqta" not in first
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["aqta"]["trace_id"] == call.trace_id
    assert finish["aqta"]["cost_eur"] == float(call.cost_eur) > 0
    assert call.usage == Usage(prompt_tokens=10, completion_tokens=2)
    assert call.http_status == 200 and call.response_started


def test_a_stream_asked_with_usage_ends_with_the_usage_chunk_carrying_aqta():
    sent, call, _ = answered(
        OPENAI_PATH,
        wire.openai_stream("Hi"),
        stream=True,
        stream_options={"include_usage": True},
    )
    *_, finish, usage, done = chunks(sent)
    assert done == "[DONE]"
    assert finish["choices"][0]["finish_reason"] == "stop" and "aqta" in finish
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 10 and usage["usage"]["completion_tokens"] == 1
    assert usage["aqta"] == finish["aqta"]
    assert usage["aqta"]["trace_id"] == call.trace_id


def test_an_anthropic_stream_is_translated_chunk_by_chunk():
    sent, call, _ = answered(
        ANTHROPIC_PATH, wire.anthropic_stream("Hi", " there"), model="claude-sonnet", stream=True
    )
    events = chunks(sent)
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "".join(d for d in deltas if d) == "Hi there"
    assert {e["object"] for e in events[:-1]} == {"chat.completion.chunk"}
    assert {e["model"] for e in events[:-1]} == {"claude-sonnet"}
    finish = events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["aqta"]["provider"] == "anthropic"
    assert call.usage.prompt_tokens == 10 and call.usage.completion_tokens == 5


def test_a_stream_cut_short_ends_with_an_error_event_never_done():
    record = key_record(content_logging=True)
    sent, call, _ = answered(
        OPENAI_PATH, wire.openai_stream("Hi", " the", done=False), record, stream=True
    )
    events = chunks(sent)
    assert "[DONE]" not in events
    assert [e["choices"][0]["delta"].get("content") for e in events[:-1]] == ["", "Hi", " the"]
    assert events[-1]["error"]["code"] == "provider_error"
    assert events[-1]["error"]["message"] == (
        "Upstream provider error: openai could not be reached: "
        "the stream ended before it was complete"
    )
    assert (call.http_status, call.error_code) == (502, ErrorCode.PROVIDER_ERROR)
    # Billed for what was seen: about one token per content chunk after the role chunk.
    assert call.usage == Usage(prompt_tokens=len(call.raw) // 4, completion_tokens=2)
    assert call.completion == "Hi the"


@pytest.mark.parametrize("size", ["low", "high"])
def test_a_requested_search_context_size_is_priced(size):
    _, call, _ = answered(
        OPENAI_PATH, wire.openai_completion(), web_search_options={"search_context_size": size}
    )
    assert call.usage.search_context_size == size
