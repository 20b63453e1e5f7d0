"""The control plane's cache: Redis, falling back to process memory while Redis is away.

What the default cache holds is counters and short-lived markers: django-ratelimit's
throttles (login, signup, key creation), allauth's rate limits and failed-login lockout,
the TOTP codes already used. Sessions are in the database, not here. Losing these for
the minutes of an outage is harmless; answering every sign-in with a 500 (or a 429, as
allauth does when it cannot take its cache lock) is not: operators would be locked out
of the admin exactly when they need it, and failed logins would go unaudited.

So rather than a ``try``/``except`` around each caller (two of which are libraries),
the backend itself degrades: when a Redis command fails, the same call is answered by a
process-local ``LocMemCache`` (what the embedded mode uses anyway), for
``FALLBACK_SECONDS``, after which Redis is tried again. The limits keep working per
process: with N workers an attacker gets at most N times the configured rate, instead
of no limit at all, and nobody gets locked out because Redis is down. Each switch is
logged at ERROR (and counted in ``aqta_redis_errors_total``), and the switch back at
WARNING. Falling back for a while, rather than trying Redis on every call, is what keeps
a frozen Redis from costing every request the socket timeout once per cache call.

django-ratelimit's ``RATELIMIT_FAIL_OPEN`` alone would not do: it only covers a cache
that *returns* nothing, while Django's ``RedisCache`` raises.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from aqta.metrics import REDIS_ERRORS

logger = logging.getLogger("aqta.cache")

FALLBACK_SECONDS = 5.0

# Per process, shared by the per-thread backend instances Django creates for one alias.
_state_lock = threading.Lock()
_fallback_until: dict[str, float] = {}


class FallbackRedisCache(RedisCache):
    """Django's ``RedisCache`` that answers from process memory while Redis fails."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._location = server if isinstance(server, str) else ",".join(server)
        local_params = {k: v for k, v in params.items() if k not in {"BACKEND", "OPTIONS"}}
        self._local = LocMemCache(f"aqta-fallback:{self._location}", local_params)

    # --- switching ---------------------------------------------------------------------

    def _falling_back(self) -> bool:
        until = _fallback_until.get(self._location)
        return until is not None and time.monotonic() < until

    def _failed(self, operation: str, error: Exception) -> None:
        with _state_lock:
            first = not self._falling_back()
            _fallback_until[self._location] = time.monotonic() + FALLBACK_SECONDS
        REDIS_ERRORS.inc()
        if first:
            logger.error(
                "Redis cache unavailable (%s: %s); throttles and lockouts count in process "
                "memory for the next %g s",
                operation,
                error,
                FALLBACK_SECONDS,
            )

    def _recovered(self) -> None:
        with _state_lock:
            was_down = _fallback_until.pop(self._location, None) is not None
        if was_down:
            logger.warning("Redis cache reachable again; throttles count in Redis")

    def _run(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        if not self._falling_back():
            try:
                result = getattr(super(), operation)(*args, **kwargs)
            except (RedisError, OSError) as error:
                self._failed(operation, error)
            else:
                if self._location in _fallback_until:
                    self._recovered()
                return result
        return getattr(self._local, operation)(*args, **kwargs)

    # --- the cache API -----------------------------------------------------------------

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        return self._run("add", key, value, timeout, version)

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._run("get", key, default, version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        return self._run("set", key, value, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        return self._run("touch", key, timeout, version)

    def delete(self, key: Any, version: Any = None) -> Any:
        return self._run("delete", key, version)

    def get_many(self, keys: Any, version: Any = None) -> Any:
        return self._run("get_many", keys, version)

    def has_key(self, key: Any, version: Any = None) -> Any:
        return self._run("has_key", key, version)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        return self._run("incr", key, delta, version)

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        return self._run("set_many", data, timeout, version)

    def delete_many(self, keys: Any, version: Any = None) -> Any:
        return self._run("delete_many", keys, version)

    def clear(self) -> None:
        self._local.clear()
        self._run("clear")
