"""Admission policies, with the same expectations for the Redis and the in-process limiter.

Each test writes its scenario as a coroutine taking the limiter; the ``run`` fixture runs it
with ``asyncio.run`` against each backend. Organisations and keys are fresh uuids, so runs
never share counters.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from accounts.key_records import revoked_marker
from gateway.dataplane.policy import (
    BUDGET_KEY,
    BUDGET_ORG,
    LOOP,
    OK,
    QUOTA,
    RATE,
    REVOKED,
    Ask,
    LocalLimiter,
    RedisLimiter,
    budget_keys,
)
from gateway.tests.conftest import redis_url_for_tests

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()
LAST_MINUTE_OF_MARCH = datetime(2025, 3, 31, 23, 59, 30, tzinfo=UTC).timestamp()
FIRST_MINUTE_OF_APRIL = datetime(2025, 4, 1, 0, 0, 30, tzinfo=UTC).timestamp()

Scenario = Callable[..., Coroutine[Any, Any, None]]


def _run_local(scenario: Scenario) -> None:
    asyncio.run(scenario(LocalLimiter()))


def _run_redis(url: str, scenario: Scenario, *, with_client: bool = False) -> None:
    async def main() -> None:
        client = Redis.from_url(url)  # one per event loop: asyncio.run makes a new loop
        try:
            limiter = RedisLimiter(client)
            await (scenario(limiter, client) if with_client else scenario(limiter))
        finally:
            await client.aclose()

    asyncio.run(main())


def _redis_url() -> str:
    url = redis_url_for_tests()
    if url is None:
        pytest.skip("no Redis: set REDIS_URL or run one on 127.0.0.1:6379 for the Redis limiter")
    return url


@pytest.fixture(params=["local", "redis"])
def run(request) -> Callable[[Scenario], None]:
    """Run ``scenario(limiter)`` against the in-process and the Redis limiter."""
    if request.param == "local":
        return _run_local
    url = _redis_url()
    return lambda scenario: _run_redis(url, scenario)


@pytest.fixture
def run_redis() -> Callable[[Scenario], None]:
    """Run ``scenario(limiter, client)`` against the Redis limiter only."""
    url = _redis_url()
    return lambda scenario: _run_redis(url, scenario, with_client=True)


@pytest.fixture
def ask() -> Callable[..., Ask]:
    """Asks for one fresh organisation and key: no limits but the ones a test sets.

    Each ask is a new request (request id) with its own fingerprint unless one is given.
    """
    org_id, key_id = str(uuid.uuid4()), str(uuid.uuid4())

    def make(**fields) -> Ask:
        values = {
            "org_id": org_id,
            "key_id": key_id,
            "request_id": uuid.uuid4().hex,
            "rate_limit": 1_000,
            "quota": None,
            "budget_org": None,
            "budget_key": None,
            "estimate": 0,
            "fingerprint": uuid.uuid4().hex,
            "loop_threshold": 10,
            "loop_window": 60,
            "cycle": False,
        }
        return Ask(**{**values, **fields})

    return make


async def verdicts(limiter, asks: list[Ask], now: float) -> list[int]:
    return [(await limiter.admit(a, now)).verdict for a in asks]


# --- rate limit ---------------------------------------------------------------------------


def test_the_rate_limit_admits_exactly_n_requests_a_minute(run, ask):
    async def scenario(limiter):
        admitted = [await limiter.admit(ask(rate_limit=3), T0 + i) for i in range(3)]
        refused = await limiter.admit(ask(rate_limit=3), T0 + 10)

        assert [a.verdict for a in admitted] == [OK, OK, OK]
        assert [a.remaining for a in admitted] == [2, 1, 0]
        assert (refused.verdict, refused.limit, refused.remaining) == (RATE, 3, 0)
        assert refused.reset == 50  # the oldest admitted request leaves the window at T0 + 60

    run(scenario)


def test_the_rate_limit_admits_again_once_the_window_has_slid(run, ask):
    async def scenario(limiter):
        assert await verdicts(limiter, [ask(rate_limit=2) for _ in range(2)], T0) == [OK, OK]
        assert await verdicts(limiter, [ask(rate_limit=2)], T0 + 30) == [RATE]

        later = await verdicts(limiter, [ask(rate_limit=2) for _ in range(3)], T0 + 61)

        assert later == [OK, OK, RATE]

    run(scenario)


def test_the_rate_limit_window_slides_one_request_at_a_time(run, ask):
    async def scenario(limiter):
        await verdicts(limiter, [ask(rate_limit=2)], T0)
        await verdicts(limiter, [ask(rate_limit=2)], T0 + 30)

        # At T0 + 61 only the first request has left the window.
        assert await verdicts(limiter, [ask(rate_limit=2) for _ in range(2)], T0 + 61) == [OK, RATE]

    run(scenario)


def test_the_rate_limit_is_per_key(run, ask):
    async def scenario(limiter):
        other_key = str(uuid.uuid4())
        assert await verdicts(limiter, [ask(rate_limit=1), ask(rate_limit=1)], T0) == [OK, RATE]

        assert await verdicts(limiter, [ask(rate_limit=1, key_id=other_key)], T0) == [OK]

    run(scenario)


def test_a_rate_limited_request_consumes_no_quota(run, ask):
    async def scenario(limiter):
        await verdicts(limiter, [ask(rate_limit=2, quota=10) for _ in range(5)], T0)

        requests, _ = await limiter.usage(ask().org_id, T0)
        assert requests == 2

    run(scenario)


# --- loop guard ---------------------------------------------------------------------------


def test_the_same_fingerprint_over_the_threshold_is_a_loop(run, ask):
    async def scenario(limiter):
        same = [ask(fingerprint="f" * 32, loop_threshold=3) for _ in range(5)]
        results = [await limiter.admit(a, T0 + i) for i, a in enumerate(same)]

        assert [r.verdict for r in results] == [OK, OK, OK, LOOP, LOOP]
        assert 0 < results[3].retry_after <= 60

    run(scenario)


def test_different_fingerprints_are_not_a_loop(run, ask):
    async def scenario(limiter):
        assert await verdicts(limiter, [ask(loop_threshold=2) for _ in range(6)], T0) == [OK] * 6

    run(scenario)


def test_a_refused_loop_consumes_no_quota_and_no_rate(run, ask):
    async def scenario(limiter):
        limits = {"rate_limit": 3, "quota": 100, "loop_threshold": 1}
        looping = [ask(fingerprint="a" * 32, **limits) for _ in range(4)]
        assert await verdicts(limiter, looping, T0) == [OK, LOOP, LOOP, LOOP]

        # The three refused repeats left room for two other requests within the minute.
        others = await verdicts(limiter, [ask(**limits) for _ in range(3)], T0 + 1)

        assert others == [OK, OK, RATE]
        assert (await limiter.usage(ask().org_id, T0))[0] == 3

    run(scenario)


def test_a_repeating_cycle_is_a_loop_at_once(run, ask):
    async def scenario(limiter):
        result = await limiter.admit(ask(cycle=True, quota=5), T0)

        assert result.verdict == LOOP
        assert result.retry_after > 0
        assert (await limiter.usage(ask().org_id, T0))[0] == 0

    run(scenario)


# --- monthly quota ------------------------------------------------------------------------


def test_the_quota_admits_exactly_q_requests_a_month(run, ask):
    async def scenario(limiter):
        results = await verdicts(limiter, [ask(quota=3) for _ in range(5)], T0)

        assert results == [OK, OK, OK, QUOTA, QUOTA]
        assert (await limiter.usage(ask().org_id, T0))[0] == 3

    run(scenario)


def test_the_quota_is_shared_by_the_keys_of_an_organisation(run, ask):
    async def scenario(limiter):
        second_key = str(uuid.uuid4())
        asks = [ask(quota=2), ask(quota=2, key_id=second_key), ask(quota=2, key_id=second_key)]

        assert await verdicts(limiter, asks, T0) == [OK, OK, QUOTA]

    run(scenario)


def test_the_quota_resets_in_a_new_month(run, ask):
    async def scenario(limiter):
        march = await verdicts(limiter, [ask(quota=2) for _ in range(3)], LAST_MINUTE_OF_MARCH)
        april = await verdicts(limiter, [ask(quota=2) for _ in range(3)], FIRST_MINUTE_OF_APRIL)

        assert march == [OK, OK, QUOTA]
        assert april == [OK, OK, QUOTA]
        assert (await limiter.usage(ask().org_id, FIRST_MINUTE_OF_APRIL))[0] == 2

    run(scenario)


# --- EUR budget ---------------------------------------------------------------------------


def test_the_org_budget_refuses_what_would_exceed_the_reservations(run, ask):
    async def scenario(limiter):
        asks = [ask(budget_org=100, estimate=40) for _ in range(3)]

        assert await verdicts(limiter, asks, T0) == [OK, OK, BUDGET_ORG]
        assert await limiter.usage(ask().org_id, T0) == (2, 80)

    run(scenario)


def test_settling_a_cheaper_call_frees_budget(run, ask):
    async def scenario(limiter):
        first, second, third = (ask(budget_org=100, estimate=40) for _ in range(3))
        assert await verdicts(limiter, [first, second, third], T0) == [OK, OK, BUDGET_ORG]

        await limiter.settle(first, T0 + 1, actual=10)

        assert await limiter.usage(ask().org_id, T0) == (2, 50)
        assert await verdicts(limiter, [third], T0 + 2) == [OK]
        assert await limiter.usage(ask().org_id, T0) == (3, 90)

    run(scenario)


def test_settling_a_dearer_call_uses_up_budget(run, ask):
    async def scenario(limiter):
        first = ask(budget_org=100, estimate=40)
        assert await verdicts(limiter, [first], T0) == [OK]

        await limiter.settle(first, T0 + 1, actual=70)

        assert await verdicts(limiter, [ask(budget_org=100, estimate=40)], T0 + 2) == [BUDGET_ORG]
        assert await limiter.usage(ask().org_id, T0) == (1, 70)

    run(scenario)


def test_the_key_budget_refuses_when_the_key_spent_it(run, ask):
    async def scenario(limiter):
        asks = [ask(budget_key=100, estimate=60) for _ in range(2)]

        assert await verdicts(limiter, asks, T0) == [OK, BUDGET_KEY]

    run(scenario)


def test_the_key_budget_leaves_other_keys_alone(run, ask):
    async def scenario(limiter):
        other_key = str(uuid.uuid4())
        spent = [ask(budget_key=100, estimate=60) for _ in range(2)]
        assert await verdicts(limiter, spent, T0) == [OK, BUDGET_KEY]

        other = ask(budget_key=100, estimate=60, key_id=other_key)

        assert await verdicts(limiter, [other], T0) == [OK]

    run(scenario)


def test_the_org_budget_is_checked_before_the_key_budget(run, ask):
    async def scenario(limiter):
        both = [ask(budget_org=50, budget_key=50, estimate=30) for _ in range(2)]

        assert await verdicts(limiter, both, T0) == [OK, BUDGET_ORG]

    run(scenario)


def test_a_budget_refusal_consumes_no_quota(run, ask):
    async def scenario(limiter):
        asks = [ask(quota=10, budget_org=100, estimate=60) for _ in range(4)]

        assert await verdicts(limiter, asks, T0) == [OK, BUDGET_ORG, BUDGET_ORG, BUDGET_ORG]
        assert await limiter.usage(ask().org_id, T0) == (1, 60)

    run(scenario)


def test_the_budget_resets_in_a_new_month(run, ask):
    async def scenario(limiter):
        march = [ask(budget_org=100, estimate=60) for _ in range(2)]
        april = [ask(budget_org=100, estimate=60)]

        assert await verdicts(limiter, march, LAST_MINUTE_OF_MARCH) == [OK, BUDGET_ORG]
        assert await verdicts(limiter, april, FIRST_MINUTE_OF_APRIL) == [OK]

    run(scenario)


def test_usage_reports_nothing_for_an_unknown_organisation(run):
    async def scenario(limiter):
        assert await limiter.usage(str(uuid.uuid4()), T0) == (0, 0)

    run(scenario)


# --- concurrency --------------------------------------------------------------------------


def test_concurrent_requests_never_exceed_the_rate_limit(run, ask):
    async def scenario(limiter):
        asks = [ask(rate_limit=20) for _ in range(50)]

        results = await asyncio.gather(*(limiter.admit(a, T0) for a in asks))

        assert sum(r.verdict == OK for r in results) == 20
        assert {r.verdict for r in results} == {OK, RATE}
        assert (await limiter.usage(ask().org_id, T0))[0] == 20

    run(scenario)


def test_concurrent_requests_never_exceed_the_budget(run, ask):
    async def scenario(limiter):
        asks = [ask(budget_org=1_000, estimate=100) for _ in range(50)]

        results = await asyncio.gather(*(limiter.admit(a, T0) for a in asks))

        assert sum(r.verdict == OK for r in results) == 10
        assert await limiter.usage(ask().org_id, T0) == (10, 1_000)

    run(scenario)


# --- Redis only: revocation and key hygiene -----------------------------------------------


def test_a_revoked_key_is_refused_by_the_redis_limiter(run_redis, ask):
    async def scenario(limiter, client):
        request = ask(quota=10)
        assert (await limiter.admit(request, T0)).verdict == OK

        await client.set(revoked_marker(request.org_id, request.key_id), 1, ex=60)

        assert (await limiter.admit(replace(request, request_id="r2"), T0)).verdict == REVOKED
        assert (await limiter.usage(request.org_id, T0))[0] == 1

    run_redis(scenario)


def test_a_revoked_marker_leaves_other_keys_of_the_organisation_alone(run_redis, ask):
    async def scenario(limiter, client):
        revoked = ask()
        await client.set(revoked_marker(revoked.org_id, revoked.key_id), 1, ex=60)

        other = ask(key_id=str(uuid.uuid4()))

        assert (await limiter.admit(revoked, T0)).verdict == REVOKED
        assert (await limiter.admit(other, T0)).verdict == OK

    run_redis(scenario)


def test_the_redis_limiter_keys_all_expire(run_redis, ask):
    async def scenario(limiter, client):
        request = ask(quota=10, budget_org=1_000, budget_key=1_000, estimate=40)
        assert (await limiter.admit(request, T0)).verdict == OK
        await limiter.settle(request, T0, actual=10)

        keys = await client.keys("aqta:*{" + request.org_id + "}*")

        assert len(keys) == 5  # rate log, quota, org budget, key budget, loop counter
        assert all([await client.ttl(key) > 0 for key in keys])

    run_redis(scenario)


def test_spend_counters_expire_without_a_budget(run_redis, ask):
    async def scenario(limiter, client):
        request = ask()  # no budget: the estimate is 0, as the gateway sends it
        assert (await limiter.admit(request, T0)).verdict == OK

        await limiter.settle(request, T0, actual=25)

        assert await limiter.usage(request.org_id, T0) == (1, 25)
        for key in budget_keys(request, T0):
            assert await client.ttl(key) > 0, key

    run_redis(scenario)
