"""Receipts of real /v1 calls: a live gateway (uvicorn, the production ASGI app) in front
of the mock provider, called with the OpenAI SDK and plain HTTP.

Every call of a Healthcare key leaves one signed receipt of the decision, stored before the
answer, chained per organisation; other tiers leave none. On PostgreSQL with two server
workers, 100 concurrent calls make a chain without forks or gaps.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from django.db import connection

from gateway.models import Trace
from gateway.tests.conftest import redis_url_for_tests, run_gateway, seed_catalogue, wait_for
from healthcare import chain, keyring
from healthcare.models import Receipt
from healthcare.signing import issuer_key

VERIFIER = Path(sys.executable).with_name("aqta-verify-receipt")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def _chat(url: str, secret: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=body or CHAT,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _receipt(trace_id: str) -> Receipt:
    return Receipt.objects.get(trace_id=trace_id)


def _cli(document: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VERIFIER), "-", f"--key={issuer_key().public_key}", "--json"],
        input=document,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_forwarded_call_has_its_signed_receipt_before_the_answer(live_gateway, make_key, mock):
    secret, api_key = make_key(tier="healthcare")
    client = openai.OpenAI(base_url=live_gateway.url + "/v1", api_key=secret, max_retries=0)

    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )

    trace_id = response.headers["x-request-id"]
    # Durable before the answer: the row is there as soon as the client has its reply.
    row = _receipt(trace_id)
    document = json.loads(row.document)
    assert row.outcome == document["outcome"] == "ALLOWED"
    assert document["org_id"] == str(api_key.organization_id)
    assert document["model"] == "gpt-4o-mini"
    assert document["cost_prevented_eur"] == 0
    # The tier's quota, its default high-risk rules, the key's rate limit and loop guard.
    evaluated = ["high_risk_guard", "loop_guard", "model_access", "quota", "rate_limit"]
    assert document["policy_applied"] == sorted([*evaluated, "request_validation"])
    assert row.api_key_id == api_key.pk
    assert chain.document_check(document).valid
    verdict = _cli(row.document)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert wait_for(lambda: Receipt.objects.get(pk=row.pk).sequence == 1)
    assert chain.chain_verify(api_key.organization_id).valid


def test_refused_and_suppressed_calls_have_receipts_with_the_cost_they_prevented(
    live_gateway, make_key, mock
):
    secret, api_key = make_key(tier="healthcare", key_options={"rate_limit_per_minute": 2})
    # A cheap model and a short answer: the prevented cost is a few millionths of a euro.
    loop = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "again"}],
        "max_tokens": 10,
    }
    statuses = [_chat(live_gateway.url, secret, loop).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]

    rows = {r.outcome: r for r in Receipt.objects.filter(api_key_id=api_key.pk)}
    blocked = json.loads(rows["BLOCKED"].document)
    assert "rate_limit" in blocked["policy_applied"]
    # Written out in full (naive JSON would write 7e-06, which every verifier rejects).
    assert 0 < Decimal(str(blocked["cost_prevented_eur"])) < Decimal("0.0001")
    assert re.search(r'"cost_prevented_eur":0\.0000\d+,', rows["BLOCKED"].document)
    assert _cli(rows["BLOCKED"].document).returncode == 0
    assert Receipt.objects.filter(api_key_id=api_key.pk).count() == 3


def test_a_loop_is_a_suppressed_receipt(live_gateway, make_key, mock):
    secret, api_key = make_key(tier="healthcare", loop_guard_threshold=1)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "loop"}]}
    assert [_chat(live_gateway.url, secret, body).status_code for _ in range(2)] == [200, 429]

    suppressed = Receipt.objects.get(api_key_id=api_key.pk, outcome="SUPPRESSED")
    document = json.loads(suppressed.document)
    assert "loop_guard" in document["policy_applied"]
    assert document["cost_prevented_eur"] > 0
    assert chain.document_check(document).valid


def test_a_call_the_gateway_refuses_to_read_still_has_its_receipt(live_gateway, make_key, mock):
    secret, _ = make_key(tier="healthcare")
    response = httpx.post(
        live_gateway.url + "/v1/chat/completions",
        content=b'{"model": "gpt-4o-mini", "messages": "\x00',
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    row = _receipt(response.headers["x-request-id"])
    document = json.loads(row.document)
    assert (document["outcome"], document["model"]) == ("BLOCKED", "unknown")
    assert document["policy_applied"] == ["request_validation"]
    assert chain.document_check(document).valid


def test_other_tiers_have_no_receipts(live_gateway, make_key, mock):
    secret, api_key = make_key(tier="pro")
    response = _chat(live_gateway.url, secret)
    assert response.status_code == 200
    assert wait_for(lambda: Trace.objects.filter(api_key=api_key).exists())
    assert not Receipt.objects.filter(api_key_id=api_key.pk).exists()


def test_the_public_key_is_published(live_gateway, transactional_db):
    response = httpx.get(live_gateway.url + "/v1/attestation/public-key")
    assert response.status_code == 200
    body = response.json()
    assert body["public_key"] == issuer_key().public_key
    assert body["key_id"] == issuer_key().key_id
    assert body["algorithm"] == "Ed25519"
    current = [k for k in body["keys"] if k["current"]]
    assert [k["key_id"] for k in current] == [issuer_key().key_id]
    assert current[0]["valid_until"] is None
    keyring.forget()


# --- many workers, many calls --------------------------------------------------------------

CONCURRENT = 100


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker, mock_provider):
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency proof is on PostgreSQL (DATABASE_URL)")
    url = redis_url_for_tests()
    if url is None:
        pytest.skip("two workers share their limits through Redis")
    with django_db_blocker.unblock():
        seed_catalogue()
    with run_gateway(mock_provider, workers=2, redis_url=url) as gateway:
        yield gateway


async def _burst(url: str, secret: str) -> Counter[int]:
    limits = httpx.Limits(max_connections=CONCURRENT)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> int:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"n {i}"}]}
            response = await client.post(
                url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
            )
            return response.status_code

        return Counter(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


def test_a_hundred_concurrent_calls_on_two_workers_make_one_whole_chain(
    two_workers, make_key, mock
):
    secret, api_key = make_key(tier="healthcare")
    org_id = api_key.organization_id

    assert asyncio.run(_burst(two_workers.url, secret)) == Counter({200: CONCURRENT})

    # Every answered call was stored before its answer; the linker chains them shortly.
    assert Receipt.objects.filter(organization_id=org_id).count() == CONCURRENT
    assert wait_for(
        lambda: not Receipt.objects.filter(organization_id=org_id, sequence=None).exists()
    )
    assert wait_for(lambda: Trace.objects.filter(organization_id=org_id).count() == CONCURRENT)
    sequences = sorted(
        s or 0
        for s in Receipt.objects.filter(organization_id=org_id).values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, CONCURRENT + 1))  # no gaps, no repeats
    traced = set(Trace.objects.filter(organization_id=org_id).values_list("id", flat=True))
    receipts = set(
        Receipt.objects.filter(organization_id=org_id).values_list("trace_id", flat=True)
    )
    assert {f"tr_{t.hex}" for t in traced} == receipts
    verdict = chain.chain_verify(org_id)
    assert verdict.valid, verdict
    assert verdict.length == verdict.checked == CONCURRENT
