"""Property-based tests of /api against its own OpenAPI schema (schemathesis, in process).

Every operation of ``/api/schema/`` gets valid and invalid requests, authenticated both
ways the API allows (an API key of a Pro organisation, which has analytics; and the
dashboard session with its CSRF token). No answer may be a 5xx, every status must be
documented, and every body must match the documented one. Bounded and reproducible: a
fixed seed, derandomised, a fixed number of examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings
from django.core import signals
from django.db import close_old_connections
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from aqta.wsgi import application

EXAMPLES_PER_OPERATION = 25
SEED = 20_251_202

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        # Off: the two checks that hold the API to accepting exactly what the schema allows.
        # Its rules go beyond what OpenAPI can say (a range of at most 400 days, password
        # strength, `next` on this site), and form posts' empty values mean "not given", as
        # the dashboard's forms send them. Every other check runs: no 5xx, documented
        # statuses, conforming bodies and headers, authentication enforced, 405 for
        # undeclared methods.
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {"enabled": False},
        },
        "generation": {
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            # The credentials are the fixtures'; made-up ones would only shadow them.
            "with-security-parameters": False,
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)
# The fixtures hold the caller's organisation, key and limits, the same for every example;
# each example's database writes are its own (rolled back with the test). Password
# hashing makes a login slower than Hypothesis's default deadline.
examples = hypothesis_settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, database=None
)


# What a server would put in the WSGI environment; werkzeug's test client sets no address.
ENVIRON = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def fuzzed(db, settings):
    """The app called as a server would, inside the test's transaction; limits high enough
    that the fuzzer reaches the views rather than the throttles (each throttle has tests of
    its own)."""
    settings.AQTA_API_LOGIN_RATE = "100000/m"
    settings.AQTA_API_SIGNUP_RATE = "100000/m"
    settings.AQTA_KEY_CREATE_RATE = "100000/m"
    settings.ACCOUNT_RATE_LIMITS = {}
    # A fast hasher for the passwords made and checked here (hundreds of them), so the run
    # stays within its time budget; the real hasher stays listed for existing hashes.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    # As Django's own test client does: the end of a request must not close the
    # connection that holds the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Who the fuzzed calls are made as, set by the fixtures below for the running test.
# Schemathesis also builds the schema's explicit examples while collecting, before any
# fixture ran: those get a placeholder, replaced when the case is sent.
CALLER: dict = {}


@pytest.fixture
def as_api_key(fuzzed, api_key):
    CALLER["secret"] = api_key[1]
    yield
    CALLER.clear()


@pytest.fixture
def as_session(fuzzed, user, org):
    CALLER["user"] = user
    yield
    CALLER.clear()


class ApiKeyAuth:
    """``Authorization: Bearer sk-aqta-…``, an API key of a Pro organisation."""

    def get(self, case, context) -> str:
        secret: str = CALLER.get("secret", "placeholder")
        return secret

    def set(self, case, secret: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {secret}"}


class SessionAuth:
    """The dashboard session cookie and its CSRF token, fresh for every case (a fuzzed
    logout must not end the next one's session). Made without a request, so the signals
    that ``fuzzed`` disconnected stay disconnected."""

    def get(self, case, context) -> tuple[str, str, str]:
        if "user" not in CALLER:
            return "placeholder", "placeholder", "placeholder"
        client = Client()
        client.force_login(CALLER["user"])
        request = HttpRequest()
        token = get_token(request)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        return session, request.META["CSRF_COOKIE"], token

    def set(self, case, data: tuple[str, str, str], context) -> None:
        session, csrf_cookie, token = data
        case.cookies = {
            **(case.cookies or {}),
            settings.SESSION_COOKIE_NAME: session,
            settings.CSRF_COOKIE_NAME: csrf_cookie,
        }
        case.headers = {**(case.headers or {}), "X-CSRFToken": token}


@schema.parametrize()
@schema.auth(ApiKeyAuth)
@examples
def test_every_operation_matches_its_schema_with_an_api_key(case, as_api_key):
    auth = ApiKeyAuth()
    auth.set(case, auth.get(case, None), None)
    case.call_and_validate(environ_base=ENVIRON)


@schema.parametrize()
@schema.auth(SessionAuth, refresh_interval=None)
@examples
def test_every_operation_matches_its_schema_with_a_session(case, as_session):
    auth = SessionAuth()
    auth.set(case, auth.get(case, None), None)
    case.call_and_validate(environ_base=ENVIRON)
