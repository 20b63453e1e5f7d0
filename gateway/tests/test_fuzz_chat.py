"""Fuzzing /v1/chat/completions on a live gateway: no request may produce a 5xx.

Bodies are valid requests with parameters replaced by arbitrary JSON (wrong types, deep
nesting, NUL bytes, huge numbers, unknown roles), for a model of every provider, JSON and
streamed. Bounded and derandomised, so a failure reproduces; 502/504 would mean the mock
provider failed, which it does not do unless asked, so every 5xx counts.
"""

from __future__ import annotations

import json
import sys

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODELS = ["gpt-4o-mini", "claude-3-haiku-20240307", "gemini-2.0-flash", "sonar"]
PARAMETERS = [
    "messages", "temperature", "top_p", "n", "stream", "stop", "max_tokens",
    "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias", "user",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "seed", "logprobs",
    "top_logprobs", "metadata", "modalities", "audio", "prediction", "reasoning_effort",
    "service_tier", "store", "stream_options", "web_search_options", "functions",
    "function_call",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["\x00", "x\x00", "system", "user", "tool", "function", "text", "auto"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int, kind: str):
    value: object = "x"
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


deep_values = st.builds(
    _deep, st.sampled_from([30, 70, 253, 260, 600]), st.sampled_from(["list", "dict"])
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), scalars)},
        optional={
            "content": st.one_of(json_values, deep_values),
            "name": json_values,
            "tool_calls": json_values,
            "tool_call_id": json_values,
        },
    ),
    max_size=4,
)


@st.composite
def bodies(draw) -> dict:
    body: dict = {
        "model": draw(st.sampled_from(MODELS)),
        "messages": [{"role": "user", "content": "fuzz"}],
    }
    for name in draw(st.lists(st.sampled_from(PARAMETERS), max_size=3, unique=True)):
        if name == "messages":
            body[name] = draw(st.one_of(messages, json_values))
        else:
            body[name] = draw(st.one_of(json_values, deep_values))
    if draw(st.booleans()):
        body["stream"] = True
    return body


def test_no_chat_request_gets_a_server_error(gw, make_key):
    secret, _ = make_key()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    url = gw.base_url + "/chat/completions"

    with httpx.Client(timeout=30) as client:

        @settings(
            max_examples=200,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(bodies())
        def check(body: dict) -> None:
            # The standard library writes what orjson cannot (over 254 levels, huge ints).
            raw = _encode(body)
            response = client.post(url, content=raw, headers=headers)
            assert response.status_code < 500, (body, response.text[:500])
            if response.status_code >= 400:
                assert response.json()["error"]["code"]

        check()


def _encode(value: object) -> bytes:
    """JSON deeper than orjson writes (the standard library's encoder, more stack)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        return json.dumps(value).encode()
    finally:
        sys.setrecursionlimit(limit)
