"""The control plane with its Redis gone: stopped, then frozen.

Each test starts a ``redis-server`` of its own on a free port and points the settings'
cache (and the key-record invalidations) at it, so stopping or freezing it touches no
other Redis. Sign-in keeps working and is audited, throttles keep counting (in process
memory), and nothing answers 500 or hangs.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.tests.factories import PASSWORD, UserFactory
from aqta import cache as aqta_cache
from aqta import redis as aqta_redis
from aqta.settings import redis_cache
from compliance.models import AuditEvent
from tests.redis_server import redis_server

# Transactional: key revocation invalidates the gateway's Redis records on commit.
pytestmark = pytest.mark.django_db(transaction=True)

# A request may wait on Redis once per FALLBACK_SECONDS (the socket timeout, 0.5 s by
# default); everything else is the app itself. Generous for a loaded CI machine.
SLOWEST_REQUEST_SECONDS = 2.5


@dataclass
class OwnRedis:
    port: int
    process: subprocess.Popen
    frozen: bool = False
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def stop(self) -> None:
        if self.frozen:
            self.thaw()
        self.process.terminate()
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False


@pytest.fixture(autouse=True)
def _catalogue(transactional_db) -> None:
    """Tiers and models (the data migration's own, idempotent seed): an earlier
    transactional test may have flushed them."""
    import importlib

    from django.apps import apps

    importlib.import_module("billing.migrations.0002_seed_tiers_models_prices").seed(apps, None)


@pytest.fixture
def own_redis(tmp_path, settings) -> Iterator[OwnRedis]:
    with redis_server(tmp_path) as (process, port):
        own = OwnRedis(port=port, process=process)
        try:
            settings.CACHES = {"default": redis_cache(own.url)}
            settings.REDIS_URL = own.url
            settings.AQTA_STAFF_REQUIRE_MFA = False
            aqta_redis.sync_client.cache_clear()
            aqta_cache._fallback_until.clear()
            cache.clear()  # this server and the process-memory fallback
            yield own
        finally:
            if own.frozen:
                own.thaw()
            cache.clear()
            aqta_redis.sync_client.cache_clear()
            aqta_cache._fallback_until.clear()


def _error(response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def _login(client, email: str, password: str):
    return client.post("/api/auth/login", {"email": email, "password": password}, format="json")


def _csrf_client(user: User) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/api/auth/me")
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def _events(action: str, **filters) -> int:
    return AuditEvent.objects.filter(action=action, **filters).count()


class Timed:
    """Every request through it must answer within SLOWEST_REQUEST_SECONDS."""

    def __init__(self) -> None:
        self.slowest = 0.0

    def __call__(self, call, *args, **kwargs):
        started = time.monotonic()
        response = call(*args, **kwargs)
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        label = getattr(call, "__name__", str(call))
        assert took < SLOWEST_REQUEST_SECONDS, f"{label} {args[1:2]} took {took:.2f} s"
        return response


def _exercise_the_control_plane(user: User, org, key_secret: str, timed: Timed) -> None:
    """Sign-in (API, HTML, admin), sign-out, signup, key creation and revocation: the right
    status, the envelope, and the audit event of each (in the database, never lost with
    Redis), whatever state Redis is in."""
    # API login: the right password, then a wrong one.
    api = APIClient()
    before = _events("auth.login", actor=user)
    ok = timed(_login, api, user.email, PASSWORD)
    assert ok.status_code == 200, ok.content
    assert ok.json()["user"]["email"] == user.email
    assert _events("auth.login", actor=user) == before + 1

    before = _events("auth.logout", actor=user)
    assert timed(api.post, "/api/auth/logout").status_code == 204
    assert _events("auth.logout", actor=user) == before + 1

    before = _events("auth.login_failed", target=user.email)
    wrong = timed(_login, APIClient(), user.email, "not the password")
    assert wrong.status_code == 401
    assert _error(wrong)["code"] == "invalid_credentials"
    assert _error(wrong)["type"] == "authentication_error"
    assert _events("auth.login_failed", target=user.email) == before + 1

    # The HTML login, and the admin's, which goes through it.
    before = _events("auth.login_failed", target=user.email)
    page = timed(Client().post, "/accounts/login/", {"login": user.email, "password": "nope"})
    assert page.status_code == 200
    assert _events("auth.login_failed", target=user.email) == before + 1

    staff = UserFactory.create(is_staff=True, is_superuser=True)
    browser = Client()
    before = _events("auth.login", actor=staff)
    to_login = timed(browser.get, "/admin/login/?next=/admin/")
    assert to_login.status_code == 302 and to_login.url.startswith("/accounts/login/")
    signed_in = timed(
        browser.post, "/accounts/login/?next=/admin/", {"login": staff.email, "password": PASSWORD}
    )
    assert signed_in.status_code == 302 and signed_in.url == "/admin/"
    assert timed(browser.get, "/admin/").status_code == 200
    assert _events("auth.login", actor=staff) == before + 1

    # Signup.
    email = f"new-{time.monotonic_ns()}@example.com"
    signup = timed(
        APIClient().post,
        "/api/auth/signup",
        {"email": email, "password": "correct horse battery staple"},
        format="json",
    )
    assert signup.status_code == 201, signup.content
    assert _events("auth.signup", actor__email=email) == 1

    # Key creation with an API key, then with the session (CSRF), then on the dashboard.
    keys = APIClient()
    keys.credentials(HTTP_AUTHORIZATION=f"Bearer {key_secret}")
    created = timed(keys.post, "/api/keys", {"name": "during"}, format="json")
    assert created.status_code == 201, created.content
    assert _events("api_key.created", target=created.json()["id"]) == 1

    session = _csrf_client(user)
    by_session = timed(session.post, "/api/keys", {"name": "by session"}, format="json")
    assert by_session.status_code == 201, by_session.content
    assert _events("api_key.created", target=by_session.json()["id"]) == 1

    dashboard = Client()
    dashboard.force_login(user)
    before = _events("api_key.created", organization=org)
    page = timed(dashboard.post, "/dashboard/keys/", {"name": "from the dashboard"})
    assert page.status_code == 200 and b"sk-aqta-" in page.content
    assert _events("api_key.created", organization=org) == before + 1

    # Revocation: stored at once; the gateway reads keys from the database meanwhile.
    revoked = timed(keys.delete, f"/api/keys/{created.json()['id']}")
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["status"] == "revoked"
    assert ApiKey.objects.get(pk=created.json()["id"]).revoked_at is not None
    assert _events("api_key.revoked", target=created.json()["id"]) == 1


def _throttles_still_count(user: User, settings, timed: Timed) -> None:
    """The per-IP login throttle and the per-account lockout keep refusing."""
    settings.AQTA_API_LOGIN_RATE = "3/h"
    statuses = [timed(_login, APIClient(), user.email, PASSWORD).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    settings.AQTA_API_LOGIN_RATE = "1000/h"

    victim = UserFactory.create()
    for _ in range(5):
        assert timed(_login, APIClient(), victim.email, "wrong password!").status_code == 401
    locked = timed(_login, APIClient(), victim.email, PASSWORD)
    assert locked.status_code == 429
    assert _error(locked)["code"] == "too_many_login_attempts"
    assert _events("auth.login_failed", target=victim.email) == 5


def test_the_control_plane_uses_its_redis_while_it_runs(own_redis, user, org, api_key):
    timed = Timed()
    _exercise_the_control_plane(user, org, api_key[1], timed)

    stored = [key.decode() for key in own_redis.client().keys("*")]
    assert any(":rl:" in key or "auth-login" in key for key in stored), stored
    assert any(key.startswith("aqta:rv:") for key in stored), stored


def test_login_and_key_creation_fail_open_when_redis_is_down(
    own_redis, user, org, api_key, settings, caplog
):
    timed = Timed()
    _login(APIClient(), user.email, PASSWORD)  # a pooled connection to the live server
    own_redis.stop()

    with caplog.at_level(logging.ERROR, logger="aqta"):
        _exercise_the_control_plane(user, org, api_key[1], timed)
        _throttles_still_count(user, settings, timed)

    assert any("Redis cache unavailable" in r.getMessage() for r in caplog.records)
    assert any("key records" in r.getMessage() for r in caplog.records)


def test_login_and_key_creation_fail_open_when_redis_is_frozen(
    own_redis, user, org, api_key, settings, caplog
):
    timed = Timed()
    _login(APIClient(), user.email, PASSWORD)
    own_redis.freeze()

    with caplog.at_level(logging.ERROR, logger="aqta"):
        _exercise_the_control_plane(user, org, api_key[1], timed)
        _throttles_still_count(user, settings, timed)

    assert any("Redis cache unavailable" in r.getMessage() for r in caplog.records)


def test_a_frozen_redis_costs_the_socket_timeout_once_then_nothing(own_redis, settings):
    cache.set("probe", "before")
    own_redis.freeze()
    durations = []
    for _ in range(5):
        started = time.monotonic()
        assert cache.get("probe") is None  # not in process memory; Redis does not answer
        durations.append(time.monotonic() - started)
    cache.set("probe", "during")

    timeout = settings.CACHE_REDIS_TIMEOUT
    assert timeout == 0.5
    assert timeout * 0.9 < durations[0] < timeout + 1.0, durations
    assert max(durations[1:]) < 0.05, durations
    assert cache.get("probe") == "during"


def test_the_cache_goes_back_to_redis_once_the_fallback_period_is_over(
    own_redis, monkeypatch, caplog
):
    monkeypatch.setattr(aqta_cache, "FALLBACK_SECONDS", 0.2)
    own_redis.freeze()
    with caplog.at_level(logging.WARNING, logger="aqta.cache"):
        assert cache.add("during", 1) is True  # answered from process memory
        own_redis.thaw()
        time.sleep(0.3)
        assert cache.add("after", 1) is True
        assert cache.add("after", 1) is False

    assert own_redis.client().exists(cache.make_key("after")) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis cache unavailable" in m for m in messages)
    assert any("Redis cache reachable again" in m for m in messages)
