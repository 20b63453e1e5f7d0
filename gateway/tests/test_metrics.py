"""Prometheus metrics: who may read /metrics, and what its labels may hold."""

from __future__ import annotations

import random
import re
import string
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
from django.test import Client
from prometheus_client import REGISTRY

from gateway.dataplane.call import Call
from gateway.dataplane.catalog import catalog_load
from gateway.dataplane.steps import settle
from gateway.models import TraceDeadLetter, TraceStatus
from gateway.tests.conftest import redis_url_for_tests, run_gateway, seed_catalogue

TOKEN = "metrics-token-for-tests"
SERIES = re.compile(r"^(aqta_\w+)\{([^}]*)\} ", re.MULTILINE)


def scrape(client: Client, address: str = "127.0.0.1", **headers):
    return client.get("/metrics", REMOTE_ADDR=address, headers=headers)


# --- Access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1"])
def test_without_a_token_loopback_clients_read_the_metrics(db, settings, address):
    settings.AQTA_METRICS_TOKEN = ""

    response = scrape(Client(), address)

    assert response.status_code == 200
    assert b"aqta_requests_total" in response.content


@pytest.mark.parametrize("address", ["10.0.0.7", "192.168.1.20", "2001:db8::1"])
def test_without_a_token_other_clients_are_refused(db, settings, address):
    settings.AQTA_METRICS_TOKEN = ""

    response = scrape(Client(), address)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert b"aqta_" not in response.content


def test_with_a_token_any_client_holding_it_reads_the_metrics(db, settings):
    settings.AQTA_METRICS_TOKEN = TOKEN

    response = scrape(Client(), "10.0.0.7", Authorization=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert b"aqta_requests_total" in response.content


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
    ids=["none", "wrong", "not-bearer", "longer", "empty"],
)
@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7"])
def test_with_a_token_a_missing_or_wrong_one_is_refused_even_on_loopback(
    db, settings, authorization, address
):
    settings.AQTA_METRICS_TOKEN = TOKEN
    headers = {"Authorization": authorization} if authorization else {}

    response = scrape(Client(), address, **headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"
    assert b"aqta_" not in response.content


# --- Labels ----------------------------------------------------------------------------------


def _call(model) -> Call:
    """A stand-in with the attributes ``observe`` reads."""
    route = SimpleNamespace(model=model) if model is not None else None
    usage = SimpleNamespace(prompt_tokens=3, completion_tokens=4)
    stand_in = SimpleNamespace(
        route=route,
        cost_eur=Decimal("0.01"),
        usage=usage,
        stream=False,
        http_status=200,
        status=TraceStatus.PASSED,
        error_code="",
    )
    return cast(Call, stand_in)


def _record(model: str) -> dict:
    return {
        "model": model,
        "status": "passed",
        "http_status": 200,
        "stream": False,
        "latency_ms": 12,
        "prompt_tokens": 3,
        "completion_tokens": 4,
    }


def _requests(model: str) -> float:
    labels = {"model": model, "status": "passed", "http_status": "200"}
    return REGISTRY.get_sample_value("aqta_requests_total", labels) or 0.0


def test_a_call_is_labelled_with_its_catalogue_model_not_the_name_the_client_sent(db):
    seed_catalogue()
    entry = catalog_load().models["gpt-4o-mini"]
    before = _requests("gpt-4o-mini")

    settle.observe(_call(entry), _record("GPT-4o-mini-any-spelling"))

    assert _requests("gpt-4o-mini") - before == 1
    assert _requests("GPT-4o-mini-any-spelling") == 0


def test_a_model_outside_the_catalogue_is_labelled_unknown():
    name = f"<script>{uuid.uuid4().hex}\x00"
    before = _requests("unknown")

    settle.observe(_call(None), _record(name))

    assert _requests("unknown") - before == 1
    assert _requests(name) == 0


def test_the_metrics_tell_how_many_dead_letters_wait(db):
    TraceDeadLetter.objects.create(
        created_at="2025-03-14T12:00:00Z",
        last_attempt_at="2025-03-14T12:00:00Z",
        source="stream",
        error="ValueError: nope",
        payload="{}",
        payload_sha256="0" * 64,
    )

    body = scrape(Client()).content.decode()

    assert re.search(r"^aqta_trace_dead_letters_pending 1\.0$", body, re.MULTILINE)


def _model_labels(body: str) -> set[str]:
    labels = set()
    for _, inside in SERIES.findall(body):
        for name, value in re.findall(r'(\w+)="([^"]*)"', inside):
            if name == "model":
                labels.add(value)
    return labels


def test_random_model_names_neither_grow_the_metrics_nor_reach_them_live(gw, make_key):
    secret, _ = make_key()
    catalogue = set(catalog_load().models)
    names = [
        "".join(random.choices(string.ascii_letters, k=12)) + suffix
        for suffix in ["<script>alert(1)</script>", "\u0000", '"} 1\nfake_metric 2', ""] * 25
    ]

    def call(model: str) -> None:
        response = httpx.post(
            gw.base_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 404

    def series() -> tuple[set, str]:
        body = httpx.get(gw.url + "/metrics").text
        return set(SERIES.findall(body)), body

    call("a-first-unknown-model")  # the series any unknown model is counted in
    before, _ = series()
    for name in names:
        call(name)
    after, body = series()

    assert after == before
    assert _model_labels(body) <= catalogue | {"unknown"}
    assert "<script>" not in body and "fake_metric" not in body and "\x00" not in body
    assert not any(name[:12] in body for name in names)


def test_a_live_gateway_with_a_token_serves_metrics_only_to_its_holder(
    transactional_db, mock_provider
):
    seed_catalogue()
    with run_gateway(
        mock_provider, redis_url=redis_url_for_tests(), AQTA_METRICS_TOKEN=TOKEN
    ) as live:
        refused = httpx.get(live.url + "/metrics")
        wrong = httpx.get(live.url + "/metrics", headers={"Authorization": "Bearer nope"})
        allowed = httpx.get(live.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert allowed.status_code == 200 and "aqta_" in allowed.text
