"""Admission policies in one round trip: rate limit, loop guard, monthly quota, EUR budget.

With Redis, one Lua script checks and commits everything atomically, so limits are exact
across workers and hosts. Embedded, :class:`LocalLimiter` does the same in process memory.

Semantics (both backends):
- rate limit: a sliding 60 s log per key; at most N admitted requests in any 60 s.
- loop guard: identical request fingerprints per key counted in a fixed window; more than
  the threshold is a loop. Refused requests still count here, so a runaway agent stays
  refused, but they consume nothing else.
- quota: admitted requests per organisation and calendar month.
- budget: spend per organisation and per key and month, in 1e-8 EUR units. An admitted
  request reserves its estimate; :meth:`settle` replaces the estimate with the real cost,
  so concurrent requests can overshoot only by what they use beyond their estimates.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from accounts.key_records import revoked_marker

OK, RATE, LOOP, QUOTA, BUDGET_ORG, BUDGET_KEY, REVOKED = 0, 1, 2, 3, 4, 5, 6
WINDOW_MS = 60_000
NO_LIMIT = -1
EUR_UNITS = 100_000_000  # 1 EUR in budget units (1e-8 EUR, the precision of costs)

LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local member = ARGV[4]
local quota = tonumber(ARGV[5])
local budget_org = tonumber(ARGV[6])
local budget_key = tonumber(ARGV[7])
local estimate = tonumber(ARGV[8])
local loop_threshold = tonumber(ARGV[9])
local loop_window = tonumber(ARGV[10])
local month_ttl = tonumber(ARGV[11])
local cycle = tonumber(ARGV[12])

if redis.call('EXISTS', KEYS[6]) == 1 then
  return {6, limit, 0, 0, 0}
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local reset = math.ceil(window / 1000)
if used > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  reset = math.ceil((tonumber(oldest[2]) + window - now) / 1000)
end
if used >= limit then
  return {1, limit, 0, reset, 0}
end
local repeats = redis.call('INCR', KEYS[5])
if repeats == 1 then redis.call('EXPIRE', KEYS[5], loop_window) end
if cycle == 1 or repeats > loop_threshold then
  return {2, limit, limit - used, reset, redis.call('TTL', KEYS[5])}
end
local quota_used = tonumber(redis.call('GET', KEYS[2]) or '0')
if quota >= 0 and quota_used >= quota then
  return {3, limit, limit - used, reset, 0}
end
if budget_org >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + estimate > budget_org then
  return {4, limit, limit - used, reset, 0}
end
if budget_key >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + estimate > budget_key then
  return {5, limit, limit - used, reset, 0}
end
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], month_ttl)
if estimate > 0 then
  redis.call('INCRBY', KEYS[3], estimate)
  redis.call('EXPIRE', KEYS[3], month_ttl)
  redis.call('INCRBY', KEYS[4], estimate)
  redis.call('EXPIRE', KEYS[4], month_ttl)
end
return {0, limit, limit - used - 1, reset, quota_used + 1}
"""


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: int
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class Ask:
    """One request's claim on the limits."""

    org_id: str
    key_id: str
    request_id: str
    rate_limit: int
    quota: int | None
    budget_org: int | None
    budget_key: int | None
    estimate: int
    fingerprint: str
    loop_threshold: int
    loop_window: int
    cycle: bool


_month_cache: tuple[int, str] = (-1, "")


def month_tag(now: float) -> str:
    """``YYYYMM`` (UTC) of ``now``, computed once a minute rather than per call."""
    global _month_cache
    minute = int(now // 60)
    if _month_cache[0] != minute:
        _month_cache = (minute, datetime.fromtimestamp(minute * 60, UTC).strftime("%Y%m"))
    return _month_cache[1]


def _keys(ask: Ask, month: str) -> list[str]:
    # One hash tag per organisation keeps every key of a call in one Redis Cluster slot.
    tag = "{" + ask.org_id + "}"
    return [
        f"aqta:rl:{tag}:{ask.key_id}",
        f"aqta:q:{tag}:{month}",
        f"aqta:b:{tag}:{month}",
        f"aqta:bk:{tag}:{ask.key_id}:{month}",
        f"aqta:lg:{tag}:{ask.key_id}:{ask.fingerprint}",
        revoked_marker(ask.org_id, ask.key_id),
    ]


MONTH_TTL = 40 * 86_400


def budget_keys(ask: Ask, now: float) -> tuple[str, str]:
    """The organisation's and the key's spend counters for the month of ``now``."""
    keys = _keys(ask, month_tag(now))
    return keys[2], keys[3]


def settle_in_pipeline(pipe: Pipeline, ask: Ask, now: float, delta: int) -> None:
    """Queue the budget settlement (real cost - estimate) on a Redis pipeline.

    The counters may not exist yet (no budget, so nothing was reserved): they get the
    month's TTL here too, so they never outlive it.
    """
    for key in budget_keys(ask, now):
        pipe.incrby(key, delta)
        pipe.expire(key, MONTH_TTL, nx=True)


def release_in_pipeline(pipe: Pipeline, ask: Ask, now: float) -> None:
    """Queue the return of what admitting ``ask`` took (for a call that failed inside the
    gateway): its rate-limit slot, its quota unit and its budget reservation."""
    rate, quota, org, key, _, _ = _keys(ask, month_tag(now))
    pipe.zrem(rate, ask.request_id)
    pipe.decr(quota)
    if ask.estimate:
        pipe.decrby(org, ask.estimate)
        pipe.decrby(key, ask.estimate)


class RedisLimiter:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self.script = client.register_script(LUA)

    async def admit(self, ask: Ask, now: float) -> Admission:
        args: list[int | str] = [
            int(now * 1000),
            WINDOW_MS,
            ask.rate_limit,
            ask.request_id,
            NO_LIMIT if ask.quota is None else ask.quota,
            NO_LIMIT if ask.budget_org is None else ask.budget_org,
            NO_LIMIT if ask.budget_key is None else ask.budget_key,
            ask.estimate,
            ask.loop_threshold,
            ask.loop_window,
            MONTH_TTL,
            1 if ask.cycle else 0,
        ]
        verdict, limit, remaining, reset, extra = await self.script(
            keys=_keys(ask, month_tag(now)), args=args
        )
        return Admission(verdict, limit, remaining, reset, extra)

    async def settle(self, ask: Ask, now: float, actual: int) -> None:
        """Replace the reserved estimate with the real cost (both in 1e-8 EUR)."""
        delta = actual - ask.estimate
        if delta == 0:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            settle_in_pipeline(pipe, ask, now, delta)
            await pipe.execute()

    async def release(self, ask: Ask, now: float) -> None:
        """Give back what admitting ``ask`` took (see :func:`release_in_pipeline`)."""
        async with self.client.pipeline(transaction=False) as pipe:
            release_in_pipeline(pipe, ask, now)
            await pipe.execute()

    async def usage(self, org_id: str, now: float) -> tuple[int, int]:
        """(requests, spend units) of the organisation this month."""
        month = month_tag(now)
        tag = "{" + org_id + "}"
        requests, spend = await self.client.mget(f"aqta:q:{tag}:{month}", f"aqta:b:{tag}:{month}")
        return int(requests or 0), int(spend or 0)


class LocalLimiter:
    """The same semantics in one process (the embedded mode has one worker)."""

    def __init__(self) -> None:
        self.logs: dict[str, deque[float]] = {}
        self.counters: dict[str, int] = {}
        self.loops: dict[str, tuple[float, int]] = {}
        self.lock = asyncio.Lock()

    async def admit(self, ask: Ask, now: float) -> Admission:
        async with self.lock:
            return self._admit(ask, now)

    def _admit(self, ask: Ask, now: float) -> Admission:
        rl, quota_key, org_key, key_key, loop_key, _ = _keys(ask, month_tag(now))
        log = self.logs.setdefault(rl, deque())
        while log and log[0] <= now - WINDOW_MS / 1000:
            log.popleft()
        used = len(log)
        reset = math.ceil(log[0] + WINDOW_MS / 1000 - now) if log else WINDOW_MS // 1000
        if used >= ask.rate_limit:
            return Admission(RATE, ask.rate_limit, 0, reset, 0)
        started, repeats = self.loops.get(loop_key, (now, 0))
        if now - started >= ask.loop_window:
            started, repeats = now, 0
        repeats += 1
        self.loops[loop_key] = (started, repeats)
        if ask.cycle or repeats > ask.loop_threshold:
            ttl = math.ceil(started + ask.loop_window - now)
            return Admission(LOOP, ask.rate_limit, ask.rate_limit - used, reset, ttl)
        get = self.counters.get
        if ask.quota is not None and get(quota_key, 0) >= ask.quota:
            return Admission(QUOTA, ask.rate_limit, ask.rate_limit - used, reset)
        if ask.budget_org is not None and get(org_key, 0) + ask.estimate > ask.budget_org:
            return Admission(BUDGET_ORG, ask.rate_limit, ask.rate_limit - used, reset)
        if ask.budget_key is not None and get(key_key, 0) + ask.estimate > ask.budget_key:
            return Admission(BUDGET_KEY, ask.rate_limit, ask.rate_limit - used, reset)
        log.append(now)
        self.counters[quota_key] = get(quota_key, 0) + 1
        self.counters[org_key] = get(org_key, 0) + ask.estimate
        self.counters[key_key] = get(key_key, 0) + ask.estimate
        return Admission(OK, ask.rate_limit, ask.rate_limit - used - 1, reset)

    async def settle(self, ask: Ask, now: float, actual: int) -> None:
        _, _, org_key, key_key, _, _ = _keys(ask, month_tag(now))
        delta = actual - ask.estimate
        self.counters[org_key] = self.counters.get(org_key, 0) + delta
        self.counters[key_key] = self.counters.get(key_key, 0) + delta

    async def release(self, ask: Ask, now: float) -> None:
        rate, quota, org_key, key_key, _, _ = _keys(ask, month_tag(now))
        log = self.logs.get(rate)
        if log and now in log:
            log.remove(now)
        counters = self.counters
        counters[quota] = max(counters.get(quota, 0) - 1, 0)
        counters[org_key] = counters.get(org_key, 0) - ask.estimate
        counters[key_key] = counters.get(key_key, 0) - ask.estimate

    async def usage(self, org_id: str, now: float) -> tuple[int, int]:
        month = month_tag(now)
        tag = "{" + org_id + "}"
        return (
            self.counters.get(f"aqta:q:{tag}:{month}", 0),
            self.counters.get(f"aqta:b:{tag}:{month}", 0),
        )


def clock() -> float:
    return time.time()
