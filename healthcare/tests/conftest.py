"""Fixtures of the healthcare tests: a Healthcare organisation, the issuer's key list read
afresh in every test (each test's database starts without it), and the live-gateway
fixtures of ``gateway/tests/conftest.py`` for the live tests."""

from __future__ import annotations

import pytest
from django.db import connection

from gateway.tests.conftest import live_gateway, make_key, mock, mock_provider  # noqa: F401
from healthcare import keyring


@pytest.fixture(autouse=True)
def _fresh_keyring():
    keyring.forget()
    yield
    keyring.forget()


@pytest.fixture
def healthcare_org(org):
    """``org`` (the user's, with ``api_key``, ``key_client`` and ``session_client``) moved
    to the Healthcare tier."""
    from billing.selectors import tier_get

    org.tier = tier_get(slug="healthcare")
    org.save(update_fields=["tier"])
    return org


@pytest.fixture
def other_org(db):
    """Another Healthcare organisation, with its own owner."""
    from accounts.services import organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get

    return organization_create(
        name="Globex", owner=UserFactory.create(), tier=tier_get(slug="healthcare")
    )


@pytest.fixture
def postgresql(db):
    """Tests of what only PostgreSQL enforces (the append-only triggers)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL (the triggers are PostgreSQL's)")
