"""Fixtures shared by every app's tests (``org``, ``user``, ``api_key``, API clients)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient


def pytest_configure(config) -> None:
    # The hashed-manifest storage needs `collectstatic`; tests render pages without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # WhiteNoise warns otherwise


def pytest_report_header(config) -> list[str]:
    db = settings.DATABASES["default"]
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [
        f"aqta: database {db['ENGINE'].rsplit('.', 1)[-1]} ({db['NAME']}), cache {cache_backend}, "
        f"celery {'eager' if settings.CELERY_TASK_ALWAYS_EAGER else settings.CELERY_BROKER_URL}"
    ]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache (Redis when configured): start every test clean."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(db):
    from accounts.tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def org(user):
    """The user's personal organisation on the Pro tier."""
    from accounts.services import organization_create
    from billing.selectors import tier_get

    return organization_create(name="Acme", owner=user, tier=tier_get(slug="pro"))


@pytest.fixture
def api_key(org, user):
    """(ApiKey, secret) for ``org``."""
    from accounts.services import api_key_create

    return api_key_create(organization=org, created_by=user, name="test key")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def key_client(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client


@pytest.fixture
def session_client(user, org) -> APIClient:
    """Logged in through the session, with CSRF enforced like a browser would see it."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client
