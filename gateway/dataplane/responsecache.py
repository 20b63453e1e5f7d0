"""Exact-match response cache per organisation (opt-in), in Redis or process memory."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("aqta.gateway")
LOCAL_MAX = 10_000


class ResponseCache:
    def __init__(self, redis: Redis | None, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        self.local: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        if self.redis is not None:
            try:
                raw = await self.redis.get("aqta:cache:" + key)
            except RedisError:
                return None
        else:
            hit = self.local.get(key)
            raw = hit[1] if hit and hit[0] > time.monotonic() else None
        return orjson.loads(raw) if raw else None

    async def put(self, key: str, value: dict[str, Any]) -> None:
        if self.ttl <= 0:  # a lifetime of nothing; Redis would refuse the SET besides
            return
        raw = orjson.dumps(value)
        if self.redis is not None:
            try:
                await self.redis.set("aqta:cache:" + key, raw, ex=self.ttl)
            except RedisError:
                logger.warning("redis unavailable: response not cached")
            return
        if len(self.local) >= LOCAL_MAX:
            self.local.clear()
        self.local[key] = (time.monotonic() + self.ttl, raw)
