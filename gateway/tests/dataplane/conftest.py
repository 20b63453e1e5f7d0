"""Helpers for the data plane's unit tests: a clock the tests move, the tests' own Redis
and a Redis that does not answer.

Each module under test reads ``time.monotonic()`` through its own ``time`` name, so a test
replaces that name in the module alone: the event loop keeps the real clock.
"""

from __future__ import annotations

import socket
from types import ModuleType

import pytest
from redis.asyncio import Redis

from gateway.tests.conftest import redis_url_for_tests


class Clock:
    """Stands in for the ``time`` module of the code under test."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def use_clock(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> Clock:
    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    return clock


@pytest.fixture
def redis_url() -> str:
    """The tests' own Redis (AQTA_TEST_REDIS_URL, a db index of their own), else skip."""
    url = redis_url_for_tests()
    if url is None:
        pytest.skip("no Redis: set REDIS_URL or run one on 127.0.0.1:6379")
    return url


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unreachable_redis() -> Redis:
    """A client whose every command fails at once with a ConnectionError (a RedisError).

    Made like ``aqta.redis`` makes its clients, from a URL: the ``Redis(host=...)``
    constructor would retry each command ten times with backoff (about 4 s)."""
    return Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
