"""Fallback across a model's deployments and the circuit breaker, through a live gateway."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway import crypto
from gateway.mock_provider import MockConfig, MockServer
from gateway.models import ModelDeployment, ProviderEndpoint, Trace
from gateway.tests.conftest import redis_url_for_tests, run_gateway, seed_catalogue, wait_for


@pytest.fixture
def flaky():
    """A second upstream that the tests make fail."""
    with MockServer(MockConfig(chunks=5)) as server:
        yield server


def _deploy(model_id: str, *upstreams: tuple[str, str]) -> list[str]:
    """Deployments named ``<name>-<random>``: breaker state in Redis outlives a test."""
    from billing.models import LanguageModel

    model = LanguageModel.objects.get(model_id=model_id)
    names = []
    for priority, (label, base_url) in enumerate(upstreams):
        name = f"{label}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        endpoint = ProviderEndpoint.objects.create(
            name=f"{name}-endpoint",
            provider="openai",
            base_url=base_url,
            api_key_encrypted=crypto.encrypt(f"{name}-secret"),
        )
        ModelDeployment.objects.create(
            name=name,
            model=model,
            endpoint=endpoint,
            upstream_model_id=model_id,
            priority=priority,
        )
    return names


def _ask(gateway, secret: str, text: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=20,
    )


def _requests(server: MockServer) -> int:
    count: int = httpx.get(server.url + "/_mock/stats").json()["chat_requests"]
    return count


def test_a_failing_deployment_falls_back_invisibly(mock, flaky, make_key):
    seed_catalogue()
    _, backup = _deploy("gpt-4o-mini", ("primary", flaky.base_url), ("backup", mock.base_url))
    secret, api_key = make_key()
    httpx.post(flaky.url + "/_mock/script", json={"steps": [{"status": 503}] * 12})

    with run_gateway(mock, redis_url=redis_url_for_tests(), AQTA_UPSTREAM_RETRIES="0") as gw:
        answer = _ask(gw, secret, "hello")
        streamed = _ask(gw, secret, "hello again", stream=True)

    assert answer.status_code == 200
    assert answer.json()["aqta"]["provider"] == backup
    assert answer.json()["choices"][0]["message"]["content"].startswith("This is a mock reply")
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert f'"provider":"{backup}"' in streamed.text
    # The client never saw the primary's 503s; the trace names who answered.
    traces = wait_for(
        lambda: (
            list(Trace.objects.filter(api_key=api_key))
            if Trace.objects.filter(api_key=api_key).count() == 2
            else None
        )
    )
    assert traces and {t.provider for t in traces} == {backup}
    assert _requests(flaky) == 2


def test_the_circuit_opens_after_consecutive_failures_and_skips_the_deployment(
    mock, flaky, make_key
):
    seed_catalogue()
    _deploy("gpt-4o-mini", ("primary", flaky.base_url), ("backup", mock.base_url))
    secret, _ = make_key()
    httpx.post(flaky.url + "/_mock/script", json={"steps": [{"status": 500}] * 50})
    env = {
        "AQTA_UPSTREAM_RETRIES": "0",
        "AQTA_BREAKER_FAILURES": "3",
        "AQTA_BREAKER_OPEN_SECONDS": "60",
    }

    with run_gateway(mock, workers=2, redis_url=redis_url_for_tests(), **env) as gw:
        statuses = [_ask(gw, secret, f"q{i}").status_code for i in range(10)]

    assert statuses == [200] * 10
    # Three failures open the circuit (shared by both workers through Redis, or each
    # worker's own view when embedded): the primary saw at most one per worker more.
    assert 3 <= _requests(flaky) <= 4


def test_when_every_deployment_fails_the_client_gets_a_502(mock, flaky, make_key):
    seed_catalogue()
    _deploy("gpt-4o-mini", ("primary", flaky.base_url), ("backup", "http://127.0.0.1:1/v1"))
    secret, _ = make_key()
    httpx.post(flaky.url + "/_mock/script", json={"steps": [{"status": 500}]})

    with run_gateway(mock, redis_url=redis_url_for_tests(), AQTA_UPSTREAM_RETRIES="0") as gw:
        response = _ask(gw, secret, "hello")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_error"
    assert "backup-secret" not in response.text and "primary-secret" not in response.text


def test_an_alias_added_by_an_operator_routes_to_its_model(mock, make_key):
    from billing.models import LanguageModel, ModelAlias

    seed_catalogue()
    ModelAlias.objects.create(alias="mini", model=LanguageModel.objects.get(model_id="gpt-4o-mini"))
    secret, api_key = make_key(tier="free")

    with run_gateway(mock, redis_url=redis_url_for_tests()) as gw:
        listed = httpx.get(gw.base_url + "/models", headers={"Authorization": f"Bearer {secret}"})
        answer = httpx.post(
            gw.base_url + "/chat/completions",
            json={"model": "mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}"},
        )

    assert "mini" in {m["id"] for m in listed.json()["data"]}
    assert answer.status_code == 200  # a Free key: the alias is as cost-effective as its model
    assert httpx.get(mock.url + "/_mock/stats").json()["last_request"]["model"] == "gpt-4o-mini"
    trace = wait_for(lambda: Trace.objects.filter(api_key=api_key).first())
    assert trace.model == "mini" and trace.cost_eur > 0
