"""The circuit breaker (gateway/dataplane/breaker.py), in process memory and shared by
workers through Redis.

Each test writes its scenario as a coroutine taking a :class:`World`: one deployment, the
breakers that watch it and a clock. ``World.elapse`` moves the breakers' clock and, with
Redis, shortens the breaker keys' TTLs by as much, so "the open period ends" takes no real
time. The ``run`` fixture plays a scenario embedded and with Redis; ``run_shared`` with
Redis only, for what several workers see.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from gateway.dataplane import breaker as breaker_module
from gateway.dataplane.breaker import FAILURE_WINDOW, PROBE_SECONDS, Breaker
from gateway.tests.dataplane.conftest import Clock, unreachable_redis, use_clock

THRESHOLD = 3
OPEN_SECONDS = 30


@pytest.fixture(autouse=True)
def _breaker_settings(settings) -> None:
    settings.AQTA_BREAKER_FAILURES = THRESHOLD
    settings.AQTA_BREAKER_OPEN_SECONDS = OPEN_SECONDS


@dataclass
class World:
    """One deployment's breakers: embedded (no client) or workers sharing Redis."""

    client: Redis | None
    clock: Clock
    name: str

    def breaker(self) -> Breaker:
        return Breaker(self.client)

    def key(self, kind: str) -> str:
        return f"aqta:cb:{kind}:{self.name}"

    def keys(self) -> list[str]:
        return [self.key(kind) for kind in ("open", "f", "probe")]

    @property
    def redis(self) -> Redis:
        """The client, in the scenarios that run with Redis."""
        assert self.client is not None
        return self.client

    async def count(self, kind: str) -> int:
        """The counter the breakers keep in Redis under ``kind``."""
        raw = await self.redis.get(self.key(kind))
        assert raw is not None
        return int(raw)

    async def elapse(self, seconds: float) -> None:
        """Time passes for the breakers and for Redis's expiries alike."""
        self.clock.advance(seconds)
        if self.client is None:
            return
        for key in self.keys():
            left = await self.client.pttl(key)  # -2: no such key, -1: no expiry
            if left < 0:
                continue
            if left <= seconds * 1000:
                await self.client.delete(key)
            else:
                await self.client.pexpire(key, left - int(seconds * 1000))

    async def fail(self, breaker: Breaker, times: int = 1) -> None:
        for _ in range(times):
            await breaker.failure(self.name)


Scenario = Callable[[World], Awaitable[None]]


def _runner(url: str | None, clock: Clock) -> Callable[[Scenario], None]:
    def run(scenario: Scenario) -> None:
        async def main() -> None:
            client = Redis.from_url(url) if url else None  # one per event loop
            world = World(client, clock, f"test-deployment-{uuid.uuid4().hex}")
            try:
                await scenario(world)
            finally:
                if client is not None:
                    await client.delete(*world.keys())
                    await client.aclose()

        asyncio.run(main())

    return run


@pytest.fixture(params=["embedded", "redis"])
def run(request, monkeypatch) -> Callable[[Scenario], None]:
    """Run ``scenario(world)`` embedded and with Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return _runner(url, use_clock(monkeypatch, breaker_module))


@pytest.fixture
def run_shared(redis_url, monkeypatch) -> Callable[[Scenario], None]:
    """Run ``scenario(world)`` with Redis only: several breakers are several workers."""
    return _runner(redis_url, use_clock(monkeypatch, breaker_module))


# --- closed and open ------------------------------------------------------------------------


def test_a_new_deployment_is_available(run):
    async def scenario(world: World) -> None:
        assert await world.breaker().available(world.name)

    run(scenario)


def test_failures_below_the_threshold_leave_the_circuit_closed(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD - 1)
        assert await breaker.available(world.name)
        assert await breaker.available(world.name)  # closed: not a single probe

    run(scenario)


def test_the_threshold_of_failures_opens_the_circuit(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD)
        assert not await breaker.available(world.name)
        await world.elapse(OPEN_SECONDS - 1)
        assert not await breaker.available(world.name)
        if world.client is not None:
            assert await world.count("f") == THRESHOLD
            assert 0 < await world.client.ttl(world.key("open")) <= OPEN_SECONDS

    run(scenario)


def test_a_success_starts_the_count_again(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD - 1)
        await breaker.success(world.name)
        await world.fail(breaker, THRESHOLD - 1)
        assert await breaker.available(world.name)
        if world.client is not None:
            assert await world.count("f") == THRESHOLD - 1

    run(scenario)


def test_failures_are_counted_in_a_window_that_the_last_failure_renews(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD - 1)
        await world.elapse(FAILURE_WINDOW - 10)
        await world.fail(breaker)  # within the window: the circuit opens
        assert not await breaker.available(world.name)

    run(scenario)


def test_failures_older_than_the_window_are_forgotten(run):
    """Embedded as with Redis, whose failure counter expires FAILURE_WINDOW after the last
    failure: failures hours apart are not a failing deployment."""

    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD - 1)
        await world.elapse(FAILURE_WINDOW + 1)
        if world.client is not None:
            await breaker.refresh([world.name])
        await world.fail(breaker)
        assert await breaker.available(world.name)

    run(scenario)


# --- half-open --------------------------------------------------------------------------------


async def _open_until_probe(world: World, breaker: Breaker) -> None:
    """Open the circuit and let its open period end."""
    await world.fail(breaker, THRESHOLD)
    assert not await breaker.available(world.name)
    await world.elapse(OPEN_SECONDS + 1)
    if world.client is not None:
        await breaker.refresh([world.name])


def test_after_the_open_period_a_single_probe_goes_through(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await _open_until_probe(world, breaker)
        assert await breaker.available(world.name)  # the probe
        assert not await breaker.available(world.name)
        assert not await breaker.available(world.name)

    run(scenario)


def test_a_successful_probe_closes_the_circuit(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await _open_until_probe(world, breaker)
        assert await breaker.available(world.name)
        await breaker.success(world.name)
        assert [await breaker.available(world.name) for _ in range(3)] == [True] * 3
        # Closed means clean: it takes the whole threshold again to open it.
        await world.fail(breaker, THRESHOLD - 1)
        assert await breaker.available(world.name)
        if world.client is not None:
            assert await world.count("f") == THRESHOLD - 1
            assert not await world.client.exists(world.key("open"), world.key("probe"))

    run(scenario)


def test_a_failed_probe_opens_the_circuit_again(run):
    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await _open_until_probe(world, breaker)
        assert await breaker.available(world.name)
        await breaker.failure(world.name)
        assert not await breaker.available(world.name)
        await world.elapse(OPEN_SECONDS - 1)
        assert not await breaker.available(world.name)
        if world.client is not None:
            assert 0 < await world.client.ttl(world.key("open")) <= OPEN_SECONDS

    run(scenario)


def test_a_probe_that_never_reports_back_is_handed_on(run):
    """A probe call that ends neither in success nor failure (e.g. the client's own 400, or
    the client went away) must not leave the deployment half-open for good."""

    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await _open_until_probe(world, breaker)
        assert await breaker.available(world.name)
        await world.elapse(PROBE_SECONDS - 1)
        assert not await breaker.available(world.name)
        await world.elapse(2)
        assert await breaker.available(world.name)

    run(scenario)


def test_failures_of_calls_under_way_do_not_extend_the_open_period(run):
    """Calls sent before the circuit opened may fail during the open period; the deployment
    is still skipped for AQTA_BREAKER_OPEN_SECONDS from its opening, not from theirs."""

    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD)
        await world.elapse(OPEN_SECONDS - 5)
        await world.fail(breaker)
        await world.elapse(6)
        if world.client is not None:
            await breaker.refresh([world.name])
        assert await breaker.available(world.name)  # the probe, on time

    run(scenario)


def test_a_failed_probe_does_not_hold_up_the_next_one(run, settings):
    """With an open period shorter than PROBE_SECONDS, the next probe is due when the
    period ends, not when the failed probe's claim would have run out."""
    settings.AQTA_BREAKER_OPEN_SECONDS = 5

    async def scenario(world: World) -> None:
        breaker = world.breaker()
        await world.fail(breaker, THRESHOLD)
        for _ in range(2):
            await world.elapse(6)
            if world.client is not None:
                await breaker.refresh([world.name])
            assert await breaker.available(world.name)  # a probe
            await breaker.failure(world.name)
            assert not await breaker.available(world.name)

    run(scenario)


# --- workers sharing Redis ----------------------------------------------------------------------


def test_failures_seen_by_two_workers_add_up_and_open_the_circuit_for_both(run_shared):
    async def scenario(world: World) -> None:
        first, second = world.breaker(), world.breaker()
        await world.fail(first, THRESHOLD - 1)
        await world.fail(second)
        assert not await second.available(world.name)
        # The first worker learns it from its next refresh (once a second).
        await first.refresh([world.name])
        assert not await first.available(world.name)

    run_shared(scenario)


def test_a_worker_learns_of_an_open_circuit_from_its_own_late_failure(run_shared):
    """Its view not refreshed yet, a worker whose call fails after another worker opened
    the circuit takes the open period Redis has, and does not probe."""

    async def scenario(world: World) -> None:
        opener, late = world.breaker(), world.breaker()
        await world.fail(opener, THRESHOLD)
        await world.elapse(10)
        await world.fail(late)
        assert not await late.available(world.name)
        open_until, _ = late.view[world.name]
        assert open_until <= world.clock.now + OPEN_SECONDS - 10 + 0.01
        await world.elapse(OPEN_SECONDS - 10 + 1)
        assert await late.available(world.name)

    run_shared(scenario)


def test_only_one_worker_probes_a_half_open_deployment(run_shared):
    async def scenario(world: World) -> None:
        workers = [world.breaker() for _ in range(4)]
        await _open_until_probe(world, workers[0])
        for worker in workers[1:]:
            await worker.refresh([world.name])
        claims = await asyncio.gather(*(w.available(world.name) for w in workers))
        assert sorted(claims) == [False, False, False, True]
        assert 0 < await world.redis.ttl(world.key("probe")) <= PROBE_SECONDS

    run_shared(scenario)


def test_a_probe_that_succeeds_on_one_worker_closes_the_circuit_for_the_others(run_shared):
    async def scenario(world: World) -> None:
        prober, other = world.breaker(), world.breaker()
        await _open_until_probe(world, prober)
        await other.refresh([world.name])
        assert await prober.available(world.name)
        assert not await other.available(world.name)
        await prober.success(world.name)
        await other.refresh([world.name])
        assert other.view == {}
        assert await other.available(world.name) and await other.available(world.name)

    run_shared(scenario)


def test_a_probe_that_fails_on_one_worker_reopens_the_circuit_for_the_others(run_shared):
    async def scenario(world: World) -> None:
        prober, other = world.breaker(), world.breaker()
        await _open_until_probe(world, prober)
        await other.refresh([world.name])
        assert await prober.available(world.name)
        await prober.failure(world.name)
        await other.refresh([world.name])
        assert not await other.available(world.name)

    run_shared(scenario)


def test_the_refresh_loop_adopts_what_other_workers_saw(run_shared):
    async def scenario(world: World) -> None:
        watcher, failing = world.breaker(), world.breaker()
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop, lambda: [world.name]))
        await world.fail(failing, THRESHOLD)
        async with asyncio.timeout(10):
            while world.name not in watcher.view:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert not await watcher.available(world.name)

    run_shared(scenario)


# --- Redis unavailable ------------------------------------------------------------------------


def test_without_redis_the_worker_counts_failures_itself_and_probes_freely(monkeypatch):
    clock = use_clock(monkeypatch, breaker_module)
    name = "test-deployment-unreachable"

    async def scenario() -> None:
        client = unreachable_redis()
        try:
            breaker = Breaker(client)
            for _ in range(THRESHOLD):
                await breaker.failure(name)  # no exception: Redis errors are swallowed
            assert not await breaker.available(name)
            clock.advance(OPEN_SECONDS + 1)
            # The probe cannot be claimed in Redis: fail open rather than never probe.
            assert await breaker.available(name)
            assert await breaker.available(name)
            await breaker.success(name)
            assert breaker.view == {}
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_the_refresh_loop_survives_an_unreachable_redis(monkeypatch):
    async def scenario() -> None:
        client = unreachable_redis()
        try:
            breaker = Breaker(client)
            stop = asyncio.Event()
            refreshed = asyncio.Event()
            real_refresh = breaker.refresh

            async def refresh(names: list[str]) -> None:
                refreshed.set()
                await real_refresh(names)

            monkeypatch.setattr(breaker, "refresh", refresh)
            task = asyncio.create_task(breaker.run(stop, lambda: ["any"]))
            await asyncio.wait_for(refreshed.wait(), 5)
            await asyncio.sleep(0.3)  # the refresh's connection attempt fails meanwhile
            assert not task.done()
            stop.set()
            await asyncio.wait_for(task, 5)
        finally:
            await client.aclose()

    asyncio.run(scenario())
