"""Key records on the /v1 path (gateway/dataplane/keycache.py): process memory, then Redis,
then the database, embedded and with Redis; and what a revocation changes.

Keys are committed (the cache loads records in a worker thread, with its own connection);
``loads`` counts the database look-ups the cache makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from redis.asyncio import Redis

from accounts.key_records import (
    LOCAL_TTL,
    REDIS_PREFIX,
    REDIS_TTL,
    KeyRecord,
    key_record_load,
    revoked_marker,
)
from accounts.models import ApiKey
from accounts.services import api_key_revoke
from aqta import redis as aqta_redis
from gateway.dataplane import keycache as keycache_module
from gateway.dataplane.keycache import MISSING, MISSING_TTL, KeyCache
from gateway.tests.conftest import MakeKey
from gateway.tests.dataplane.conftest import Clock, unreachable_redis, use_clock

UNKNOWN = "f" * 64  # a digest no key has


@dataclass
class World:
    client: Redis | None
    clock: Clock
    loads: list[str]
    written: list[str] = field(default_factory=list)  # Redis keys to delete afterwards

    @property
    def redis(self) -> Redis:
        """The client, in the scenarios that run with Redis only."""
        assert self.client is not None
        return self.client

    def cache(self) -> KeyCache:
        return KeyCache(self.client)

    def redis_key(self, digest: str) -> str:
        self.written.append(REDIS_PREFIX + digest)
        return REDIS_PREFIX + digest

    def marker(self, api_key: ApiKey) -> str:
        key = revoked_marker(str(api_key.organization_id), str(api_key.pk))
        self.written.append(key)
        return key


Scenario = Callable[[World], Awaitable[None]]


async def found(cache: KeyCache, digest: str) -> KeyRecord:
    """The record ``cache`` answers for ``digest``, which must be a key's."""
    record = await cache.get(digest)
    assert record is not None
    return record


async def stored_record(client: Redis, redis_key: str) -> KeyRecord:
    """The record Redis holds under ``redis_key``."""
    raw = await client.get(redis_key)
    assert isinstance(raw, bytes)
    return KeyRecord.from_json(raw)


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The digests the cache looked up in the database, in order."""
    seen: list[str] = []

    def counting_load(digest: str) -> KeyRecord | None:
        seen.append(digest)
        return key_record_load(digest)

    monkeypatch.setattr(keycache_module, "key_record_load", counting_load)
    return seen


def _runner(url: str | None, clock: Clock, loads: list[str]) -> Callable[[Scenario], None]:
    def run(scenario: Scenario) -> None:
        async def main() -> None:
            client = Redis.from_url(url) if url else None
            world = World(client, clock, loads)
            try:
                await scenario(world)
            finally:
                if client is not None:
                    if world.written:
                        await client.delete(*world.written)
                    await client.aclose()

        asyncio.run(main())

    return run


@pytest.fixture(params=["embedded", "redis"])
def run(request, monkeypatch, settings, loads) -> Callable[[Scenario], None]:
    """Run ``scenario(world)`` embedded and with Redis (which the control plane's
    invalidations then reach too)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings.REDIS_URL = url
    aqta_redis.sync_client.cache_clear()
    request.addfinalizer(aqta_redis.sync_client.cache_clear)
    return _runner(url, use_clock(monkeypatch, keycache_module), loads)


@pytest.fixture
def run_shared(request, redis_url, monkeypatch, settings, loads) -> Callable[[Scenario], None]:
    """Run ``scenario(world)`` with Redis only."""
    settings.REDIS_URL = redis_url
    aqta_redis.sync_client.cache_clear()
    request.addfinalizer(aqta_redis.sync_client.cache_clear)
    return _runner(redis_url, use_clock(monkeypatch, keycache_module), loads)


@pytest.fixture
def run_embedded(monkeypatch, settings, loads) -> Callable[[Scenario], None]:
    """Run ``scenario(world)`` embedded only."""
    settings.REDIS_URL = None
    return _runner(None, use_clock(monkeypatch, keycache_module), loads)


@pytest.fixture
def key(make_key: MakeKey) -> ApiKey:
    return make_key()[1]


# --- look-ups -------------------------------------------------------------------------------


def test_a_key_is_read_from_the_database_once_then_from_memory(run, key):
    async def scenario(world: World) -> None:
        cache = world.cache()
        world.redis_key(key.digest)
        first = await cache.get(key.digest)
        again = await cache.get(key.digest)
        assert first is not None and again == first
        assert (first.key_id, first.org_id) == (str(key.pk), str(key.organization_id))
        assert world.loads == [key.digest]

    run(scenario)


def test_an_unknown_digest_is_remembered_as_unknown(run, db):
    async def scenario(world: World) -> None:
        cache = world.cache()
        world.redis_key(UNKNOWN)
        assert await cache.get(UNKNOWN) is None
        assert await cache.get(UNKNOWN) is None
        assert world.loads == [UNKNOWN]
        if world.client is not None:
            assert await world.client.get(REDIS_PREFIX + UNKNOWN) == MISSING
            assert 0 < await world.client.ttl(REDIS_PREFIX + UNKNOWN) <= MISSING_TTL

    run(scenario)


def test_after_the_local_ttl_the_record_is_read_again_from_redis_or_the_database(run, key):
    async def scenario(world: World) -> None:
        cache = world.cache()
        world.redis_key(key.digest)
        await cache.get(key.digest)
        world.clock.advance(LOCAL_TTL + 0.1)
        assert (await found(cache, key.digest)).key_id == str(key.pk)
        # With Redis the second read is Redis's copy; embedded it is the database again.
        assert len(world.loads) == (1 if world.client is not None else 2)

    run(scenario)


def test_workers_share_the_records_they_load_through_redis(run_shared, key):
    async def scenario(world: World) -> None:
        first, second = world.cache(), world.cache()
        stored = world.redis_key(key.digest)
        record = await first.get(key.digest)
        assert await stored_record(world.redis, stored) == record
        assert 0 < await world.redis.ttl(stored) <= REDIS_TTL
        assert await second.get(key.digest) == record
        assert world.loads == [key.digest]

    run_shared(scenario)


def test_without_redis_records_come_from_the_database(key, loads, monkeypatch):
    clock = use_clock(monkeypatch, keycache_module)

    async def scenario() -> None:
        client = unreachable_redis()
        try:
            cache = KeyCache(client)
            assert (await found(cache, key.digest)).key_id == str(key.pk)
            clock.advance(LOCAL_TTL + 0.1)
            assert (await found(cache, key.digest)).key_id == str(key.pk)
            assert not await cache.revoked(await found(cache, key.digest))  # fails open
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert loads == [key.digest, key.digest]


def test_the_local_cache_is_bounded(run, db, monkeypatch):
    monkeypatch.setattr(keycache_module, "LOCAL_MAX", 3)

    async def scenario(world: World) -> None:
        cache = world.cache()
        for i in range(7):
            await cache.get(world.redis_key(f"{i:064x}")[len(REDIS_PREFIX) :])
            assert len(cache.local) <= 3

    run(scenario)


# --- revocation -------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_by_its_marker_at_once_and_forgotten_after_the_local_ttl(
    run_shared, key
):
    async def scenario(world: World) -> None:
        cache = world.cache()
        world.redis_key(key.digest)
        marker = world.marker(key)
        record = await found(cache, key.digest)
        assert not await cache.revoked(record)

        await asyncio.to_thread(_revoke, key)

        assert await world.redis.exists(marker)
        assert await cache.revoked(record)  # what the admission script checks, every call
        assert await cache.get(key.digest) == record  # the local copy, for LOCAL_TTL
        world.clock.advance(LOCAL_TTL + 0.1)
        assert await cache.get(key.digest) is None
        assert await world.redis.get(REDIS_PREFIX + key.digest) == MISSING

    run_shared(scenario)


def test_embedded_a_revoked_key_is_forgotten_after_the_local_ttl(run_embedded, key):
    """There is no marker without Redis: the key stops when the local copy expires, and
    ``revoked`` answers False rather than failing on the missing client."""

    async def scenario(world: World) -> None:
        cache = world.cache()
        record = await found(cache, key.digest)
        await asyncio.to_thread(_revoke, key)
        assert await cache.revoked(record) is False
        assert await cache.get(key.digest) == record
        world.clock.advance(LOCAL_TTL + 0.1)
        assert await cache.get(key.digest) is None

    run_embedded(scenario)


def _revoke(api_key: ApiKey) -> None:
    from django.db import close_old_connections

    try:
        api_key_revoke(api_key=api_key)
    finally:
        close_old_connections()


def test_a_record_redis_kept_from_before_an_upgrade_is_read_again(run_shared, key):
    """A record cached by a release whose KeyRecord had other fields cannot be built: the
    cache reads the key from the database and replaces the copy, instead of failing every
    call with that key until the copy expires."""

    loaded = key_record_load(key.digest)
    assert loaded is not None
    old = orjson.loads(loaded.to_json())
    old.pop("loop_window_seconds")
    old["retired_field"] = 1

    async def scenario(world: World) -> None:
        stored = world.redis_key(key.digest)
        for unreadable in (orjson.dumps(old), b"{not json"):
            await world.redis.set(stored, unreadable, ex=REDIS_TTL)
            cache = world.cache()
            assert (await found(cache, key.digest)).key_id == str(key.pk)
            assert (await stored_record(world.redis, stored)).key_id == str(key.pk)
        assert world.loads == [key.digest, key.digest]

    run_shared(scenario)
