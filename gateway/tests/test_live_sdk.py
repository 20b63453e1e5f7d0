"""An unmodified OpenAI SDK against a live gateway process."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway.models import Trace
from gateway.tests.conftest import wait_for

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


def test_chat_completion_carries_the_answer_and_the_aqta_object(gw, make_key):
    secret, api_key = make_key()
    client = gw.sdk(secret)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content.startswith("This is a mock reply")
    aqta = completion.model_extra["aqta"]
    assert aqta["status"] == "passed" and aqta["provider"] == "openai"
    assert aqta["cached"] is False and aqta["loop_detected"] is False
    assert re.fullmatch(r"tr_[0-9a-f]{32}", aqta["trace_id"])
    assert raw.headers["x-aqta-trace-id"] == aqta["trace_id"]
    assert completion._request_id == aqta["trace_id"]  # the SDK reads x-request-id
    assert int(raw.headers["x-ratelimit-limit"]) == 1000
    assert int(raw.headers["x-ratelimit-remaining"]) == 999
    assert 0 < int(raw.headers["x-ratelimit-reset"]) <= 60
    usage = completion.usage
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    assert trace is not None
    assert (trace.prompt_tokens, trace.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert isinstance(aqta["cost_eur"], float)  # a JSON number, as documented
    assert trace.cost_eur == Decimal(str(aqta["cost_eur"])) and trace.cost_eur > 0
    assert trace.api_key_id == api_key.pk and trace.status == "passed" and not trace.stream
    assert len(trace.request_sha256) == 64


def test_all_chat_parameters_pass_through_upstream(gw, make_key):
    secret, _ = make_key()
    gw.sdk(secret).chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        temperature=0.3,
        top_p=0.9,
        n=2,
        stop=["END"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=7,
        user="u-1",
        max_completion_tokens=50,
        logprobs=True,
        top_logprobs=2,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {}}},
    )
    sent = httpx.get(gw.mock.url + "/_mock/stats").json()["last_request"]
    assert sent["temperature"] == 0.3 and sent["n"] == 2 and sent["stop"] == ["END"]
    assert sent["seed"] == 7 and sent["user"] == "u-1" and sent["top_logprobs"] == 2
    assert sent["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_ends_as_openai_s_with_the_aqta_object_on_its_last_chunks(
    gw, make_key, include_usage
):
    secret, _ = make_key()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = gw.sdk(secret).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **options
    )
    chunks = list(stream)

    # The documented loop reads choices[0] of every chunk: only a usage chunk, when
    # asked for, may have none, and it comes last.
    with_choices = chunks[:-1] if include_usage else chunks
    assert all(c.choices for c in with_choices)
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.startswith("This is a mock reply")
    finish = with_choices[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert next(c for c in chunks if "aqta" in c.model_extra) is finish
    aqta = finish.model_extra["aqta"]
    assert aqta["status"] == "passed" and isinstance(aqta["cost_eur"], float)
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
        assert chunks[-1].model_extra["aqta"] == aqta
    else:
        assert usage_chunks == []
    # Usage is always asked of the upstream, so the trace has it either way, and the
    # cost on the finish chunk is already the final one.
    sent = httpx.get(gw.mock.url + "/_mock/stats").json()["last_request"]
    assert sent["stream_options"]["include_usage"] is True
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    assert trace.stream and trace.completion_tokens == 5 and trace.ttfb_ms is not None
    assert trace.cost_eur == Decimal(str(aqta["cost_eur"])) > 0


def test_models_lists_what_the_tier_allows(gw, make_key):
    pro, _ = make_key(tier="pro")
    free, _ = make_key(tier="free")

    pro_ids = {m.id for m in gw.sdk(pro).models.list()}
    free_ids = {m.id for m in gw.sdk(free).models.list()}

    # 23 seeded models and the 2 undated Claude 3 aliases.
    assert len(pro_ids) == 25
    assert {"gpt-4", "gpt-6.1-sol", "claude-3-5-sonnet"} <= pro_ids
    assert free_ids == {
        "gpt-4o-mini",
        "gpt-3.5-turbo",
        "claude-3-haiku-20240307",
        "claude-3-haiku",
        "gemini-2.0-flash",
        "sonar",
        "gpt-6-luna",
        "claude-haiku-5-5",
        "gemini-3.8-flash",
        "gemini-3.5-flash-lite",
    }
    assert gw.sdk(pro).models.retrieve("gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        gw.sdk(free).models.retrieve("gpt-4o")


def test_a_keys_allow_list_narrows_the_models(gw, make_key):
    secret, _ = make_key(key_options={"allowed_models": ["gpt-4o-mini"]})
    client = gw.sdk(secret)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert denied.value.code == "model_not_allowed"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
def test_invalid_parameters_are_a_400_naming_the_field(gw, make_key, kwargs, param):
    secret, _ = make_key()
    arguments = {"model": "gpt-4o-mini", "messages": MESSAGES, **kwargs}
    with pytest.raises(openai.BadRequestError) as bad:
        gw.sdk(secret).chat.completions.create(**arguments)
    assert bad.value.status_code == 400
    assert bad.value.param == param
    assert bad.value.code in {"invalid_parameter", "missing_parameter"}


def test_malformed_bodies_are_400s_and_huge_ones_413(gw, make_key):
    secret, _ = make_key()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    url = gw.base_url + "/chat/completions"
    broken = httpx.post(url, content=b"{nope", headers=headers)
    wrong_type = httpx.post(url, content=b"x=1", headers={**headers, "Content-Type": "text/plain"})
    missing = httpx.post(url, json={"messages": MESSAGES}, headers=headers)
    huge = httpx.post(url, content=b"x" * (10 * 1024 * 1024 + 1), headers=headers, timeout=30)

    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    assert wrong_type.status_code == 400
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_parameter"
    assert missing.json()["error"]["param"] == "model"
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    for response in (broken, wrong_type, missing, huge):
        assert response.headers["x-request-id"] == response.headers["x-aqta-trace-id"]
    for response in (broken, wrong_type, missing):  # refused before admission: none counted
        assert response.headers["x-ratelimit-limit"] == "1000"
        assert response.headers["x-ratelimit-remaining"] == "1000"
    # Too large to read, so the key was never looked at: there is no limit to report.
    assert "x-ratelimit-limit" not in huge.headers


def test_unknown_endpoints_and_wrong_methods_report_no_rate_limit(gw, make_key):
    secret, _ = make_key()
    headers = {"Authorization": f"Bearer {secret}"}

    unknown = httpx.post(gw.base_url + "/nope", json={}, headers=headers)
    wrong_method = httpx.get(gw.base_url + "/chat/completions", headers=headers)
    models_post = httpx.post(gw.base_url + "/models", headers=headers)

    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert models_post.status_code == 405 and models_post.headers["allow"] == "GET"
    for response in (unknown, wrong_method, models_post):
        assert response.headers["x-aqta-trace-id"].startswith("tr_")
        assert not any(name.startswith("x-ratelimit") for name in response.headers)


def test_every_bad_key_gets_the_same_401(gw, make_key):
    from accounts import keys
    from accounts.services import api_key_revoke

    secret, api_key = make_key()
    api_key_revoke(api_key=api_key)
    answers = []
    for bad in ("not-a-key", "sk-aqta-short", keys.generate(), secret):
        client = openai.OpenAI(base_url=gw.base_url, api_key=bad, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as denied:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        answers.append(orjson.dumps(denied.value.body))
    assert len(set(answers)) == 1
    assert orjson.loads(answers[0])["code"] == "invalid_api_key"
    missing = httpx.post(gw.base_url + "/chat/completions", json={"model": "gpt-4o-mini"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"


def test_the_british_authorisation_header_works(gw, make_key):
    secret, _ = make_key()
    response = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorisation": f"Bearer {secret}"},
    )
    assert response.status_code == 200


def test_unknown_and_forbidden_models(gw, make_key):
    free, _ = make_key(tier="free")
    client = gw.sdk(free)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError) as premium:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    assert premium.value.code == "model_not_allowed"


def test_the_unprefixed_alias_works(gw, make_key):
    secret, _ = make_key()
    response = httpx.post(
        gw.url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200 and "aqta" in response.json()


def test_a_completion_limit_above_the_model_s_output_limit_is_refused_before_admission(
    gw, make_key
):
    secret, _ = make_key()
    client = gw.sdk(secret)

    for name in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, **{name: 16_385}
            )
        error = refused.value
        assert (error.code, error.param) == ("invalid_parameter", name)
        assert "at most 16384" in error.message
        assert error.response.headers["x-ratelimit-remaining"] == "1000"  # nothing counted

    at_the_limit = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=16_384
    )
    assert at_the_limit.choices[0].message.content
