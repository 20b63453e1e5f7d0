"""Exactness of the limits across server processes, and the Redis-outage behaviour."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from gateway.models import Trace
from gateway.tests.conftest import redis_url_for_tests, run_gateway, seed_catalogue, wait_for

CLIENTS = 50
LIMIT = 20


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker, mock_provider):
    url = redis_url_for_tests()
    if url is None:
        pytest.skip("needs a reachable Redis: limits across processes live there")
    with django_db_blocker.unblock():
        seed_catalogue()
    with run_gateway(mock_provider, workers=2, redis_url=url) as gateway:
        yield gateway


async def _burst(url: str, secret: str) -> Counter:
    async def one(i: int, client: httpx.AsyncClient) -> int:
        response = await client.post(
            url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"req {i}"}]},
            headers={"Authorization": f"Bearer {secret}"},
        )
        return response.status_code

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        statuses = await asyncio.gather(*(one(i, client) for i in range(CLIENTS)))
    return Counter(statuses)


def test_the_rate_limit_is_exact_across_two_workers(two_workers, make_key, mock):
    seed_catalogue()
    secret, api_key = make_key(key_options={"rate_limit_per_minute": LIMIT})

    statuses = asyncio.run(_burst(two_workers.url, secret))

    assert statuses == Counter({200: LIMIT, 429: CLIENTS - LIMIT})
    assert wait_for(lambda: Trace.objects.filter(api_key=api_key).count() == CLIENTS)
    assert Trace.objects.filter(api_key=api_key, status="passed").count() == LIMIT


def test_the_monthly_quota_is_exact_across_two_workers(two_workers, make_key, mock):
    seed_catalogue()
    secret, _ = make_key(monthly_request_quota=LIMIT)

    statuses = asyncio.run(_burst(two_workers.url, secret))

    assert statuses == Counter({200: LIMIT, 402: CLIENTS - LIMIT})
    assert httpx.get(mock.url + "/_mock/stats").json()["chat_requests"] == LIMIT


@pytest.fixture(scope="module")
def redis_down(django_db_setup, django_db_blocker, mock_provider):
    with django_db_blocker.unblock():
        seed_catalogue()
    # Nothing listens on port 1: every Redis call fails at once.
    with run_gateway(mock_provider, redis_url="redis://127.0.0.1:1/0") as gateway:
        yield gateway


def test_without_redis_quota_and_budget_fail_closed(redis_down, make_key, mock):
    seed_catalogue()
    secret, _ = make_key(tier="pro")
    response = httpx.post(
        redis_down.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"


def test_without_redis_an_unmetered_organisation_fails_open(redis_down, make_key, mock):
    seed_catalogue()
    secret, api_key = make_key(tier="enterprise")  # custom limits: no quota, no budget
    response = httpx.post(
        redis_down.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert response.status_code == 200
    # The trace still reaches the database, written from the gateway process itself.
    assert wait_for(lambda: Trace.objects.filter(api_key=api_key).exists(), timeout=10)


def test_a_graceful_shutdown_flushes_the_in_process_buffer(
    django_db_setup, django_db_blocker, mock_provider, make_key
):
    """Embedded buffering (no Redis): what is buffered when the server stops is stored."""
    seed_catalogue()
    secret, api_key = make_key()
    with run_gateway(mock_provider, redis_url=None) as gateway:
        for i in range(5):
            response = httpx.post(
                gateway.base_url + "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{i}"}]},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert response.status_code == 200
        gateway.process.terminate()  # SIGTERM at once: well inside the 1 s flush interval
        gateway.process.wait(timeout=15)
    assert Trace.objects.filter(api_key=api_key).count() == 5
