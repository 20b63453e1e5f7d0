"""The operators' admin for high-risk rules: it renders, checks and audits like the API."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Organization, User
from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditEvent
from healthcare.highrisk_defaults import DEFAULT_RULES
from healthcare.models import HighRiskRule
from healthcare.rules import MAX_RULES_PER_ORGANIZATION

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:healthcare_highriskrule_changelist")
ADD = reverse("admin:healthcare_highriskrule_add")


def change_url(rule: HighRiskRule) -> str:
    return reverse("admin:healthcare_highriskrule_change", args=[rule.pk])


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.AQTA_STAFF_REQUIRE_MFA = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser() -> User:
    user: User = UserFactory.create(email="ops@aqta.test", is_staff=True, is_superuser=True)
    return user


@pytest.fixture
def admin_client(client: Client, superuser) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def clinic() -> Organization:
    owner: User = UserFactory.create()
    return organization_create(name="Clinic", owner=owner, tier=tier_get(slug="healthcare"))


def _a_rule(organization: Organization) -> HighRiskRule:
    return HighRiskRule.objects.filter(organization=organization).order_by("name")[0]


def _form(organization: Organization, **overrides) -> dict:
    data = {
        "organization": str(organization.pk),
        "name": "Opioids",
        "category": "dosage",
        "pattern": "oxycodone|fentanyl",
        "scope": "both",
        "action": "block",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_the_pages_render(admin_client, clinic):
    listing = admin_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == len(DEFAULT_RULES)
    assert admin_client.get(CHANGELIST, {"q": "chest"}).status_code == 200
    assert admin_client.get(CHANGELIST, {"action__exact": "block"}).status_code == 200
    assert admin_client.get(ADD).status_code == 200
    assert admin_client.get(change_url(_a_rule(clinic))).status_code == 200


def test_adding_goes_through_the_service(admin_client, superuser, clinic):
    response = admin_client.post(ADD, _form(clinic))
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = HighRiskRule.objects.get(organization=clinic, name="Opioids")
    assert (rule.action, rule.enabled) == ("block", True)
    event = AuditEvent.objects.get(action="high_risk_rule.created")
    assert (event.actor, event.target) == (superuser, str(rule.pk))


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"pattern": "(unclosed"}, "pattern", "not a valid RE2 regular expression"),
        ({"pattern": "a*"}, "pattern", "matches empty text"),
        ({"pattern": "a||b"}, "pattern", "empty term"),
        ({"name": DEFAULT_RULES[0][0]}, "__all__", "already exists"),
        ({"category": "surgery"}, "category", "Select a valid choice"),
    ],
)
def test_a_bad_rule_is_shown_on_the_form(admin_client, clinic, overrides, field, message):
    response = admin_client.post(ADD, _form(clinic, **overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert not AuditEvent.objects.filter(action="high_risk_rule.created").exists()


def test_the_rule_count_is_limited_on_the_form_too(admin_client, clinic):
    HighRiskRule.objects.bulk_create(
        HighRiskRule(organization=clinic, name=f"r{i}", category="other", pattern="x")
        for i in range(MAX_RULES_PER_ORGANIZATION - len(DEFAULT_RULES))
    )
    response = admin_client.post(ADD, _form(clinic))
    assert response.status_code == 200
    assert "at most" in " ".join(response.context["adminform"].form.errors["__all__"])


def test_changing_is_audited_and_keeps_the_organisation(admin_client, superuser, clinic):
    rule = _a_rule(clinic)
    category_before = rule.category
    assert (category_before, rule.scope, rule.action) != ("dosage", "both", "block")
    other = organization_create(
        name="Other", owner=UserFactory.create(), tier=tier_get(slug="healthcare")
    )
    data = _form(other, name=rule.name, pattern=rule.pattern)  # the organisation: read-only
    data.pop("enabled")  # unticked
    response = admin_client.post(change_url(rule), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert (rule.organization, rule.enabled, rule.action) == (clinic, False, "block")
    event = AuditEvent.objects.get(action="high_risk_rule.updated")
    assert event.actor == superuser
    assert event.data["changes"] == {
        "action": {"from": "flag", "to": "block"},
        "category": {"from": category_before, "to": "dosage"},
        "enabled": {"from": True, "to": False},
    }


def test_deleting_one_and_many_is_audited(admin_client, clinic):
    rule = _a_rule(clinic)
    delete_url = reverse("admin:healthcare_highriskrule_delete", args=[rule.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not HighRiskRule.objects.filter(pk=rule.pk).exists()

    rest = list(HighRiskRule.objects.filter(organization=clinic).values_list("pk", flat=True))
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": rest[:3], "post": "yes"}
    )
    assert response.status_code == 302
    assert HighRiskRule.objects.filter(organization=clinic).count() == len(DEFAULT_RULES) - 4
    assert AuditEvent.objects.filter(action="high_risk_rule.deleted").count() == 4


def test_enable_and_disable_actions(admin_client, clinic):
    ids = list(HighRiskRule.objects.filter(organization=clinic).values_list("pk", flat=True))
    admin_client.post(CHANGELIST, {"action": "disable_rules", "_selected_action": ids[:2]})
    assert HighRiskRule.objects.filter(organization=clinic, enabled=False).count() == 2
    admin_client.post(CHANGELIST, {"action": "enable_rules", "_selected_action": ids})
    assert not HighRiskRule.objects.filter(organization=clinic, enabled=False).exists()
    assert AuditEvent.objects.filter(action="high_risk_rule.updated").count() == 4
