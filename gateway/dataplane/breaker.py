"""Circuit breaker per deployment, shared by every worker and host through Redis.

- closed: calls go through; failures are counted (``aqta:cb:f:<name>``, forgotten 5 minutes
  after the last one).
- open: after ``AQTA_BREAKER_FAILURES`` consecutive failures the deployment is skipped for
  ``AQTA_BREAKER_OPEN_SECONDS`` (``aqta:cb:open:<name>`` expires by itself).
- half-open: once that expires, one call anywhere may probe (``SET NX`` on a probe key);
  its success closes the breaker, its failure opens it again.

Workers keep a local view refreshed once a second, so a healthy call costs no Redis
round trip; only failures and probes write. Embedded, the same runs in process memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("aqta.gateway")
FAILURE_WINDOW = 300
PROBE_SECONDS = 10


class Breaker:
    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self.threshold: int = settings.AQTA_BREAKER_FAILURES
        self.open_seconds: int = settings.AQTA_BREAKER_OPEN_SECONDS
        # name -> (open until (monotonic), failures); absent = closed and clean
        self.view: dict[str, tuple[float, int]] = {}
        self.probes: dict[str, float] = {}
        # name -> when its last failure was (monotonic): the failure window without Redis
        self.failed_at: dict[str, float] = {}

    def _keys(self, name: str) -> tuple[str, str, str]:
        return f"aqta:cb:open:{name}", f"aqta:cb:f:{name}", f"aqta:cb:probe:{name}"

    async def available(self, name: str) -> bool:
        state = self.view.get(name)
        if state is None:
            return True
        open_until, failures = state
        now = time.monotonic()
        if open_until > now:
            return False
        if failures < self.threshold:
            return True
        return await self._claim_probe(name, now)

    async def _claim_probe(self, name: str, now: float) -> bool:
        if self.redis is None:
            if self.probes.get(name, 0) > now:
                return False
            self.probes[name] = now + PROBE_SECONDS
            return True
        try:
            return bool(await self.redis.set(self._keys(name)[2], 1, nx=True, ex=PROBE_SECONDS))
        except RedisError:
            return True

    async def failure(self, name: str) -> None:
        now = time.monotonic()
        open_until, failures = self.view.get(name, (0.0, 0))
        if now - self.failed_at.get(name, now) > FAILURE_WINDOW:
            failures = 0  # forgotten, as Redis forgets its counter
        self.failed_at[name] = now
        failures += 1
        # Calls under way when the circuit opened fail during its open period: they must
        # not push its end further out.
        opened = failures >= self.threshold and open_until <= now
        if opened:
            open_until = now + self.open_seconds
        if self.redis is not None:
            try:
                failures, open_until, opened = await self._shared_failure(self.redis, name, now)
            except RedisError:
                pass  # this worker's own count decides
        if opened:
            self.probes.pop(name, None)  # a failed probe: the next one is due after this period
            logger.warning("circuit open for deployment %s after %d failures", name, failures)
        self.view[name] = (open_until, failures)

    async def _shared_failure(self, redis: Redis, name: str, now: float) -> tuple[int, float, bool]:
        """Count a failure in Redis: (failures, open until, whether this one opened it)."""
        open_key, failures_key, probe_key = self._keys(name)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, FAILURE_WINDOW)
            failures = int((await pipe.execute())[0])
        if failures < self.threshold:
            return failures, 0.0, False
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(open_key, 1, ex=self.open_seconds, nx=True)  # NX: see failure()
            pipe.pttl(open_key)
            # Open again, the circuit's probe (if this was it) is over: its claim must not
            # outlast an open period shorter than PROBE_SECONDS.
            pipe.delete(probe_key)
            opened, left_ms, _ = await pipe.execute()
        return failures, now + max(left_ms, 0) / 1000, bool(opened)

    async def success(self, name: str) -> None:
        if name not in self.view:
            return
        del self.view[name]
        self.probes.pop(name, None)
        self.failed_at.pop(name, None)
        if self.redis is not None:
            try:
                await self.redis.delete(*self._keys(name))
            except RedisError:
                pass

    async def refresh(self, names: list[str]) -> None:
        """Adopt what other workers saw (Redis mode)."""
        if self.redis is None or not names:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                open_key, failures_key, _ = self._keys(name)
                pipe.ttl(open_key)
                pipe.get(failures_key)
            replies = await pipe.execute()
        now = time.monotonic()
        view: dict[str, tuple[float, int]] = {}
        for i, name in enumerate(names):
            ttl, failures = replies[2 * i], int(replies[2 * i + 1] or 0)
            if failures or ttl > 0:
                view[name] = (now + ttl if ttl > 0 else 0.0, failures)
        self.view = view

    async def run(self, stop: asyncio.Event, names: Callable[[], list[str]]) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                try:
                    await self.refresh(names())
                except RedisError:
                    pass
