"""Redis connections for Aqta's own keys (limits, key records, trace stream).

Django's cache wraps keys in its own format, so the counters and streams that both planes
share go through plain redis-py clients on the same ``REDIS_URL``. Timeouts are short:
a Redis outage must turn into the documented fail-open/fail-closed answers, never a hang.
"""

from __future__ import annotations

import functools

import redis
import redis.asyncio
from django.conf import settings

SOCKET_TIMEOUT = 0.5


def enabled() -> bool:
    return bool(settings.REDIS_URL)


@functools.cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )


def async_client(socket_timeout: float = SOCKET_TIMEOUT) -> redis.asyncio.Redis:
    """A new asyncio client (one per worker event loop; the gateway keeps it)."""
    return redis.asyncio.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )
