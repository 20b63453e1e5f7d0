"""Key records for the data plane: process memory (``LOCAL_TTL``), then Redis, then the
database (off the event loop). Unknown digests are remembered briefly too, so a flood of
made-up keys cannot turn into a flood of queries."""

from __future__ import annotations

import asyncio
import logging
import time

from django.db import close_old_connections
from redis.asyncio import Redis
from redis.exceptions import RedisError

from accounts.key_records import (
    LOCAL_TTL,
    REDIS_PREFIX,
    REDIS_TTL,
    KeyRecord,
    key_record_load,
    revoked_marker,
)

logger = logging.getLogger("aqta.gateway")
MISSING = b"-"
MISSING_TTL = 5
LOCAL_MAX = 100_000


def _load(digest: str) -> KeyRecord | None:
    close_old_connections()
    try:
        return key_record_load(digest)
    finally:
        close_old_connections()


def _decode(raw: bytes | str | None) -> KeyRecord | None:
    """The record Redis kept, or None when there is none this release can read: a record
    written by a release whose KeyRecord had other fields is loaded again and replaced."""
    if raw is None:
        return None
    try:
        return KeyRecord.from_json(raw.encode() if isinstance(raw, str) else raw)
    except (ValueError, TypeError, KeyError):
        return None


class KeyCache:
    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self.local: dict[str, tuple[float, KeyRecord | None]] = {}

    async def get(self, digest: str) -> KeyRecord | None:
        now = time.monotonic()
        hit = self.local.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self._shared(digest)
        if len(self.local) >= LOCAL_MAX:
            self.local.clear()
        self.local[digest] = (now + LOCAL_TTL, record)
        return record

    async def _shared(self, digest: str) -> KeyRecord | None:
        if self.redis is not None:
            try:
                raw = await self.redis.get(REDIS_PREFIX + digest)
            except RedisError:
                logger.error("redis unavailable: key record read from the database")
            else:
                if raw == MISSING:
                    return None
                cached = _decode(raw)
                if cached is not None:
                    return cached
        record = await asyncio.to_thread(_load, digest)
        if self.redis is not None:
            try:
                if record is None:
                    await self.redis.set(REDIS_PREFIX + digest, MISSING, ex=MISSING_TTL)
                else:
                    await self.redis.set(REDIS_PREFIX + digest, record.to_json(), ex=REDIS_TTL)
            except RedisError:
                pass
        return record

    async def revoked(self, record: KeyRecord) -> bool:
        """Whether the key carries a revocation marker. Only Redis has markers: embedded, a
        revoked key stops when its local copy expires (the database no longer returns it)."""
        if self.redis is None:
            return False
        try:
            return bool(await self.redis.exists(revoked_marker(record.org_id, record.key_id)))
        except RedisError:
            return False
