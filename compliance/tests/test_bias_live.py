"""Bias detection runs against a live gateway (uvicorn, the production ASGI app) in front
of the mock provider in its clinical modes: a biased model is flagged, a fair one is not,
a small run is inconclusive, the budget cap stops a run, passive monitoring finds a gap
in logged traffic, and the probes are the organisation's own billed, traced traffic."""

from __future__ import annotations

import copy
from decimal import Decimal

import httpx
import pytest
from rest_framework.test import APIClient

from compliance.bias.probes import DEFAULT_PROBE_SET
from compliance.models import BiasRun, ProbeCall, ProbeCallStatus
from gateway.mock_provider import MockConfig, MockServer
from gateway.models import Trace
from gateway.tests.conftest import (
    drain_traces,
    redis_url_for_tests,
    run_gateway,
    seed_catalogue,
    wait_for,
)
from healthcare.models import Receipt

pytestmark = pytest.mark.usefixtures("eager_jobs")

URL = "/api/compliance/bias-detection"


def compact_set() -> dict:
    """Two triage cases, two attributes: 12 variants a repetition. (A variant sent more
    often than the loop guard's threshold, 10 a minute, would be waited out.)"""
    definition = copy.deepcopy(DEFAULT_PROBE_SET)
    definition["name"] = "Triage, sex and insurance"
    definition["attributes"] = {k: definition["attributes"][k] for k in ("sex", "insurance")}
    triage = [c for c in definition["cases"] if c["id"].startswith("triage-")]
    definition["cases"] = [{**case, "outcomes": ["high_urgency"]} for case in triage]
    definition["outcomes"] = {"high_urgency": definition["outcomes"]["high_urgency"]}
    return definition


@pytest.fixture(scope="module")
def biased_gateway(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        seed_catalogue()
    with (
        MockServer(MockConfig(chunks=5, clinical="biased")) as mock,
        run_gateway(mock, redis_url=redis_url_for_tests()) as gateway,
    ):
        yield gateway


@pytest.fixture
def clinic(make_key):
    secret, api_key = make_key(tier="healthcare")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client, api_key.organization, secret


def start(client: APIClient, **body) -> dict:
    response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    run: dict = client.get(f"{URL}/{response.json()['id']}").json()
    return run


def own_set(client: APIClient, definition: dict) -> str:
    response = client.post(
        "/api/compliance/probe-sets",
        {"name": definition["name"], "definition": definition},
        format="json",
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def finding(run: dict, attribute: str, outcome: str = "high_urgency") -> dict:
    return next(
        f for f in run["findings"] if f["attribute"] == attribute and f["outcome"] == outcome
    )


def test_a_biased_model_is_flagged(biased_gateway, transactional_db, clinic, settings):
    settings.AQTA_GATEWAY_URL = biased_gateway.url
    client, _, _ = clinic
    probe_set = own_set(client, compact_set())

    run = start(client, model="gpt-4o-mini", probe_set=probe_set, repetitions=4)

    assert run["status"] == "completed", run
    assert run["calls"] == {"total": 48, "done": 48, "failed": 0, "by_status": {"answered": 48}}
    sex, insurance = finding(run, "sex"), finding(run, "insurance")
    assert sex["status"] == "flagged" and sex["test"] == "mcnemar"
    assert sex["worst_group"] == "female" and sex["min_impact_ratio"] == 0
    rates = {g["group"]: g["rate"] for g in sex["groups"]}
    assert rates == {"female": 0.0, "male": 1.0}
    assert insurance["status"] == "flagged" and insurance["test"] == "cochrans_q"
    assert insurance["worst_group"] == "uninsured" and insurance["q_value"] < 0.05
    assert run["summary"]["flagged"] == 2
    assert {f["attribute"] for f in run["flags"]} == {"sex", "insurance"}
    drain_traces()


def test_a_fair_model_is_not_flagged(live_gateway, transactional_db, clinic, mock, settings):
    settings.AQTA_GATEWAY_URL = live_gateway.url
    client, _, _ = clinic
    probe_set = own_set(client, compact_set())

    run = start(client, model="gpt-4o-mini", probe_set=probe_set, repetitions=10, concurrency=8)

    assert run["status"] == "completed" and run["calls"]["done"] == 120
    for attribute in ("sex", "insurance"):
        found = finding(run, attribute)
        assert found["status"] == "not_flagged", found
        assert found["n"] >= found["n_required"] and found["min_impact_ratio"] == 1
    assert run["summary"] == {"findings": 2, "flagged": 0, "not_flagged": 2, "inconclusive": 0}
    drain_traces()


def test_a_small_run_is_inconclusive_and_says_what_it_needs(
    biased_gateway, transactional_db, clinic, settings
):
    settings.AQTA_GATEWAY_URL = biased_gateway.url
    client, _, _ = clinic
    run = start(
        client, model="gpt-4o-mini", probe_set=own_set(client, compact_set()), repetitions=2
    )

    sex = finding(run, "sex")
    assert sex["status"] == "inconclusive" and 0 < sex["n"] < sex["n_required"]
    assert sex["n_required"] > 2 and str(sex["n_required"]) in sex["reason"]
    drain_traces()


def test_the_default_set_runs_billed_traced_and_receipted(
    live_gateway, transactional_db, clinic, mock, settings
):
    """The shipped probe set end to end: every answer classified, each call the
    organisation's traffic (its key, its traces, its receipts, its cost)."""
    settings.AQTA_GATEWAY_URL = live_gateway.url
    client, organization, _ = clinic

    run = start(client, model="gpt-4o-mini", repetitions=1, concurrency=8)

    assert run["status"] == "completed" and run["calls"]["done"] == 90
    calls = list(ProbeCall.objects.filter(run_id=run["id"]))
    assert {c.status for c in calls} == {ProbeCallStatus.ANSWERED}
    structured = [c.outcomes for c in calls]
    assert all(value is not None for outcomes in structured for value in outcomes.values())
    assert mock.stats()["chat_requests"] == 90
    stored = BiasRun.objects.get(pk=run["id"])
    assert stored.api_key is not None and stored.api_key.revoked_at is not None
    assert stored.key_secret_encrypted == ""
    traces = wait_for(lambda: Trace.objects.filter(api_key=stored.api_key).count() == 90, 20)
    assert traces
    billed = sum(t.cost_eur for t in Trace.objects.filter(api_key=stored.api_key))
    assert billed == stored.spent_eur > 0
    assert Receipt.objects.filter(organization=organization).count() >= 90
    assert not run["flags"]
    binary = [f for f in run["findings"] if f["kind"] == "binary"]
    assert binary and all(f["status"] == "inconclusive" for f in binary)  # one repetition
    drain_traces()


def test_the_budget_cap_stops_a_run(live_gateway, transactional_db, clinic, mock, settings):
    settings.AQTA_GATEWAY_URL = live_gateway.url
    client, _, _ = clinic
    probe_set = own_set(client, compact_set())

    run = start(
        client,
        model="gpt-4o",
        probe_set=probe_set,
        repetitions=20,
        budget_cap_eur="0.01",
        concurrency=2,
    )

    assert run["status"] == "completed" and run["stopped_reason"] == "The budget cap was reached"
    by_status = run["calls"]["by_status"]
    assert by_status.get("skipped", 0) > 0 and by_status["answered"] < 120
    assert Decimal(run["spent_eur"]) <= Decimal("0.01")
    drain_traces()


def test_passive_monitoring_finds_a_gap_in_logged_traffic(
    biased_gateway, transactional_db, make_key, settings
):
    secret, api_key = make_key(tier="healthcare", content_logging=True)
    case = DEFAULT_PROBE_SET["cases"][0]["prompt"]
    for noun, count in (("woman", 30), ("man", 30)):
        prompt = case.replace("{Patient}", f"A 50-year-old {noun}")
        for n in range(count):  # each its own prompt: the loop guard stops identical ones
            content = f"Visit {n}. {prompt}"
            response = httpx.post(
                biased_gateway.url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert response.status_code == 200
    assert wait_for(lambda: Trace.objects.filter(api_key=api_key).count() == 60, 20)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    run = start(client, method="passive")

    assert run["status"] == "completed" and run["calls"]["done"] == 60
    sex = finding(run, "sex")
    assert sex["design"] == "unpaired" and sex["test"] == "chi_square"
    assert sex["status"] == "flagged" and sex["worst_group"] == "female", sex
    assert {g["group"]: g["n"] for g in sex["groups"]} == {"female": 30, "male": 30}
    drain_traces()
