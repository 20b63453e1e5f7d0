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


def _allow_truncate(connection, **kwargs) -> None:
    """Append-only tables refuse TRUNCATE (healthcare/migrations/0002); the test database
    empties them between tests with it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET aqta.allow_truncate = 'on'")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_allow_truncate)
    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.connection is not None:
                _allow_truncate(connection)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache (Redis when configured): start every test clean."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _checkpoint_store(tmp_path, settings):
    """Each test signs chain checkpoints into a file store of its own: the database is
    rolled back after a test, the files would not be."""
    settings.AQTA_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    from compliance import checkpoints

    checkpoints._latest_cache.clear()


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
