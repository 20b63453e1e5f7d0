"""What a worker's requests share, built once at start-up and closed at shutdown.

:meth:`Runtime.start` is the data plane's only start-up path (the ASGI lifespan calls it):
the upstream session, the Redis clients, the limiter and the trace buffer (Redis-backed or
in-process), the key and response caches, the breaker, the receipt writer and the
catalogue, plus the background tasks that keep the catalogue and the breaker view
fresh, flush traces and link receipts into their chains.
Pipeline steps take the runtime as their first argument, so a unit test builds one from
in-process parts (:meth:`Runtime.local`) without a server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from django.conf import settings
from redis.asyncio import Redis

from aqta import redis as aqta_redis
from gateway.dataplane import policy, validation
from gateway.dataplane.breaker import Breaker
from gateway.dataplane.buffer import Buffer, LocalBuffer, RedisBuffer
from gateway.dataplane.catalog import Catalog, catalog_load
from gateway.dataplane.keycache import KeyCache
from gateway.dataplane.receipts import (
    OrmReceiptWriter,
    ReceiptWriter,
    key_register,
    link_forever,
    writer_create,
)
from gateway.dataplane.responsecache import ResponseCache
from gateway.dataplane.upstream import session_create

logger = logging.getLogger("aqta.gateway")


class Limiter(Protocol):
    """Admission limits (``policy``): ``RedisLimiter`` across hosts, ``LocalLimiter`` in
    one process."""

    async def admit(self, ask: policy.Ask, now: float) -> policy.Admission: ...
    async def settle(self, ask: policy.Ask, now: float, actual: int) -> None: ...
    async def release(self, ask: policy.Ask, now: float) -> None: ...
    async def usage(self, org_id: str, now: float) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Config:
    """The settings requests read, taken once from Django's settings."""

    max_request_bytes: int
    upstream_retries: int
    breaker_open_seconds: int
    catalog_refresh_seconds: float
    flush_in_workers: bool

    @classmethod
    def from_settings(cls) -> Config:
        return cls(
            max_request_bytes=settings.AQTA_MAX_REQUEST_BYTES,
            upstream_retries=settings.AQTA_UPSTREAM_RETRIES,
            breaker_open_seconds=settings.AQTA_BREAKER_OPEN_SECONDS,
            catalog_refresh_seconds=settings.AQTA_CATALOG_REFRESH_SECONDS,
            flush_in_workers=settings.AQTA_FLUSH_IN_WORKERS,
        )


@dataclass(slots=True)
class Runtime:
    config: Config
    session: aiohttp.ClientSession
    redis: Redis | None  # None in the embedded mode
    limiter: Limiter
    buffer: Buffer
    keys: KeyCache
    breaker: Breaker
    cache: ResponseCache
    receipts: ReceiptWriter
    catalog: Catalog  # replaced by the refresh task; a request keeps the one it routed by
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    def local(cls, catalog: Catalog, config: Config | None = None) -> Runtime:
        """In-process parts only (the embedded mode's limiter and buffer, no Redis)."""
        return cls(
            config=config or Config.from_settings(),
            session=_session(),
            redis=None,
            limiter=policy.LocalLimiter(),
            buffer=LocalBuffer(),
            keys=KeyCache(None),
            breaker=Breaker(None),
            cache=ResponseCache(None, settings.AQTA_CACHE_TTL_SECONDS),
            receipts=OrmReceiptWriter(),
            catalog=catalog,
        )

    @classmethod
    async def start(cls) -> Runtime:
        catalog = await asyncio.to_thread(catalog_load)
        await asyncio.to_thread(key_register)
        validation.warm()
        if not aqta_redis.enabled():
            runtime = cls.local(catalog)
            runtime.receipts = writer_create()
        else:
            redis = aqta_redis.async_client()
            # The flusher blocks on the stream for a second: it needs its own client.
            reader = aqta_redis.async_client(socket_timeout=5)
            runtime = cls(
                config=Config.from_settings(),
                session=_session(),
                redis=redis,
                limiter=policy.RedisLimiter(redis),
                buffer=RedisBuffer(redis, reader),
                keys=KeyCache(redis),
                breaker=Breaker(redis),
                cache=ResponseCache(redis, settings.AQTA_CACHE_TTL_SECONDS),
                receipts=writer_create(),
                catalog=catalog,
            )
        runtime.run_background()
        return runtime

    def run_background(self) -> None:
        # With a dedicated flusher process (`manage.py run_flusher`) the workers only
        # write what they had to keep locally while Redis was down.
        consume = self.redis is None or self.config.flush_in_workers
        self.tasks = [
            asyncio.create_task(self.buffer.run(self.stop, consume=consume)),
            asyncio.create_task(self._refresh_catalog()),
            asyncio.create_task(self.breaker.run(self.stop, self.deployment_names)),
        ]
        if consume:  # otherwise the flusher links receipts too
            self.tasks.append(asyncio.create_task(link_forever(self.stop)))

    async def close(self) -> None:
        """Stop the background tasks (the buffer flushes what it holds), close clients."""
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        await self.buffer.aclose()
        await self.receipts.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def deployment_names(self) -> list[str]:
        models = self.catalog.models.values()
        return sorted({d.name for m in models for d in m.deployments})

    async def _refresh_catalog(self) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), self.config.catalog_refresh_seconds)
            except TimeoutError:
                try:
                    self.catalog = await asyncio.to_thread(catalog_load)
                except Exception:
                    logger.exception("catalogue refresh failed; keeping the previous one")


def _session() -> aiohttp.ClientSession:
    return session_create(
        connect_timeout=settings.AQTA_UPSTREAM_CONNECT_TIMEOUT,
        read_timeout=settings.AQTA_UPSTREAM_READ_TIMEOUT,
        pool=settings.AQTA_UPSTREAM_POOL_SIZE,
    )
