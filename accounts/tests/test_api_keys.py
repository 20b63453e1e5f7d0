from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Role
from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditEvent

pytestmark = pytest.mark.django_db


def _error(response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def _csrf_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/api/auth/me")  # sets the csrftoken cookie, as the dashboard does
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


@pytest.fixture
def other_org_key():
    stranger = UserFactory.create()
    other = organization_create(name="Other", owner=stranger, tier=tier_get(slug="pro"))
    return api_key_create(organization=other, created_by=stranger, name="theirs")


# --- listing and creating ---------------------------------------------------------------


def test_listing_shows_the_organisations_keys_without_secrets(key_client, api_key, other_org_key):
    response = key_client.get("/api/keys")
    assert response.status_code == 200
    ids = [k["id"] for k in response.json()["data"]]
    assert ids == [str(api_key[0].pk)]
    text = response.content.decode()
    assert api_key[1] not in text and api_key[0].digest not in text
    assert response.json()["data"][0]["prefix"] == api_key[1][:12]


def test_creating_returns_the_secret_once_and_it_works(key_client):
    created = key_client.post(
        "/api/keys",
        {"name": "ci", "allowed_models": ["gpt-4o-mini"], "rate_limit_per_minute": 50},
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith("sk-aqta-") and body["last4"] == secret[-4:]
    assert body["allowed_models"] == ["gpt-4o-mini"] and body["rate_limit_per_minute"] == 50
    assert created["Cache-Control"] == "no-store"

    again = key_client.get(f"/api/keys/{body['id']}")
    assert "key" not in again.json() and secret not in again.content.decode()
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert fresh.get("/api/keys").status_code == 200
    assert AuditEvent.objects.filter(action="api_key.created", target=body["id"]).exists()


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        ({}, "missing_parameter", "name"),
        ({"name": ""}, "missing_parameter", "name"),
        ({"name": "x" * 101}, "invalid_parameter", "name"),
        ({"name": "k", "rate_limit_per_minute": 0}, "invalid_parameter", "rate_limit_per_minute"),
        (
            {"name": "k", "rate_limit_per_minute": "fast"},
            "invalid_parameter",
            "rate_limit_per_minute",
        ),
        ({"name": "k", "allowed_models": "gpt-4o"}, "invalid_parameter", "allowed_models"),
        ({"name": "k", "allowed_models": ["gpt-9"]}, "invalid_parameter", "allowed_models"),
        ({"name": "k", "monthly_budget_eur": "-1"}, "invalid_parameter", "monthly_budget_eur"),
        ({"name": "k", "expires_at": "yesterday"}, "invalid_parameter", "expires_at"),
    ],
)
def test_bad_key_input_is_a_400_naming_the_field(key_client, api_key, payload, code, param):
    response = key_client.post("/api/keys", payload, format="json")
    assert response.status_code == 400
    assert _error(response)["code"] == code
    assert _error(response)["param"] == param
    assert _error(response)["type"] == "invalid_request_error"
    assert ApiKey.objects.count() == 1


def test_an_expiry_in_the_past_is_refused(key_client):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = key_client.post("/api/keys", {"name": "k", "expires_at": past}, format="json")
    assert response.status_code == 400
    assert _error(response)["param"] == "expires_at"


def test_malformed_json_and_wrong_content_type_are_refused(key_client):
    broken = key_client.generic("POST", "/api/keys", "{not json", content_type="application/json")
    plain = key_client.generic("POST", "/api/keys", "name=x", content_type="text/plain")
    assert broken.status_code == 400 and _error(broken)["code"] == "invalid_json"
    assert plain.status_code == 415 and _error(plain)["code"] == "unsupported_media_type"


def test_a_free_tier_key_cannot_raise_its_rate_limit_above_the_tier(user):
    free = organization_create(name="Free org", owner=user, tier=tier_get(slug="free"))
    _, secret = api_key_create(organization=free, created_by=user, name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.post("/api/keys", {"name": "x", "rate_limit_per_minute": 6}, format="json")
    assert response.status_code == 403
    assert _error(response)["code"] == "tier_feature_unavailable"
    lower = client.post("/api/keys", {"name": "x", "rate_limit_per_minute": 2}, format="json")
    assert lower.status_code == 201


def test_key_creation_is_throttled_per_organisation(key_client, settings):
    settings.AQTA_KEY_CREATE_RATE = "2/h"
    codes = [key_client.post("/api/keys", {"name": f"k{i}"}, format="json") for i in range(3)]
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert _error(codes[2])["code"] == "rate_limit_exceeded"
    assert int(codes[2]["Retry-After"]) >= 1
    assert _error(codes[2])["retry_after"] == int(codes[2]["Retry-After"])


# --- revoking ---------------------------------------------------------------------------


def test_a_revoked_key_stops_working_at_once(key_client, api_key, org, user):
    victim, victim_secret = api_key_create(organization=org, created_by=user, name="victim")
    response = key_client.delete(f"/api/keys/{victim.pk}")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {victim_secret}")
    denied = client.get("/api/keys")
    assert denied.status_code == 401
    assert _error(denied)["code"] == "invalid_api_key"
    # Revoking again is harmless.
    assert key_client.delete(f"/api/keys/{victim.pk}").status_code == 200
    assert AuditEvent.objects.filter(action="api_key.revoked", target=str(victim.pk)).count() == 1


def test_another_organisations_key_is_a_404_and_stays_untouched(
    key_client, session_client, other_org_key
):
    their_key, _ = other_org_key
    for client in (key_client, session_client):
        assert client.get(f"/api/keys/{their_key.pk}").status_code == 404
    assert key_client.delete(f"/api/keys/{their_key.pk}").status_code == 404
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
    assert key_client.get("/api/keys/not-a-uuid").status_code == 404
    assert _error(key_client.get(f"/api/keys/{their_key.pk}"))["code"] == "not_found"


def test_a_member_revokes_only_their_own_keys(org, user):
    member = UserFactory.create()
    Membership.objects.create(organization=org, user=member, role=Role.MEMBER)
    owners_key, _ = api_key_create(organization=org, created_by=user, name="owner's")
    members_key, _ = api_key_create(organization=org, created_by=member, name="member's")
    client = _csrf_client(member)

    refused = client.delete(f"/api/keys/{owners_key.pk}")
    allowed = client.delete(f"/api/keys/{members_key.pk}")

    assert refused.status_code == 403 and _error(refused)["code"] == "permission_denied"
    assert allowed.status_code == 200
    owner = _csrf_client(user)
    assert owner.delete(f"/api/keys/{owners_key.pk}").status_code == 200


# --- authentication ---------------------------------------------------------------------


def test_missing_unknown_revoked_and_expired_keys_get_the_same_401(api_client, org, user):
    from accounts import keys
    from accounts.services import api_key_revoke

    revoked, revoked_secret = api_key_create(organization=org, created_by=user, name="r")
    api_key_revoke(api_key=revoked)
    expired, expired_secret = api_key_create(
        organization=org,
        created_by=user,
        name="e",
        expires_at=timezone.now() + timedelta(seconds=1),
    )
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    bodies = []
    for secret in (keys.generate(), revoked_secret, expired_secret, "sk-aqta-short"):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        response = api_client.get("/api/keys")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        bodies.append(response.json())
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["error"]["code"] == "invalid_api_key"
    api_client.credentials()
    missing = api_client.get("/api/keys")
    assert missing.status_code == 401 and _error(missing)["type"] == "authentication_error"


def test_the_british_authorisation_header_works(api_client, api_key):
    api_client.credentials(HTTP_AUTHORISATION=f"Bearer {api_key[1]}")
    assert api_client.get("/api/keys").status_code == 200


def test_using_a_key_records_last_used_at_most_once_a_minute(key_client, api_key):
    key_client.get("/api/keys")
    api_key[0].refresh_from_db()
    first = api_key[0].last_used_at
    assert first is not None
    key_client.get("/api/keys")
    api_key[0].refresh_from_db()
    assert api_key[0].last_used_at == first


# --- the dashboard session ----------------------------------------------------------------


def test_session_writes_need_the_csrf_token(session_client, user):
    refused = session_client.post("/api/keys", {"name": "no token"}, format="json")
    assert refused.status_code == 403
    assert _error(refused)["code"] == "csrf_failed"
    assert session_client.get("/api/keys").status_code == 200

    accepted = _csrf_client(user).post("/api/keys", {"name": "with token"}, format="json")
    assert accepted.status_code == 201


def test_the_session_works_on_the_chosen_organisation_only_if_a_member(user, org):
    second = organization_create(name="Second", owner=user, tier=tier_get(slug="starter"))
    api_key_create(organization=second, created_by=user, name="in second")
    foreign = organization_create(
        name="Foreign", owner=UserFactory.create(), tier=tier_get(slug="free")
    )
    client = _csrf_client(user)

    chosen = client.get("/api/keys", HTTP_X_AQTA_ORGANIZATION=str(second.pk))
    refused = client.get("/api/keys", HTTP_X_AQTA_ORGANIZATION=str(foreign.pk))

    assert [k["name"] for k in chosen.json()["data"]] == ["in second"]
    assert refused.status_code == 404


def test_unsupported_methods_are_a_405_in_the_envelope(key_client, api_key):
    response = key_client.put("/api/keys", {}, format="json")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_an_unknown_api_path_is_a_json_404(api_client):
    response = api_client.get("/api/does-not-exist")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_a_blank_allowed_model_is_a_400_naming_its_index(key_client, api_key):
    response = key_client.post(
        "/api/keys", {"name": "x", "allowed_models": ["gpt-4o-mini", ""]}, format="json"
    )

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_parameter"
    assert _error(response)["param"] == "allowed_models[1]"
    assert _error(response)["type"] == "invalid_request_error"
    assert ApiKey.objects.count() == 1
