"""Policies, failures and bookkeeping, through a live gateway process."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from gateway.models import GatewayEvent, Trace
from gateway.tests.conftest import wait_for


def _messages(text: str = "Say hello.") -> list[dict]:
    return [{"role": "user", "content": text}]


def _stats(gw) -> dict:
    stats: dict = httpx.get(gw.mock.url + "/_mock/stats").json()
    return stats


def test_the_rate_limit_answers_429_with_retry_after(gw, make_key):
    secret, _ = make_key(key_options={"rate_limit_per_minute": 2})
    client = gw.sdk(secret)
    for i in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages(f"q{i}"))

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages("q3"))

    error = limited.value
    assert error.code == "rate_limit_exceeded"
    assert isinstance(error.body, dict)
    assert 1 <= error.body["retry_after"] <= 60
    assert error.response.headers["retry-after"] == str(error.body["retry_after"])
    assert error.response.headers["x-ratelimit-remaining"] == "0"
    assert _stats(gw)["chat_requests"] == 2


def test_the_monthly_quota_answers_402_and_refusals_do_not_count(gw, make_key):
    secret, api_key = make_key(monthly_request_quota=3)
    client = gw.sdk(secret)
    for i in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages(f"q{i}"))
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=_messages("more"))
        assert refused.value.status_code == 402
        assert refused.value.code == "quota_exceeded"
    assert _stats(gw)["chat_requests"] == 3
    blocked = wait_for(lambda: Trace.objects.filter(api_key=api_key, status="blocked").count() == 2)
    assert blocked


def test_a_refused_call_is_traced_with_the_provider_of_the_model_it_asked_for(gw, make_key):
    secret, api_key = make_key(
        key_options={"allowed_models": ["gpt-4o-mini", "claude-3-haiku-20240307"]}
    )
    client = gw.sdk(secret)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=_messages())
    with pytest.raises(openai.BadRequestError):  # refused by the Anthropic adapter
        client.chat.completions.create(model="claude-3-haiku-20240307", messages=_messages(), n=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=_messages())

    traces = Trace.objects.filter(api_key=api_key)
    assert wait_for(lambda: traces.count() == 3)
    assert {(t.model, t.error_code, t.provider, t.status) for t in traces} == {
        ("gpt-4o", "model_not_allowed", "openai", "blocked"),
        ("claude-3-haiku-20240307", "unsupported_parameter", "anthropic", "blocked"),
        ("no-such-model", "model_not_found", "", "blocked"),  # no model, no provider
    }
    assert _stats(gw)["chat_requests"] == 0


def test_the_budget_guard_refuses_what_the_budget_cannot_cover(gw, make_key):
    # gpt-4o: a 1,000-token answer costs about EUR 0.0087; the budget covers none of it.
    secret, _ = make_key(monthly_budget_eur="0.001")
    with pytest.raises(openai.APIStatusError) as refused:
        gw.sdk(secret).chat.completions.create(
            model="gpt-4o", messages=_messages(), max_tokens=1000
        )
    assert refused.value.status_code == 402 and refused.value.code == "budget_exceeded"
    assert _stats(gw)["chat_requests"] == 0


def test_spend_is_settled_to_the_real_cost(gw, make_key):
    secret, api_key = make_key(monthly_budget_eur="0.01")
    client = gw.sdk(secret)
    # Each call reserves its worst case (max_tokens) but only costs what the mock used.
    for i in range(20):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=_messages(f"q{i}"), max_tokens=2000
        )
    traces = wait_for(lambda: list(Trace.objects.filter(api_key=api_key)) or None)
    assert traces and all(t.cost_eur < 0.0001 for t in traces)


def test_the_loop_guard_suppresses_a_repeated_request(gw, make_key):
    secret, _api_key = make_key()
    client = gw.sdk(secret)
    for _ in range(10):
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages("same"))

    with pytest.raises(openai.RateLimitError) as looped:
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages("same"))

    assert looped.value.code == "loop_detected"
    assert looped.value.body
    aqta = looped.value.response.json()["aqta"]
    assert aqta["status"] == "suppressed" and aqta["loop_detected"] is True
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    assert trace.status == "suppressed" and trace.policy == "loop_guard"
    assert trace.cost_prevented_eur > 0
    assert wait_for(lambda: GatewayEvent.objects.filter(kind="loop_detected", trace=trace).exists())
    # A different request from the same key still passes.
    client.chat.completions.create(model="gpt-4o-mini", messages=_messages("different"))


def test_an_agent_repeating_the_same_tool_call_is_stopped(gw, make_key):
    secret, _ = make_key()
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a.txt"}'},
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read a.txt"}]
    for _ in range(3):
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "error: busy"},
        ]
    with pytest.raises(openai.RateLimitError) as looped:
        gw.sdk(secret).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert looped.value.code == "loop_detected"


def test_an_ordinary_multi_turn_chat_is_not_a_loop(gw, make_key):
    secret, _ = make_key()
    client = gw.sdk(secret)
    messages = [{"role": "system", "content": "You are helpful."}]
    for question in ["What is Rust?", "And Go?", "Which is faster?", "Thanks!", "Again?"]:
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert reply.model_extra["aqta"]["loop_detected"] is False
        messages.append({"role": "assistant", "content": f"About {question}: it depends."})


def test_the_response_cache_answers_repeats_for_free(gw, make_key):
    secret, api_key = make_key()
    client = gw.sdk(secret, default_headers={"X-Aqta-Cache": "on"})
    first = client.chat.completions.create(model="gpt-4o-mini", messages=_messages("cache me"))
    second = client.chat.completions.create(model="gpt-4o-mini", messages=_messages("cache me"))

    assert first.model_extra["aqta"]["cached"] is False
    assert second.model_extra["aqta"]["cached"] is True
    assert second.model_extra["aqta"]["cost_eur"] == 0
    assert second.choices[0].message.content == first.choices[0].message.content
    assert _stats(gw)["chat_requests"] == 1
    traces = wait_for(lambda: Trace.objects.filter(api_key=api_key).count() == 2)
    assert traces
    assert Trace.objects.filter(api_key=api_key, cached=True).count() == 1


def test_a_revoked_key_stops_working_within_two_seconds(gw, make_key):
    from accounts.services import api_key_revoke

    secret, api_key = make_key()
    client = gw.sdk(secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=_messages("before"))
    api_key_revoke(api_key=api_key)
    time.sleep(2)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=_messages("after"))
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_upstream_5xx_is_retried_then_a_502(gw, make_key):
    secret, _ = make_key()
    with pytest.raises(openai.InternalServerError) as failed:
        gw.sdk(secret).chat.completions.create(
            model="gpt-4o-mini", messages=_messages("mock:status=500")
        )
    error = failed.value
    assert error.status_code == 502 and error.code == "provider_error"
    assert "answered 500" in error.message
    assert "mock-upstream-key" not in error.response.text
    assert _stats(gw)["chat_requests"] == 3  # the first try and two retries


def test_a_transient_upstream_error_is_invisible(gw, make_key):
    secret, _ = make_key()
    httpx.post(gw.mock.url + "/_mock/script", json={"steps": [{"status": 503}]})
    reply = gw.sdk(secret).chat.completions.create(model="gpt-4o-mini", messages=_messages())
    assert reply.model_extra["aqta"]["status"] == "passed"
    assert _stats(gw)["chat_requests"] == 2


def test_an_upstream_that_does_not_answer_is_a_504(gw, make_key):
    secret, _ = make_key()
    with pytest.raises(openai.APIStatusError) as slow:
        gw.sdk(secret).chat.completions.create(
            model="gpt-4o-mini", messages=_messages("mock:delay_ms=6000")
        )
    assert slow.value.status_code == 504 and slow.value.code == "provider_timeout"


def test_a_stream_cut_midway_ends_with_an_error_not_done(gw, make_key):
    secret, _ = make_key()
    stream = gw.sdk(secret).chat.completions.create(
        model="gpt-4o-mini", messages=_messages("mock:cut_after_chunks=3"), stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)
    raw = httpx.post(
        gw.base_url + "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": _messages("mock:cut_after_chunks=3 x"),
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert "[DONE]" not in raw.text
    assert '"provider_error"' in raw.text


def test_a_client_disconnect_cancels_the_upstream_and_still_bills(gw, make_key):
    secret, api_key = make_key()
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": _messages("mock:chunk_delay_ms=300 mock:chunks=50"),
    }
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
    ) as response:
        events = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                events += 1
            if events == 4:
                break
    left_at = time.monotonic()
    assert wait_for(lambda: _stats(gw)["client_disconnects"] >= 1, timeout=5)
    assert time.monotonic() - left_at < 2.5
    trace = wait_for(lambda: Trace.objects.filter(api_key=api_key).first())
    assert trace.client_disconnected and trace.completion_tokens >= 2 and trace.cost_eur > 0


def test_a_disconnect_while_waiting_for_the_first_token_cancels_too(gw, make_key):
    secret, api_key = make_key()
    body = {"model": "gpt-4o-mini", "messages": _messages("mock:delay_ms=2500")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gw.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=0.5,
        )
    assert wait_for(lambda: _stats(gw)["client_disconnects"] >= 1, timeout=4)
    trace = wait_for(lambda: Trace.objects.filter(api_key=api_key).first())
    assert trace.client_disconnected and trace.http_status == 499
