"""The exact-match response cache (gateway/dataplane/responsecache.py), embedded and in
Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from gateway.dataplane import responsecache as responsecache_module
from gateway.dataplane.responsecache import ResponseCache
from gateway.tests.dataplane.conftest import Clock, unreachable_redis, use_clock

TTL = 60
ANSWER = {"provider": "openai", "body": {"id": "chatcmpl-1", "choices": [{"index": 0}]}}


@dataclass
class World:
    client: Redis | None
    clock: Clock
    used: list[str] = field(default_factory=list)

    def cache(self, ttl: int = TTL) -> ResponseCache:
        return ResponseCache(self.client, ttl)

    def key(self) -> str:
        """A cache key as the gateway builds them: organisation, then the request's hash."""
        key = f"{uuid.uuid4()}:{uuid.uuid4().hex}"
        self.used.append(key)
        return key


Scenario = Callable[[World], Awaitable[None]]


def _runner(url: str | None, clock: Clock) -> Callable[[Scenario], None]:
    def run(scenario: Scenario) -> None:
        async def main() -> None:
            client = Redis.from_url(url) if url else None
            world = World(client, clock)
            try:
                await scenario(world)
            finally:
                if client is not None:
                    if world.used:
                        await client.delete(*("aqta:cache:" + key for key in world.used))
                    await client.aclose()

        asyncio.run(main())

    return run


@pytest.fixture(params=["embedded", "redis"])
def run(request, monkeypatch) -> Callable[[Scenario], None]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return _runner(url, use_clock(monkeypatch, responsecache_module))


@pytest.fixture
def run_shared(redis_url, monkeypatch) -> Callable[[Scenario], None]:
    return _runner(redis_url, use_clock(monkeypatch, responsecache_module))


def test_a_stored_answer_is_found_under_its_key_only(run):
    async def scenario(world: World) -> None:
        cache = world.cache()
        key, other = world.key(), world.key()
        assert await cache.get(key) is None
        await cache.put(key, ANSWER)
        assert await cache.get(key) == ANSWER
        assert await cache.get(other) is None

    run(scenario)


def test_every_hit_is_a_copy_of_its_own(run):
    """The gateway adds its ``aqta`` object to the body it answers from a hit."""

    async def scenario(world: World) -> None:
        cache = world.cache()
        key = world.key()
        await cache.put(key, ANSWER)
        hit = await cache.get(key)
        assert hit is not None
        hit["body"]["aqta"] = {"cached": True}
        assert await cache.get(key) == ANSWER

    run(scenario)


def test_an_answer_is_kept_for_the_ttl(run):
    async def scenario(world: World) -> None:
        cache = world.cache()
        key = world.key()
        await cache.put(key, ANSWER)
        if world.client is not None:
            assert 0 < await world.client.ttl("aqta:cache:" + key) <= TTL
            return
        world.clock.advance(TTL - 1)
        assert await cache.get(key) == ANSWER
        world.clock.advance(2)
        assert await cache.get(key) is None

    run(scenario)


def test_workers_share_answers_through_redis(run_shared):
    async def scenario(world: World) -> None:
        key = world.key()
        await world.cache().put(key, ANSWER)
        assert await world.cache().get(key) == ANSWER

    run_shared(scenario)


def test_the_local_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(responsecache_module, "LOCAL_MAX", 3)

    async def scenario() -> None:
        cache = ResponseCache(None, TTL)
        for i in range(7):
            await cache.put(f"org:{i}", ANSWER)
            assert len(cache.local) <= 3
        assert await cache.get("org:6") == ANSWER

    asyncio.run(scenario())


def test_without_redis_nothing_is_cached_and_nothing_fails(caplog):
    async def scenario() -> None:
        client = unreachable_redis()
        try:
            cache = ResponseCache(client, TTL)
            with caplog.at_level(logging.WARNING, logger="aqta.gateway"):
                await cache.put("org:request", ANSWER)
            assert await cache.get("org:request") is None
            assert cache.local == {}  # not kept in memory instead: workers would disagree
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert "redis unavailable: response not cached" in caplog.text


def test_a_ttl_of_zero_caches_nothing_and_says_nothing(run, caplog):
    """Embedded and in Redis alike; Redis refuses SET with EX 0, which read as an outage."""

    async def scenario(world: World) -> None:
        cache = world.cache(ttl=0)
        key = world.key()
        with caplog.at_level(logging.WARNING, logger="aqta.gateway"):
            await cache.put(key, ANSWER)
        assert await cache.get(key) is None
        assert cache.local == {}

    run(scenario)
    assert "redis unavailable" not in caplog.text
