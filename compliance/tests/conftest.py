"""Fixtures of the audit trail's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_default_high_risk_rules(monkeypatch):
    """These tests count the events of a new Healthcare organisation's trail exactly; the
    default high-risk rules it is given (one more event, ``high_risk_rules.seeded``) are
    tested with the rules (``healthcare/tests/test_rules.py``)."""
    monkeypatch.setattr("accounts.services.high_risk_rules_seed", lambda **kwargs: None)


from compliance.tests.jobs import eager_jobs  # noqa: E402,F401  (a fixture for the job tests)
from gateway.tests.conftest import live_gateway, make_key, mock, mock_provider  # noqa: E402,F401
