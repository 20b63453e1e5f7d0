"""The receipts API against its OpenAPI schema, as a Healthcare organisation sees it.

``tests/test_api_schema.py`` fuzzes every operation as a Pro organisation, which the
receipts endpoints refuse (403); here the same checks run where they answer: an API key
and a session of a Healthcare organisation that holds receipts.
"""

from __future__ import annotations

from typing import Any

import pytest

from healthcare.tests.factories import receipt_make
from tests.test_api_schema import (
    CALLER,
    CONFIG,
    ENVIRON,
    ApiKeyAuth,
    SessionAuth,
    application,
    examples,
    fuzzed,  # noqa: F401  (a fixture)
    schemathesis,
)

schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG).include(
    tag="receipts"
)


@pytest.fixture
def holding_receipts(fuzzed, healthcare_org):  # noqa: F811
    for outcome in ("ALLOWED", "BLOCKED", "SUPPRESSED"):
        receipt_make(healthcare_org, outcome=outcome, cost_prevented_eur=0.000015)


@pytest.fixture
def as_healthcare_key(holding_receipts, api_key):
    CALLER["secret"] = api_key[1]
    yield
    CALLER.clear()


@pytest.fixture
def as_healthcare_session(holding_receipts, user):
    CALLER["user"] = user
    yield
    CALLER.clear()


def test_the_receipt_operations_are_in_the_schema():
    results: list[Any] = list(schema.get_all_operations())
    paths = {result.ok().path for result in results}
    assert paths == {
        "/api/health/receipts",
        "/api/health/receipts/export",
        "/api/health/receipts/verify",
        "/api/health/receipts/{reference}",
        "/api/health/receipts/{reference}/verify",
    }


@schema.parametrize()
@schema.auth(ApiKeyAuth)
@examples
def test_receipt_operations_match_their_schema_with_an_api_key(case, as_healthcare_key):
    auth = ApiKeyAuth()
    auth.set(case, auth.get(case, None), None)
    case.call_and_validate(environ_base=ENVIRON)


@schema.parametrize()
@schema.auth(SessionAuth, refresh_interval=None)
@examples
def test_receipt_operations_match_their_schema_with_a_session(case, as_healthcare_session):
    auth = SessionAuth()
    auth.set(case, auth.get(case, None), None)
    case.call_and_validate(environ_base=ENVIRON)
