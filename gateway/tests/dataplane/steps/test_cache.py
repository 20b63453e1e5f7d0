"""Step 5, the response cache (gateway/dataplane/steps/cache.py): wanted per organisation or
per request, keyed by the organisation and the request bytes, answered without upstream,
for the cache's lifetime; embedded and on the tests' Redis."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from accounts.key_records import KeyRecord
from gateway.dataplane import responsecache
from gateway.dataplane.call import Call
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import cache
from gateway.tests.dataplane.conftest import use_clock
from gateway.tests.dataplane.steps.fakes import Sent, catalog, key_record, routed, run, runtime
from gateway.tests.dataplane.steps.fakes import scope as scope_with

CATALOG = catalog()
ANSWER = {
    "id": "chatcmpl-up1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
}


def a_call(record: KeyRecord | None = None, **fields: Any) -> Call:
    return routed(CATALOG, record or key_record(), **fields)


@pytest.mark.parametrize(
    ("header", "org_default", "wanted"),
    [
        (None, False, False),
        (None, True, True),
        ("on", False, True),
        ("1", False, True),
        ("true", False, True),
        ("ON", False, True),
        ("off", True, False),
        ("0", True, False),
    ],
)
def test_the_request_header_decides_else_the_organisations_setting(header, org_default, wanted):
    call = a_call(key_record(response_cache=org_default))
    scope = scope_with(x_aqta_cache=header) if header is not None else scope_with()
    assert cache.wanted(scope, call) is wanted


def test_a_stream_is_never_cached():
    call = a_call(key_record(response_cache=True), stream=True)
    assert not cache.wanted(scope_with(x_aqta_cache="on"), call)


def test_a_call_without_a_key_is_never_cached():
    call = a_call()
    call.record = None
    assert not cache.wanted(scope_with(x_aqta_cache="on"), call)


def test_the_key_is_the_organisation_and_the_request_bytes():
    call = a_call()
    assert call.record is not None
    assert cache.key(call) == f"{call.record.org_id}:{hashlib.sha256(call.raw).hexdigest()}"


async def answered(rt: Runtime, call: Call) -> tuple[bool, Sent]:
    sent = Sent()
    return await cache.answer(rt, sent, call), sent


def scenario_on(
    backend: str | None, steps: Callable[[Runtime, list[str]], Awaitable[None]]
) -> None:
    """Run ``steps(rt, stored)``; the cache keys it adds to ``stored`` are deleted after."""

    async def scenario() -> None:
        stored: list[str] = []
        async with runtime(CATALOG, backend) as rt:
            try:
                await steps(rt, stored)
            finally:
                if rt.redis is not None and stored:
                    await rt.redis.delete(*("aqta:cache:" + key for key in stored))

    run(scenario)


def test_a_miss_sends_nothing_then_a_stored_answer_is_a_hit(backend):
    record = key_record()
    outcome: dict[str, Any] = {}

    async def steps(rt: Runtime, stored_keys: list[str]) -> None:
        first = a_call(record)
        stored_keys.append(cache.key(first))
        outcome["miss"] = await answered(rt, first)
        first.deployment = "openai"
        await cache.store(rt, first, dict(ANSWER))
        second = a_call(record)
        outcome["hit"] = await answered(rt, second)
        outcome["call"] = second

    scenario_on(backend, steps)
    hit, missed = outcome["miss"]
    assert hit is False and missed.messages == []
    hit, sent = outcome["hit"]
    call: Call = outcome["call"]
    assert hit is True
    assert call.cached and call.deployment == "openai"
    assert sent.status == 200
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-aqta-trace-id"] == call.trace_id
    answer = sent.json()
    assert {k: v for k, v in answer.items() if k != "aqta"} == ANSWER
    assert answer["aqta"] == {
        "trace_id": call.trace_id,
        "cost_eur": 0.0,
        "provider": "openai",
        "status": "passed",
        "cached": True,
        "loop_detected": False,
    }


def test_another_organisation_or_another_request_is_a_miss(backend):
    record = key_record()
    hits: list[bool] = []

    async def steps(rt: Runtime, stored_keys: list[str]) -> None:
        stored = a_call(record)
        stored_keys.append(cache.key(stored))
        stored.deployment = "openai"
        await cache.store(rt, stored, dict(ANSWER))
        others = [a_call(key_record()), a_call(record, temperature=0.5)]
        for other in others:
            hits.append((await answered(rt, other))[0])
        hits.append((await answered(rt, a_call(record)))[0])

    scenario_on(backend, steps)
    assert hits == [False, False, True]


def test_an_answer_is_forgotten_after_the_caches_lifetime(monkeypatch):
    clock = use_clock(monkeypatch, responsecache)
    record = key_record()
    hits: list[bool] = []

    async def scenario() -> None:
        async with runtime(CATALOG) as rt:
            stored = a_call(record)
            stored.deployment = "openai"
            await cache.store(rt, stored, dict(ANSWER))
            clock.advance(rt.cache.ttl - 1)
            hits.append((await answered(rt, a_call(record)))[0])
            clock.advance(2)
            hits.append((await answered(rt, a_call(record)))[0])

    run(scenario)
    assert hits == [True, False]


def test_an_answer_in_redis_expires_with_the_caches_lifetime(redis_url):
    ttls: list[int] = []

    async def scenario() -> None:
        async with runtime(CATALOG, redis_url) as rt:
            assert rt.redis is not None
            stored = a_call()
            await cache.store(rt, stored, dict(ANSWER))
            key = "aqta:cache:" + cache.key(stored)
            ttls.append(await rt.redis.ttl(key))
            await rt.redis.delete(key)

    run(scenario)
    assert 0 < ttls[0] <= 3600


def test_a_lifetime_of_nothing_stores_nothing():
    hits: list[bool] = []

    async def scenario() -> None:
        async with runtime(CATALOG) as rt:
            rt.cache.ttl = 0
            record = key_record()
            await cache.store(rt, a_call(record), dict(ANSWER))
            hits.append((await answered(rt, a_call(record)))[0])

    run(scenario)
    assert hits == [False]
