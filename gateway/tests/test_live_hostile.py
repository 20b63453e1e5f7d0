"""Hostile and wrong-typed chat requests against a live gateway: each is a clear 400 before
admission (nothing counted, nothing sent upstream), never a 5xx."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from gateway.models import Trace
from gateway.tests.conftest import wait_for

USER = [{"role": "user", "content": "Hi"}]


def _nested(depth: int, kind: str = "list") -> object:
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def _raw(body: dict) -> bytes:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 30_000))
    try:
        return json.dumps(body).encode()  # orjson writes at most 254 levels
    finally:
        sys.setrecursionlimit(limit)


def _post(gw, secret: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return httpx.post(gw.base_url + "/chat/completions", content=_raw(body), headers=headers)


def _upstream_calls(gw) -> int:
    count: int = httpx.get(gw.mock.url + "/_mock/stats").json()["chat_requests"]
    return count


DEEP = {
    "tools": lambda d: [
        {"type": "function", "function": {"name": "f", "parameters": _nested(d, "dict")}}
    ],
    "content": lambda d: None,  # built in the test: messages[0].content
    "logit_bias": lambda d: {"50256": _nested(d)},
}


@pytest.mark.parametrize("depth", [260, 10_000])
@pytest.mark.parametrize("where", ["tools", "content", "logit_bias"])
def test_deeply_nested_json_is_refused_before_admission(gw, make_key, where, depth):
    secret, _ = make_key()
    body: dict = {"model": "gpt-4o-mini", "messages": USER}
    if where == "content":
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": _nested(depth)}]}]
    else:
        body[where] = DEEP[where](depth)
    before = _upstream_calls(gw)

    response = _post(gw, secret, body)

    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] in ("invalid_parameter", "invalid_json")
    assert response.headers["x-ratelimit-remaining"] == "1000"  # nothing was counted
    assert _upstream_calls(gw) == before
    trace = wait_for(lambda: Trace.objects.filter(id=response.headers["x-aqta-trace-id"]).first())
    assert (trace.status, trace.http_status) == ("blocked", 400)


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "sonar", "claude-3-haiku-20240307"])
def test_modalities_that_is_not_a_list_is_a_400(gw, make_key, model):
    secret, _ = make_key()

    response = _post(gw, secret, {"model": model, "messages": USER, "modalities": 5})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "modalities"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"50256": "high"}}, "logit_bias"),
        ({"logit_bias": [1, 2]}, "logit_bias"),
        ({"tool_choice": 5}, "tool_choice"),
        ({"user": {"id": 1}}, "user"),
        ({"metadata": {"k": 5}}, "metadata"),
        ({"metadata": "tag"}, "metadata"),
        ({"tools": [5]}, "tools[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role"),
    ],
    ids=[
        "logit_bias-values",
        "logit_bias-list",
        "tool_choice",
        "user",
        "metadata-values",
        "metadata-string",
        "tools-5",
        "content-part-without-text",
        "content-part-5",
        "role",
    ],
)
def test_a_wrong_typed_parameter_is_refused_without_a_billed_round_trip(
    gw, make_key, fields, param
):
    secret, _ = make_key()
    before = _upstream_calls(gw)

    response = _post(gw, secret, {"model": "gpt-4o-mini", "messages": USER, **fields})

    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] in ("invalid_parameter", "missing_parameter")
    assert error["param"].startswith(param), error
    assert response.headers["x-ratelimit-remaining"] == "1000"
    assert _upstream_calls(gw) == before


def test_a_nul_byte_in_the_model_name_is_a_404_and_its_trace_is_stored(gw, make_key):
    secret, _ = make_key()

    response = _post(gw, secret, {"model": "x\u0000", "messages": USER})

    assert response.status_code == 404
    trace = wait_for(lambda: Trace.objects.filter(id=response.headers["x-aqta-trace-id"]).first())
    assert trace is not None and "\x00" not in trace.model
