"""The OpenAI SDK gets the same experience from all four providers, through a live gateway
and the mock speaking each provider's own wire format."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from billing.models import LanguageModel
from billing.pricing import Usage, cost_usd, usd_to_eur
from billing.selectors import model_price_at, usd_eur_rate_at
from gateway.models import Trace
from gateway.tests.conftest import wait_for

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-2.0-flash",
    "perplexity": "sonar",
}
WITH_TOOLS = ["openai", "anthropic", "google"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
MESSAGES = [{"role": "user", "content": "Say hello."}]


def _stats(gw) -> dict:
    stats: dict = httpx.get(gw.mock.url + "/_mock/stats").json()
    return stats


@pytest.mark.parametrize("provider", MODELS)
def test_plain_chat(gw, make_key, provider):
    secret, _ = make_key()
    completion = gw.sdk(secret).chat.completions.create(model=MODELS[provider], messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    aqta = completion.model_extra["aqta"]
    assert aqta["provider"] == provider and aqta["status"] == "passed"
    assert _stats(gw)["last_path"].endswith(
        {
            "openai": "/v1/chat/completions",
            "anthropic": "/v1/messages",
            "google": ":generateContent",
            "perplexity": "/perplexity/chat/completions",
        }[provider]
    )
    # The EUR cost is the list price of the usage the provider reported.
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    model = LanguageModel.objects.get(model_id=MODELS[provider])
    usage = Usage(
        prompt_tokens=trace.prompt_tokens,
        completion_tokens=trace.completion_tokens,
        cached_tokens=trace.cached_tokens,
        search_context_size="low" if provider == "perplexity" else None,
    )
    price = model_price_at(model=model)
    assert price is not None
    expected = usd_to_eur(cost_usd(price, usage), usd_eur_rate_at())
    assert Decimal(str(aqta["cost_eur"])) == expected == trace.cost_eur
    assert trace.provider == provider


@pytest.mark.parametrize("provider", MODELS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming(gw, make_key, provider, include_usage):
    secret, _ = make_key()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        gw.sdk(secret).chat.completions.create(
            model=MODELS[provider], messages=MESSAGES, stream=True, **options
        )
    )

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    with_choices = chunks[:-1] if include_usage else chunks
    assert all(c.choices for c in with_choices)  # only the usage chunk has none
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text
    finish = with_choices[-1]
    assert finish.choices[0].finish_reason == "stop"
    aqta = finish.model_extra["aqta"]
    assert aqta["provider"] == provider
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
        assert usage_chunks[0].usage.completion_tokens > 0
        assert chunks[-1].model_extra["aqta"] == aqta
    else:
        assert usage_chunks == []
    # The cost on the finish chunk is final: the trace has the same.
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    assert trace.cost_eur == Decimal(str(aqta["cost_eur"])) > 0


@pytest.mark.parametrize("provider", WITH_TOOLS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip(gw, make_key, provider, stream):
    secret, _ = make_key()
    client = gw.sdk(secret)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    request = {"model": MODELS[provider], "messages": messages, "tools": [WEATHER_TOOL]}

    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(**request, stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "args": ""})
                    call["id"] = delta.id or call["id"]
                    call["name"] = (delta.function.name if delta.function else None) or call["name"]
                    call["args"] += (delta.function.arguments or "") if delta.function else ""
        call = calls[0]
        call_id, name, arguments = call["id"], call["name"], call["args"]
    else:
        answer = client.chat.completions.create(**request)
        finish = answer.choices[0].finish_reason
        tool_call = answer.choices[0].message.tool_calls[0]
        call_id, name = tool_call.id, tool_call.function.name
        arguments = tool_call.function.arguments

    assert finish == "tool_calls"
    assert name == "get_weather" and call_id
    assert isinstance(json.loads(arguments), dict)
    # Send the result back: the provider must accept the translated history.
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21}'},
    ]
    final = client.chat.completions.create(model=MODELS[provider], messages=messages)
    assert final.choices[0].message.content


@pytest.mark.parametrize("provider", MODELS)
def test_json_schema_output(gw, make_key, provider):
    secret, _ = make_key()
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"],
        "additionalProperties": False,
    }
    answer = gw.sdk(secret).chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "Weather in Paris as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
    )
    data = json.loads(answer.choices[0].message.content)
    assert set(data) == {"city", "temp_c"}


@pytest.mark.parametrize("provider", MODELS)
def test_provider_errors_reach_the_client_as_openai_errors(gw, make_key, provider):
    secret, _ = make_key()
    client = gw.sdk(secret)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model=MODELS[provider], messages=[{"role": "user", "content": "mock:status=500"}]
        )
    assert failed.value.status_code == 502 and failed.value.code == "provider_error"
    assert f"mock-{provider}-key" not in failed.value.response.text
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model=MODELS[provider],
                messages=[{"role": "user", "content": "mock:cut_after_chunks=3"}],
                stream=True,
            )
        )


def test_anthropic_overloaded_is_retried(gw, make_key):
    secret, _ = make_key()
    httpx.post(gw.mock.url + "/_mock/script", json={"steps": [{"status": 529}]})
    answer = gw.sdk(secret).chat.completions.create(model=MODELS["anthropic"], messages=MESSAGES)
    assert answer.choices[0].message.content


def test_perplexity_keeps_citations(gw, make_key):
    secret, _ = make_key()
    answer = gw.sdk(secret).chat.completions.create(model="sonar", messages=MESSAGES)
    assert answer.model_extra["citations"]
    chunks = list(
        gw.sdk(secret).chat.completions.create(model="sonar", messages=MESSAGES, stream=True)
    )
    assert any(c.model_extra.get("citations") for c in chunks)
