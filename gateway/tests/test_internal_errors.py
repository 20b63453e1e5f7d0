"""A bug of ours anywhere on /v1 is an OpenAI-shaped 500 naming the trace, recorded as an
error trace that consumed nothing (rate slot, quota and budget given back).

The gateway app runs in process (httpx's ASGI transport) in front of the mock provider, so
that a fault can be planted in it; both limiter backends are exercised.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import orjson
import pytest

from gateway.dataplane.app import Gateway
from gateway.dataplane.providers.openai import OpenAIProvider
from gateway.dataplane.steps import route
from gateway.models import Trace, UsageCounter
from gateway.tests.conftest import redis_url_for_tests, seed_catalogue, wait_for

MESSAGES = [{"role": "user", "content": "Hello"}]


class Planted(Exception):
    """The planted bug."""


@pytest.fixture(params=["local", "redis"])
def backend(request, settings):
    if request.param == "redis":
        url = redis_url_for_tests()
        assert url, "the suite needs Redis: set REDIS_URL or run one on 127.0.0.1:6379"
        settings.REDIS_URL = url
    else:
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture
def scenario(backend, make_key, mock, monkeypatch):
    """Run ``steps(client, gateway)`` against a started in-process gateway, then stop it
    (which writes the buffered traces)."""
    seed_catalogue()
    monkeypatch.setenv("OPENAI_BASE_URL", mock.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "mock-upstream-key")
    secret, api_key = make_key(monthly_request_quota=100, monthly_budget_eur="5")

    def run(steps):
        async def main():
            gateway = Gateway()
            await gateway.startup()
            transport = httpx.ASGITransport(app=gateway)
            headers = {"Authorization": f"Bearer {secret}"}
            try:
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://gw", headers=headers
                ) as client:
                    return await steps(client, gateway, api_key)
            finally:
                await gateway.shutdown()

        return asyncio.run(main())

    return run


async def _counted(gateway: Gateway, org_id: str) -> tuple[int, int]:
    assert gateway.runtime is not None
    return await gateway.runtime.limiter.usage(org_id, time.time())


def _chat(client: httpx.AsyncClient, **fields):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, **fields}
    return client.post("/v1/chat/completions", content=orjson.dumps(body))


def test_an_unexpected_error_is_a_500_naming_the_trace_and_gives_everything_back(
    scenario, monkeypatch
):
    org_id = None

    async def steps(client, gateway, api_key):
        nonlocal org_id
        org_id = str(api_key.organization_id)
        good = await _chat(client)
        assert good.status_code == 200
        before = await _counted(gateway, org_id)
        assert before[0] == 1 and before[1] > 0

        def broken(self, deployment, body, stream):
            raise Planted("a bug while building the upstream request")

        with monkeypatch.context() as patch:
            patch.setattr(OpenAIProvider, "build_request", broken)
            failed = await _chat(client)

        assert await _counted(gateway, org_id) == before  # quota and budget given back
        after = await _chat(client)
        # The rate-limit slot came back too: two calls admitted, so 998 remain of 1000.
        assert after.headers["x-ratelimit-remaining"] == "998"
        return failed

    failed = scenario(steps)

    assert failed.status_code == 500
    error = failed.json()["error"]
    trace_id = failed.headers["x-aqta-trace-id"]
    assert re.fullmatch(r"tr_[0-9a-f]{32}", trace_id)
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert trace_id in error["message"] and "Traceback" not in failed.text
    assert failed.json()["aqta"]["trace_id"] == trace_id
    trace = wait_for(lambda: Trace.objects.filter(id=trace_id).first())
    assert (trace.status, trace.http_status, trace.error_code) == ("error", 500, "internal_error")
    assert trace.cost_eur == 0
    assert org_id is not None
    counter = wait_for(lambda: UsageCounter.objects.filter(organization_id=org_id).first())
    assert counter.requests == 2  # the failed call is not counted as usage


def test_an_unexpected_error_mid_stream_ends_it_with_an_error_event(scenario, monkeypatch):
    original = OpenAIProvider.translate_stream

    def breaks_at_the_end(self, data, state):
        events = original(self, data, state)
        if state.done:
            raise Planted("a bug while translating")
        return events

    async def steps(client, gateway, api_key):
        monkeypatch.setattr(OpenAIProvider, "translate_stream", breaks_at_the_end)
        response = await _chat(client, stream=True)
        counted = await _counted(gateway, str(api_key.organization_id))
        return response, counted

    response, counted = scenario(steps)

    assert response.status_code == 200  # the stream had started
    events = [e for e in response.text.split("\n\n") if e]
    last = orjson.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "internal_error"
    assert "data: [DONE]" not in response.text
    assert counted[0] == 0
    trace = wait_for(lambda: Trace.objects.filter(id=response.headers["x-aqta-trace-id"]).first())
    assert (trace.status, trace.http_status) == ("error", 500)
    assert not UsageCounter.objects.exists()


def test_an_unexpected_error_listing_models_is_a_500_in_the_envelope(scenario, monkeypatch):
    async def steps(client, gateway, api_key):
        monkeypatch.setattr(route, "allowed", lambda *args: 1 / 0)
        return await client.get("/v1/models")

    response = scenario(steps)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-aqta-trace-id"] in response.json()["error"]["message"]
