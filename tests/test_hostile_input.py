"""Hostile input to /api and the HTML sign-in: deep nesting, NUL bytes, wrong types, huge
numbers and sizes. Each gets a 4xx in the one error envelope, and what is stored stays
as it was (same keys, same audit chain, still verifying)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.tests.factories import PASSWORD
from compliance.models import AuditEvent
from compliance.services import audit_chain_verify

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code"} <= set(body["error"]), body
    error: dict = body["error"]
    return error


@pytest.fixture
def stored(org, api_key):
    """A snapshot of what is stored, to compare once the hostile requests are done."""

    def snapshot() -> tuple:
        keys = list(ApiKey.objects.order_by("pk").values_list("pk", "name", "digest", "revoked_at"))
        events = list(AuditEvent.objects.order_by("pk").values_list("pk", "hash"))
        return keys, events, User.objects.count()

    before = snapshot()
    yield
    assert snapshot() == before
    assert audit_chain_verify(scope=str(org.pk)) is None
    assert audit_chain_verify(scope="global") is None


def _post_raw(client, path: str, body: bytes | str, content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


# --- deep nesting ---------------------------------------------------------------------------

DEEP = [
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000,
    '{"name": "k", "allowed_models": ' + "[" * 50_000 + "]" * 50_000 + "}",
]


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "inside-a-field"])
@pytest.mark.parametrize("path", ["/api/keys", "/api/auth/login", "/api/auth/signup"])
def test_deeply_nested_json_is_a_400_invalid_json(key_client, stored, path, body):
    response = _post_raw(key_client, path, body)

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"
    assert "nested too deeply" in _error(response)["message"]


def test_json_nested_within_reason_still_reaches_validation(key_client, stored):
    body = {"name": "k", "allowed_models": [[[["gpt-4o-mini"]]]]}

    response = key_client.post("/api/keys", body, format="json")

    assert response.status_code == 400
    assert _error(response)["param"] == "allowed_models[0]"


# --- NUL bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/keys", {"name": "a\x00b"}, "name"),
        ("/api/keys", {"name": "k", "allowed_models": ["gpt-4o\x00"]}, "allowed_models[0]"),
        ("/api/auth/login", {"email": "a\x00@example.com", "password": "x"}, "email"),
        ("/api/auth/login", {"email": "a@example.com", "password": "pass\x00word"}, "password"),
        (
            "/api/auth/signup",
            {"email": "n@example.com", "password": "correct horse battery", "name": "\x00"},
            "name",
        ),
        ("/api/auth/oauth-signin", {"provider": "google", "next": "/\x00"}, "next"),
    ],
)
def test_nul_bytes_in_strings_are_a_400_naming_the_field(key_client, stored, path, body, param):
    response = key_client.post(path, body, format="json")

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_parameter"
    assert _error(response)["param"] == param


@pytest.mark.parametrize("param", ["model", "provider", "error_code", "cursor", "start"])
def test_nul_bytes_in_analytics_filters_are_a_400(key_client, stored, param):
    response = key_client.get("/api/analytics/requests", {param: "x\x00y"})

    assert response.status_code == 400
    assert _error(response)["param"] == param


def test_nul_bytes_in_the_organization_header_and_key_id_are_404s(session_client, stored):
    assert session_client.get("/api/keys", HTTP_X_AQTA_ORGANIZATION="\x00").status_code == 404
    assert session_client.get("/api/keys/%00").status_code == 404


def test_a_nul_byte_in_the_user_agent_is_not_stored_into_the_audit_log(user, org):
    response = APIClient().post(
        "/api/auth/login",
        {"email": user.email, "password": PASSWORD},
        format="json",
        HTTP_USER_AGENT="curl\x00/8",
    )

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="auth.login", actor=user)
    assert "\x00" not in event.user_agent
    assert audit_chain_verify(scope="global") is None


def test_a_malformed_client_address_is_audited_without_it(session_client, user, org):
    # A proxy or server may hand over anything; the audit log's ip column takes addresses.
    session_client.get("/api/auth/me", REMOTE_ADDR="garbage")
    token = session_client.cookies["csrftoken"].value

    response = session_client.post(
        "/api/keys",
        {"name": "from nowhere"},
        format="json",
        REMOTE_ADDR="garbage",
        HTTP_X_CSRFTOKEN=token,
    )
    logout = session_client.post("/api/auth/logout", REMOTE_ADDR="garbage", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 201
    assert logout.status_code == 204
    event = AuditEvent.objects.get(action="auth.logout", actor=user)
    assert event.ip is None
    assert audit_chain_verify(scope="global") is None


def test_a_failed_login_with_a_very_long_email_is_audited():
    email = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 50 + ".example.com"

    response = APIClient().post(
        "/api/auth/login", {"email": email, "password": "whatever it is"}, format="json"
    )

    assert response.status_code == 401
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.actor_label == email
    assert event.target == email[:200]
    assert audit_chain_verify(scope="global") is None


def test_nul_bytes_in_the_html_login_are_a_form_error(user, stored):
    page = Client().post("/accounts/login/", {"login": f"{user.email}\x00", "password": "x\x00"})

    assert page.status_code == 200
    assert "Null characters are not allowed" in page.content.decode()


# --- wrong types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": {"a": 1}}, "name"),
        ({"name": ["k"]}, "name"),
        ({"name": True}, "name"),
        ({"name": "k", "allowed_models": {"0": "gpt-4o"}}, "allowed_models"),
        ({"name": "k", "allowed_models": [{"id": "gpt-4o"}]}, "allowed_models[0]"),
        ({"name": "k", "rate_limit_per_minute": [5]}, "rate_limit_per_minute"),
        ({"name": "k", "rate_limit_per_minute": 5.5}, "rate_limit_per_minute"),
        ({"name": "k", "monthly_budget_eur": {"eur": 5}}, "monthly_budget_eur"),
        ({"name": "k", "expires_at": 1735689600}, "expires_at"),
    ],
)
def test_wrong_types_are_a_400_naming_the_field(key_client, stored, body, param):
    response = key_client.post("/api/keys", body, format="json")

    assert response.status_code == 400
    assert _error(response)["code"] in {"invalid_parameter", "missing_parameter"}
    assert _error(response)["param"] == param


@pytest.mark.parametrize("body", ["[]", '"a key"', "42", "null", "true"])
@pytest.mark.parametrize("path", ["/api/keys", "/api/auth/login", "/api/auth/signup"])
def test_a_body_that_is_not_an_object_is_a_400(key_client, stored, path, body):
    response = _post_raw(key_client, path, body)

    assert response.status_code == 400
    assert _error(response)["type"] == "invalid_request_error"


def test_invalid_utf8_is_a_400_invalid_json(key_client, stored):
    response = _post_raw(key_client, "/api/keys", b'{"name": "\xff\xfe"}')

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


# --- huge numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ('{"name": "k", "rate_limit_per_minute": 1' + "0" * 400 + "}", "rate_limit_per_minute"),
        ('{"name": "k", "rate_limit_per_minute": 1e400}', "rate_limit_per_minute"),
        ('{"name": "k", "rate_limit_per_minute": -1e400}', "rate_limit_per_minute"),
        ('{"name": "k", "monthly_budget_eur": 1e400}', "monthly_budget_eur"),
        ('{"name": "k", "monthly_budget_eur": "1' + "0" * 400 + '"}', "monthly_budget_eur"),
        ('{"name": "k", "expires_at": "99999-01-01T00:00:00Z"}', "expires_at"),
    ],
)
def test_huge_numbers_are_a_400_naming_the_field(key_client, stored, raw, param):
    response = _post_raw(key_client, "/api/keys", raw)

    assert response.status_code == 400
    assert _error(response)["param"] == param


def test_a_vanishingly_small_budget_is_zero(key_client, org):
    # 1e-400 is 0.0: a valid, if odd, budget of zero (stored and audited like any key).
    response = _post_raw(key_client, "/api/keys", '{"name": "k", "monthly_budget_eur": 1e-400}')

    assert response.status_code == 201
    assert response.json()["monthly_budget_eur"] == "0.00"
    assert AuditEvent.objects.filter(target=response.json()["id"]).count() == 1
    assert audit_chain_verify(scope=str(org.pk)) is None


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_invalid_json(key_client, stored, constant):
    raw = '{"name": "k", "monthly_budget_eur": ' + constant + "}"

    response = _post_raw(key_client, "/api/keys", raw)

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


def test_an_integer_with_thousands_of_digits_is_a_400(key_client, stored):
    raw = '{"name": "k", "rate_limit_per_minute": ' + "9" * 5000 + "}"

    response = _post_raw(key_client, "/api/keys", raw)

    assert response.status_code == 400
    assert _error(response)["code"] in {"invalid_json", "invalid_parameter"}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "9" * 40}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"start": "9999-12-31", "end": "9999-12-31"}, "start"),
        ({"start": "0001-01-01"}, "start"),
        ({"end": "99999-01-01"}, "end"),
        ({"end": "0001-01-01"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
        (
            {"start": "9998-12-31T00:00:00Z", "end": "9999-12-31T23:30:00Z", "group_by": "hour"},
            "end",
        ),
    ],
)
def test_huge_numbers_and_dates_in_analytics_are_a_400(key_client, stored, query, param):
    response = key_client.get("/api/analytics/requests", query)

    assert response.status_code == 400
    assert _error(response)["param"] == param


# --- huge sizes -------------------------------------------------------------------------


def test_a_body_over_the_upload_limit_is_a_413_in_the_envelope(key_client, stored, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"name": "k", "allowed_models": ["x" * 100] * 150})

    response = _post_raw(key_client, "/api/keys", body)

    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


def test_a_form_body_over_the_upload_limit_is_a_413_in_the_envelope(key_client, stored, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = "name=k&" + "&".join(f"allowed_models={'x' * 100}" for _ in range(150))

    response = _post_raw(key_client, "/api/keys", body, "application/x-www-form-urlencoded")

    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


def test_a_form_with_too_many_fields_is_a_400_in_the_envelope(key_client, stored):
    body = "name=k&" + "&".join(f"f{i}=1" for i in range(1_500))

    response = _post_raw(key_client, "/api/keys", body, "application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "k" * 100_000}, "name"),
        ({"name": "k", "allowed_models": ["gpt-4o-mini"] * 201}, "allowed_models"),
        ({"name": "k", "allowed_models": ["m" * 10_000]}, "allowed_models[0]"),
        ({"email": "a" * 10_000 + "@example.com", "password": "x"}, "email"),
    ],
)
def test_oversized_fields_are_a_400_naming_the_field(key_client, stored, body, param):
    path = "/api/auth/login" if "email" in body else "/api/keys"

    response = key_client.post(path, body, format="json")

    assert response.status_code == 400
    assert _error(response)["param"] == param
