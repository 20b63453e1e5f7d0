"""The high-risk rules API against its OpenAPI schema, as a Healthcare organisation.

``tests/test_api_schema.py`` fuzzes every operation as a Pro organisation, which these
answer with 403; here an API key of a Healthcare organisation (an owner, in effect) reaches
the views: valid and invalid rules, ids and bodies. No answer may be a 5xx, every status
must be documented and every body match its schema. Bounded and reproducible like the
other: a fixed seed, derandomised, a fixed number of examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from aqta.wsgi import application

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20_261_203,
        # As in tests/test_api_schema.py: the API's rules go beyond what OpenAPI can say
        # (a pattern must compile in RE2), so only these two checks are off.
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {"enabled": False},
        },
        "generation": {
            "max-examples": 40,
            "deterministic": True,
            "with-security-parameters": False,
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG).include(
    path_regex="^/api/health/high-risk-rules"
)
examples = hypothesis_settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, database=None
)
ENVIRON = {"REMOTE_ADDR": "127.0.0.1"}
CALLER: dict = {}


@pytest.fixture
def clinic_key(db, settings):
    from accounts.services import api_key_create, organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    owner = UserFactory.create()
    clinic = organization_create(name="Clinic", owner=owner, tier=tier_get(slug="healthcare"))
    _, secret = api_key_create(organization=clinic, created_by=owner, name="fuzz")
    CALLER["secret"] = secret
    # As Django's test client does: a request's end must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
    CALLER.clear()


class ClinicKeyAuth:
    """``Authorization: Bearer sk-aqta-…``, an API key of a Healthcare organisation."""

    def get(self, case, context) -> str:
        secret: str = CALLER.get("secret", "placeholder")
        return secret

    def set(self, case, secret: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {secret}"}


@schema.parametrize()
@schema.auth(ClinicKeyAuth)
@examples
def test_the_rules_api_matches_its_schema_for_a_healthcare_organisation(case, clinic_key):
    auth = ClinicKeyAuth()
    auth.set(case, auth.get(case, None), None)
    case.call_and_validate(environ_base=ENVIRON)
