"""Step 6, the provider call (gateway/dataplane/steps/call_upstream.py), against a real
local HTTP server speaking OpenAI's and Anthropic's wire formats: deployments tried in
order, open circuits skipped, the client's own faults answered without fallback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps.call_upstream import Opened, call_upstream
from gateway.tests.dataplane.conftest import free_port
from gateway.tests.dataplane.steps import provider as wire
from gateway.tests.dataplane.steps.fakes import UPSTREAM_KEY, catalog, key_record, routed, runtime
from gateway.tests.dataplane.steps.fakes import run as run_async
from gateway.tests.dataplane.steps.provider import ANTHROPIC_PATH, OPENAI_PATH, Provider, Reply

Prepare = Callable[[Runtime], Awaitable[None]]


def calling(
    replies: dict[str, list[Reply]],
    prepare: Prepare | None = None,
    openai_url: str | None = None,
    **fields: Any,
) -> tuple[Provider, Runtime, Any]:
    """One call through the step: (the provider, the runtime, what the step gave: the
    status and deployment of what it opened, or the AqtaError it raised)."""
    out: list[Any] = []

    async def scenario() -> None:
        async with wire.serving() as server:
            for path, scripted in replies.items():
                server.script(path, *scripted)
            found = catalog(openai_url or server.url, server.url)
            async with runtime(found) as rt:
                if prepare is not None:
                    await prepare(rt)
                call = routed(found, key_record(), **fields)
                try:
                    opened = await call_upstream(rt, call)
                except AqtaError as error:
                    out.extend([server, rt, error])
                    return
                out.extend([server, rt, summary(opened, call.deployment)])
                opened.response.release()

    run_async(scenario)
    return out[0], out[1], out[2]


def summary(opened: Opened, deployment: str) -> tuple[int, str, str]:
    return opened.response.status, opened.target.deployment.name, deployment


def test_an_openai_deployment_gets_the_request_with_its_model_and_key():
    server, _, got = calling({OPENAI_PATH: [wire.openai_completion()]}, temperature=0.2)
    assert got == (200, "openai", "openai")
    [received] = server.received
    assert received.path == OPENAI_PATH
    assert received.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.json == {
        "model": "gpt-4o-mini-2024",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.2,
    }


def test_a_stream_asks_the_provider_for_usage():
    server, _, got = calling({OPENAI_PATH: [wire.openai_stream("Hi")]}, stream=True)
    assert got == (200, "openai", "openai")
    sent = server.received[0].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_an_anthropic_deployment_gets_a_messages_request():
    server, _, got = calling(
        {ANTHROPIC_PATH: [wire.anthropic_message()]},
        model="claude-sonnet",
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
    )
    assert got == (200, "anthropic", "anthropic")
    [received] = server.received
    assert received.path == ANTHROPIC_PATH
    assert received.headers["x-api-key"] == UPSTREAM_KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in received.headers
    sent = received.json
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["max_tokens"] == 8192  # the deployment's output limit: Anthropic needs one
    assert sent["system"] == [{"type": "text", "text": "Be brief"}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_the_provider_finds_invalid_is_the_clients_without_fallback(status):
    replies = {
        OPENAI_PATH: [wire.openai_error(status, "messages is too long"), wire.openai_completion()]
    }
    server, rt, got = calling(replies, model="gpt-4o")
    assert isinstance(got, AqtaError)
    assert (got.code, got.status) == (ErrorCode.INVALID_REQUEST, 400)
    assert got.message == "openai refused the request: messages is too long"
    assert [r.json["model"] for r in server.received] == ["gpt-4o-a"]  # no fallback
    assert rt.breaker.view == {}  # the deployment is not at fault


def test_an_anthropic_refusal_is_read_from_its_error_body():
    replies = {ANTHROPIC_PATH: [wire.anthropic_error(400, "prompt is too long: 300000 tokens")]}
    _, _, got = calling(replies, model="claude-sonnet")
    assert isinstance(got, AqtaError) and got.code == ErrorCode.INVALID_REQUEST
    assert got.message == (
        "anthropic refused the request: prompt is too long: 300000 tokens (invalid_request_error)"
    )


@pytest.mark.parametrize("status", [500, 503, 429, 401])
def test_a_failing_deployment_falls_back_to_the_next(status):
    replies = {OPENAI_PATH: [wire.openai_error(status, "down"), wire.openai_completion()]}
    server, rt, got = calling(replies, model="gpt-4o")
    assert got == (200, "secondary", "secondary")
    assert [r.json["model"] for r in server.received] == ["gpt-4o-a", "gpt-4o-b"]
    assert rt.breaker.view["primary"][1] == 1  # counted against the deployment that failed
    assert "secondary" not in rt.breaker.view


def test_when_every_deployment_fails_the_last_failure_is_answered():
    replies = {OPENAI_PATH: [wire.openai_error(500, "boom"), wire.openai_error(503, "overloaded")]}
    server, rt, got = calling(replies, model="gpt-4o")
    assert isinstance(got, AqtaError)
    assert (got.code, got.status, got.type) == (ErrorCode.PROVIDER_ERROR, 502, "api_error")
    assert got.message == "Upstream provider error: secondary answered 503: overloaded"
    assert len(server.received) == 2
    assert set(rt.breaker.view) == {"primary", "secondary"}


def test_a_provider_that_cannot_be_reached_is_a_provider_error():
    nowhere = f"http://127.0.0.1:{free_port()}"
    server, rt, got = calling({}, openai_url=nowhere)
    assert isinstance(got, AqtaError)
    assert (got.code, got.status) == (ErrorCode.PROVIDER_ERROR, 502)
    assert got.message.startswith("Upstream provider error: openai could not be reached: ")
    assert server.received == []
    assert rt.breaker.view["openai"][1] == 1


def test_the_deployments_key_never_goes_back_to_the_client():
    replies = {OPENAI_PATH: [wire.openai_error(400, f"Incorrect API key provided: {UPSTREAM_KEY}")]}
    _, _, got = calling(replies)
    assert isinstance(got, AqtaError)
    assert UPSTREAM_KEY not in got.message
    assert got.message == "openai refused the request: Incorrect API key provided: [redacted]"


async def open_circuit(rt: Runtime, name: str) -> None:
    for _ in range(rt.breaker.threshold):
        await rt.breaker.failure(name)
    assert not await rt.breaker.available(name)


def test_a_deployment_with_an_open_circuit_is_skipped():
    async def prepare(rt: Runtime) -> None:
        await open_circuit(rt, "primary")

    server, _, got = calling({OPENAI_PATH: [wire.openai_completion()]}, prepare, model="gpt-4o")
    assert got == (200, "secondary", "secondary")
    assert [r.json["model"] for r in server.received] == ["gpt-4o-b"]


def test_a_success_closes_the_circuit_it_counted_against():
    async def prepare(rt: Runtime) -> None:
        await rt.breaker.failure("openai")

    _, rt, got = calling({OPENAI_PATH: [wire.openai_completion()]}, prepare)
    assert got == (200, "openai", "openai")
    assert rt.breaker.view == {}


def test_when_every_circuit_is_open_nothing_is_sent():
    async def prepare(rt: Runtime) -> None:
        await open_circuit(rt, "primary")
        await open_circuit(rt, "secondary")

    server, rt, got = calling({OPENAI_PATH: [wire.openai_completion()]}, prepare, model="gpt-4o")
    assert isinstance(got, AqtaError)
    assert (got.code, got.status) == (ErrorCode.PROVIDER_UNAVAILABLE, 503)
    assert got.retry_after == rt.config.breaker_open_seconds == 30
    assert got.message == "Every deployment of this model is failing; retry shortly."
    assert server.received == []
