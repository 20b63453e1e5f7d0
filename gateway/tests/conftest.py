"""Live-gateway fixtures: a real uvicorn process (the production ASGI app) on a loopback
port, sharing the test database, in front of the mock OpenAI provider.

Data the gateway must see is committed (``transactional_db``). Redis is used when the
test settings have it, or when one answers on 127.0.0.1:6379 (a db index of our own).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
import redis
from django.conf import settings
from django.db import connection

from gateway.mock_provider import MockConfig, MockServer
from healthcare.signing import issuer_key

if TYPE_CHECKING:
    from accounts.models import ApiKey

ROOT = Path(__file__).resolve().parents[2]
# A db index of the tests' own; AQTA_TEST_REDIS_URL moves it (parallel checkouts).
LOCAL_REDIS = os.environ.get("AQTA_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")

# The ``make_key`` fixture: ``make_key(tier=..., key_options=..., **org_fields)``.
MakeKey = Callable[..., tuple[str, "ApiKey"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_url_for_tests() -> str | None:
    """The Redis the live gateway uses: the configured one, else a local one if it answers."""
    if settings.REDIS_URL:
        return settings.REDIS_URL
    try:
        redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=0.3).ping()
    except redis.RedisError:
        return None
    return LOCAL_REDIS


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


SEED_MIGRATIONS = (
    "billing.migrations.0002_seed_tiers_models_prices",
    "billing.migrations.0005_seed_current_models",
)


def seed_catalogue() -> None:
    """Tiers, models, prices and aliases (the data migrations' own functions; idempotent)."""
    from django.apps import apps

    for name in SEED_MIGRATIONS:
        importlib.import_module(name).seed(apps, None)


@dataclass
class LiveGateway:
    url: str
    process: subprocess.Popen
    redis_url: str | None
    mock: MockServer
    environment: dict[str, str]  # the gateway's, for processes that run beside it

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def sdk(self, secret: str, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=secret, max_retries=0, **kwargs)


@contextlib.contextmanager
def run_gateway(mock: MockServer, *, workers: int = 1, redis_url: str | None, **env: str):
    port = _free_port()
    metrics_dir = tempfile.mkdtemp(prefix="aqta-metrics-")
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "aqta.settings",
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": "live-gateway-test-secret",
        "AQTA_API_KEY_PEPPER": settings.AQTA_API_KEY_PEPPER,
        "AQTA_ENCRYPTION_KEYS": ",".join(settings.AQTA_ENCRYPTION_KEYS),
        "AQTA_STAFF_REQUIRE_MFA": "false",
        "AQTA_RECEIPT_SIGNING_KEY": issuer_key().seed,
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_API_KEY": "mock-upstream-key",
        "ANTHROPIC_BASE_URL": mock.url,
        "ANTHROPIC_API_KEY": "mock-anthropic-key",
        "GEMINI_BASE_URL": mock.url,
        "GEMINI_API_KEY": "mock-gemini-key",
        "PERPLEXITY_BASE_URL": mock.url + "/perplexity",
        "PERPLEXITY_API_KEY": "mock-perplexity-key",
        "AQTA_UPSTREAM_READ_TIMEOUT": "3",
        # Loaded once at start-up: each test's flush and reseed must not open a window
        # in which the catalogue is empty.
        "AQTA_CATALOG_REFRESH_SECONDS": "3600",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "LOG_LEVEL": "WARNING",
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **env,
    }
    command = [
        sys.executable, "-m", "uvicorn", "aqta.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--lifespan", "on", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("the gateway process exited at start-up")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start within 30 s")
            time.sleep(0.1)
        yield LiveGateway(
            url=url, process=process, redis_url=redis_url, mock=mock, environment=environment
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[MockServer]:
    with MockServer(MockConfig(chunks=5)) as server:
        yield server


@pytest.fixture
def mock(mock_provider: MockServer) -> MockServer:
    """The mock with an empty fault script and fresh statistics."""
    httpx.post(mock_provider.url + "/_mock/reset")
    return mock_provider


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker, mock_provider) -> Iterator[LiveGateway]:
    with django_db_blocker.unblock():
        seed_catalogue()
    with run_gateway(mock_provider, redis_url=redis_url_for_tests()) as gateway:
        yield gateway


@pytest.fixture
def gw(live_gateway: LiveGateway, transactional_db, mock, settings) -> LiveGateway:
    """The live gateway, with committed seed data for this test. The test process shares
    the gateway's Redis, as the control plane does in production (revocations, caches)."""
    seed_catalogue()
    if live_gateway.redis_url:
        settings.REDIS_URL = live_gateway.redis_url
    return live_gateway


def drain_traces() -> None:
    """Wait until the gateway has written every buffered trace, so the test database can
    be flushed without racing the flusher (on PostgreSQL the two would deadlock)."""
    from gateway.dataplane.buffer import STREAM
    from gateway.models import Trace

    url = redis_url_for_tests()
    if url:
        client = redis.Redis.from_url(url)
        wait_for(lambda: client.xlen(STREAM) == 0, timeout=10, interval=0.05)
    last = -1
    for _ in range(40):  # then until the trace count holds still
        count = Trace.objects.count()
        if count == last:
            return
        last = count
        time.sleep(0.15)


@pytest.fixture
def make_key(transactional_db):
    """Create a committed organisation + key; returns (secret, ApiKey)."""
    from accounts.services import api_key_create, organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get

    def make(
        tier: str = "pro", key_options: dict[str, Any] | None = None, **org_fields: Any
    ) -> tuple[str, ApiKey]:
        seed_catalogue()
        user = UserFactory.create()
        org = organization_create(name="Live", owner=user, tier=tier_get(slug=tier))
        for name, value in org_fields.items():
            setattr(org, name, Decimal(value) if name.endswith("_eur") else value)
        if org_fields:
            org.save()
        api_key, secret = api_key_create(
            organization=org, created_by=user, name="live", **(key_options or {})
        )
        return secret, api_key

    yield make
    drain_traces()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    """Poll until ``predicate()`` is truthy (traces are written asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
