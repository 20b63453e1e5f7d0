"""/api/health/high-risk-rules: CRUD, validation, roles, the tier and other organisations."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, Role, User
from accounts.services import api_key_create, organization_change_tier, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditEvent
from healthcare.highrisk import MAX_PATTERN_CHARS
from healthcare.highrisk_defaults import DEFAULT_RULES
from healthcare.models import HighRiskRule

pytestmark = pytest.mark.django_db

URL = "/api/health/high-risk-rules"
RULE = {"name": "Opioids", "category": "dosage", "pattern": "oxycodone|fentanyl"}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _error(response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def _csrf_client(user: User) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/api/auth/me")  # sets the csrftoken cookie, as the dashboard does
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def _clinic(name: str = "Clinic") -> tuple[Organization, User]:
    owner: User = UserFactory.create()
    return organization_create(name=name, owner=owner, tier=tier_get(slug="healthcare")), owner


@pytest.fixture
def clinic() -> Organization:
    return _clinic()[0]


@pytest.fixture
def owner(clinic) -> APIClient:
    return _csrf_client(Membership.objects.get(organization=clinic).user)


def _member(organization: Organization, role: str) -> APIClient:
    user: User = UserFactory.create()
    Membership.objects.create(organization=organization, user=user, role=role)
    return _csrf_client(user)


@pytest.fixture
def clinic_key(clinic) -> APIClient:
    _, secret = api_key_create(organization=clinic, created_by=None, name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _a_rule(organization: Organization) -> HighRiskRule:
    return HighRiskRule.objects.filter(organization=organization).order_by("name")[0]


# --- reading ----------------------------------------------------------------------------


def test_the_list_has_the_organisations_rules_only(owner, clinic):
    _clinic("Other clinic")
    response = owner.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [r["name"] for r in body["data"]] == sorted(r[0] for r in DEFAULT_RULES)
    first = body["data"][0]
    assert set(first) == {
        "id",
        "name",
        "category",
        "pattern",
        "scope",
        "action",
        "enabled",
        "created_at",
    }
    assert first["id"] == _a_rule(clinic).pk


def test_one_rule_by_id(owner, clinic):
    rule = _a_rule(clinic)
    response = owner.get(f"{URL}/{rule.pk}")
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["pattern"]) == (rule.name, rule.pattern)


@pytest.mark.parametrize("rule_id", ["abc", "0", "99999999", "9" * 30, "-1", "%00", "1.5"])
def test_an_unknown_or_malformed_id_is_404(owner, rule_id):
    response = owner.get(f"{URL}/{rule_id}")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_another_organisations_rule_is_404_for_every_method(owner):
    other, _ = _clinic("Other clinic")
    theirs = _a_rule(other)
    url = f"{URL}/{theirs.pk}"
    assert owner.get(url).status_code == 404
    assert owner.patch(url, {"enabled": False}, format="json").status_code == 404
    assert owner.delete(url).status_code == 404
    theirs.refresh_from_db()
    assert theirs.enabled is True


# --- writing ----------------------------------------------------------------------------


def test_create_then_change_then_delete(owner, clinic):
    created = owner.post(URL, {**RULE, "scope": "request", "action": "block"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["scope"], body["action"], body["enabled"]) == ("request", "block", True)
    url = f"{URL}/{body['id']}"

    changed = owner.patch(url, {"pattern": r"\boxy\w*", "enabled": False}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["pattern"], changed.json()["enabled"]) == (r"\boxy\w*", False)
    assert changed.json()["name"] == "Opioids"  # untouched

    assert owner.delete(url).status_code == 204
    assert owner.get(url).status_code == 404
    actions = list(
        AuditEvent.objects.filter(organization=clinic, action__startswith="high_risk_rule.")
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions == ["high_risk_rule.created", "high_risk_rule.updated", "high_risk_rule.deleted"]


def test_defaults_apply_when_scope_action_and_enabled_are_left_out(owner):
    body = owner.post(URL, RULE, format="json").json()
    assert (body["scope"], body["action"], body["enabled"]) == ("both", "flag", True)


def test_an_empty_patch_changes_nothing(owner, clinic):
    rule = _a_rule(clinic)
    response = owner.patch(f"{URL}/{rule.pk}", {}, format="json")
    assert response.status_code == 200
    assert response.json()["pattern"] == rule.pattern
    assert not AuditEvent.objects.filter(action="high_risk_rule.updated").exists()


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        ({}, "missing_parameter", "name"),
        ({"category": "dosage", "pattern": "x"}, "missing_parameter", "name"),
        ({**RULE, "name": ""}, "missing_parameter", "name"),
        ({**RULE, "name": "n" * 81}, "invalid_parameter", "name"),
        ({**RULE, "name": "a\x00b"}, "invalid_parameter", "name"),
        ({**RULE, "name": ["list"]}, "invalid_parameter", "name"),
        ({**RULE, "name": {"deep": {"er": 1}}}, "invalid_parameter", "name"),
        ({"name": "n", "pattern": "x"}, "missing_parameter", "category"),
        ({**RULE, "category": "surgery"}, "invalid_parameter", "category"),
        ({**RULE, "category": 3}, "invalid_parameter", "category"),
        ({"name": "n", "category": "other"}, "missing_parameter", "pattern"),
        ({**RULE, "pattern": ""}, "missing_parameter", "pattern"),
        ({**RULE, "pattern": "(unclosed"}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": "(?=look)ahead"}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": "a||b"}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": ".*"}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": "x" * (MAX_PATTERN_CHARS + 1)}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": "x\x00"}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": ["x"]}, "invalid_parameter", "pattern"),
        ({**RULE, "pattern": True}, "invalid_parameter", "pattern"),
        ({**RULE, "scope": "everything"}, "invalid_parameter", "scope"),
        ({**RULE, "action": "delete"}, "invalid_parameter", "action"),
        ({**RULE, "enabled": "perhaps"}, "invalid_parameter", "enabled"),
        ({**RULE, "enabled": None}, "missing_parameter", "enabled"),
    ],
)
def test_bad_input_is_400_naming_the_field(owner, payload, code, param):
    response = owner.post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    error = _error(response)
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error"


def test_the_pattern_error_says_what_is_wrong(owner):
    error = _error(owner.post(URL, {**RULE, "pattern": "(a"}, format="json"))
    assert error["message"] == (
        "pattern: The pattern is not a valid RE2 regular expression (missing ): (a)."
    )


@pytest.mark.parametrize(
    "body", ["[1, 2]", '"text"', "null", "{", "[" * 10_000, '{"name": "\\ud800"}']
)
def test_a_body_that_is_not_a_rule_is_400(owner, body):
    response = owner.post(URL, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "error" in response.json()


@pytest.mark.parametrize(
    "raw", [b'{"name": "\xff\xfe", "category": "other", "pattern": "x"}', b"\x00" * 64]
)
def test_a_body_that_is_not_utf8_json_is_400(owner, raw):
    response = owner.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()
    assert not HighRiskRule.objects.filter(pattern="x").exists()


def test_a_huge_body_is_refused_without_a_500(owner):
    response = owner.post(URL, {**RULE, "pattern": "x" * 3_000_000}, format="json")
    assert response.status_code in {400, 413}
    assert "error" in response.json()


def test_patch_validates_too(owner, clinic):
    rule = _a_rule(clinic)
    for payload, param in [
        ({"pattern": "(a"}, "pattern"),
        ({"name": ""}, "name"),
        ({"name": DEFAULT_RULES[5][0] if rule.name != DEFAULT_RULES[5][0] else "x"}, "name"),
        ({"scope": 1}, "scope"),
    ]:
        response = owner.patch(f"{URL}/{rule.pk}", payload, format="json")
        assert response.status_code == 400, payload
        assert _error(response)["param"] == param
    rule.refresh_from_db()
    assert rule == _a_rule(clinic) and rule.enabled


def test_names_are_unique_in_the_organisation(owner):
    assert owner.post(URL, RULE, format="json").status_code == 201
    again = owner.post(URL, {**RULE, "pattern": "other"}, format="json")
    assert again.status_code == 400
    assert _error(again)["param"] == "name"
    assert "already exists" in _error(again)["message"]


def test_the_same_name_in_another_organisation_is_fine(owner):
    _, other_owner = _clinic("Other clinic")
    assert owner.post(URL, RULE, format="json").status_code == 201
    assert _csrf_client(other_owner).post(URL, RULE, format="json").status_code == 201


def test_a_put_is_405(owner, clinic):
    response = owner.put(f"{URL}/{_a_rule(clinic).pk}", RULE, format="json")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


# --- who may ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_write(clinic, role):
    client = _member(clinic, role)
    created = client.post(URL, RULE, format="json")
    assert created.status_code == 201
    changed = client.patch(f"{URL}/{created.json()['id']}", {"enabled": False}, format="json")
    assert changed.status_code == 200
    assert client.delete(f"{URL}/{created.json()['id']}").status_code == 204


def test_members_read_but_do_not_write(clinic):
    client = _member(clinic, Role.MEMBER)
    rule = _a_rule(clinic)
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{rule.pk}").status_code == 200
    for response in (
        client.post(URL, RULE, format="json"),
        client.patch(f"{URL}/{rule.pk}", {"enabled": False}, format="json"),
        client.delete(f"{URL}/{rule.pk}"),
    ):
        assert response.status_code == 403
        assert _error(response)["code"] == "permission_denied"
    rule.refresh_from_db()
    assert rule.enabled and not HighRiskRule.objects.filter(name="Opioids").exists()


def test_an_api_key_of_the_organisation_reads_and_writes(clinic_key, clinic):
    assert clinic_key.get(URL).status_code == 200
    created = clinic_key.post(URL, RULE, format="json")
    assert created.status_code == 201
    event = AuditEvent.objects.get(action="high_risk_rule.created")
    assert event.actor is None and event.actor_label.startswith("api_key:")


def test_session_writes_need_the_csrf_token(clinic):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(Membership.objects.get(organization=clinic).user)
    refused = client.post(URL, RULE, format="json")
    assert refused.status_code == 403
    assert _error(refused)["code"] == "csrf_failed"
    assert not HighRiskRule.objects.filter(name="Opioids").exists()


def test_without_credentials_it_is_401():
    response = APIClient().get(URL)
    assert response.status_code == 401


def test_a_session_picks_its_clinic_and_not_a_stranger(owner, clinic):
    stranger, _ = _clinic("Stranger")
    assert owner.get(URL, HTTP_X_AQTA_ORGANIZATION=str(clinic.pk)).status_code == 200
    refused = owner.get(URL, HTTP_X_AQTA_ORGANIZATION=str(stranger.pk))
    assert refused.status_code == 404


# --- the tier ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["free", "starter", "pro"])
def test_other_tiers_get_403_naming_the_healthcare_tier(slug):
    user: User = UserFactory.create()
    organization_create(name="Shop", owner=user, tier=tier_get(slug=slug))
    client = _csrf_client(user)
    for response in (
        client.get(URL),
        client.post(URL, RULE, format="json"),
        client.get(f"{URL}/1"),
    ):
        assert response.status_code == 403
        error = _error(response)
        assert error["code"] == "tier_feature_unavailable"
        assert "Healthcare tier" in error["message"]


def test_leaving_the_healthcare_tier_closes_the_api(owner, clinic):
    organization_change_tier(organization=clinic, tier=tier_get(slug="pro"))
    assert owner.get(URL).status_code == 403
    assert HighRiskRule.objects.filter(organization=clinic).exists()  # kept for a way back


def test_the_enterprise_tier_has_it_too():
    user: User = UserFactory.create()
    organization_create(name="Big", owner=user, tier=tier_get(slug="enterprise"))
    assert _csrf_client(user).get(URL).status_code == 200
