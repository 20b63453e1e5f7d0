"""What goes into the audit trail beyond sign-in and keys: account security, OAuth links,
exports, reports, verifications and every change an operator makes in the admin."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.models import ApiKey, Organization
from accounts.services import api_key_create
from accounts.tests.factories import PASSWORD, UserFactory
from billing.models import ModelAlias
from billing.selectors import tier_get
from compliance.models import AuditEvent
from compliance.records import (
    audit_export_record,
    audit_report_record,
    audit_verification_record,
)
from compliance.services import audit_chain_verify
from tests.oidc_provider import OIDCProvider

pytestmark = pytest.mark.django_db


def events(action: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("sequence"))


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


# --- account security ------------------------------------------------------------------------


def test_a_password_change_is_recorded(user):
    client = Client()
    client.force_login(user)
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": "A-new-Passw0rd!x", "password2": "A-new-Passw0rd!x"},
    )
    assert response.status_code == 302
    [event] = events("auth.password_changed", actor=user)
    assert event.ip == "127.0.0.1"


def test_oauth_link_is_recorded(user, settings):
    with OIDCProvider("aqta-link", "secret") as idp:
        idp.add_user("g-user", user.email, name="Linked")
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "google",
                        "name": "Google",
                        "client_id": "aqta-link",
                        "secret": "secret",
                        "settings": {"server_url": idp.issuer},
                    }
                ]
            }
        }
        client = Client()
        client.force_login(user)
        start = client.post("/accounts/oidc/google/login/", {"process": "connect"})
        assert start.status_code == 302, start.content
        authorize = httpx.get(start["Location"], follow_redirects=False)
        location = urlsplit(authorize.headers["location"])
        assert "code" in parse_qs(location.query)
        client.get(f"{location.path}?{location.query}")

    [event] = events("auth.oauth_linked", actor=user)
    assert event.target == "google" and event.data == {"provider": "google"}


# --- exports, reports, verifications ---------------------------------------------------------


def test_an_analytics_csv_export_is_recorded_and_a_json_read_is_not(key_client, api_key, org):
    key_client.get("/api/analytics/requests", {"model": "gpt-4o-mini"})
    assert events("data.exported") == []

    response = key_client.get("/api/analytics/requests", {"model": "gpt-4o-mini", "format": "csv"})
    costs = key_client.get("/api/analytics/costs", {"format": "csv", "group_by": "model"})

    assert response.status_code == costs.status_code == 200
    first, second = events("data.exported", organization=org)
    assert first.target == "analytics.requests"
    assert first.actor is None and first.actor_label == f"api_key:{api_key[0].masked}"
    assert first.data == {
        "kind": "analytics.requests",
        "params": {"model": "gpt-4o-mini", "format": "csv"},
        "rows": 0,
    }
    assert second.data["params"] == {"group_by": "model", "format": "csv"}


def test_the_helpers_record_who_and_cut_hostile_parameters(user, org):
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.9", HTTP_USER_AGENT="auditor")
    request.user = user
    params = {f"p{n}": "x\x00" * 500 for n in range(30)}

    export = audit_export_record(request, "receipts", params, organization=org, rows=3)
    report = audit_report_record(request, "monthly", {"month": "2026-11"}, organization=org)
    verified = audit_verification_record(
        request, "receipt", "42", valid=False, reason="bad signature", organization=org
    )

    assert (export.action, export.actor, export.ip, export.user_agent) == (
        "data.exported",
        user,
        "192.0.2.9",
        "auditor",
    )
    assert len(export.data["params"]) == 20
    assert all(len(v) == 200 and "\x00" not in v for v in export.data["params"].values())
    assert report.action == "report.generated" and report.target == "monthly"
    assert verified.action == "receipt.verified"
    assert verified.data == {"valid": False, "reason": "bad signature"}
    assert audit_chain_verify(scope=str(org.pk)) is None


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def operator(db, settings):
    settings.AQTA_STAFF_REQUIRE_MFA = False
    return UserFactory.create(email="ops@aqta.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_an_object_added_in_the_admin_is_recorded(admin_client, operator):
    from billing.models import LanguageModel

    model = LanguageModel.objects.get(model_id="gpt-4o-mini")
    response = admin_client.post(_url(ModelAlias, "add"), {"alias": "mini", "model": model.pk})

    assert response.status_code == 302
    alias = ModelAlias.objects.get(alias="mini")
    [event] = events("admin.added")
    assert (event.actor, event.organization, event.chain.scope) == (operator, None, "global")
    assert event.target == f"billing.modelalias:{alias.pk}"
    assert event.data["model"] == "billing.modelalias"
    assert event.data["changes"] == [{"added": {}}]
    assert event.ip == "127.0.0.1"


def test_an_organisation_changed_in_the_admin_is_recorded_in_its_chain(admin_client, operator, org):
    from tests.test_admin_operations import _change_form_data

    url = _url(Organization, "change", org.pk)
    data = {**_change_form_data(admin_client.get(url)), "name": "Renamed"}

    assert admin_client.post(url, data).status_code == 302

    [event] = events("admin.changed")
    assert event.organization == org and event.chain.scope == str(org.pk)
    assert event.data["changes"] == [{"changed": {"fields": ["Name"]}}]
    # The domain event of the change is recorded by the admin's own save, once.
    assert len(events("organization.updated", organization=org)) == 1


def test_objects_deleted_in_the_admin_are_recorded_before_they_go(admin_client, operator, org):
    keys = [api_key_create(organization=org, created_by=None, name=f"k{n}")[0] for n in range(3)]
    response = admin_client.post(
        _url(ApiKey, "changelist"),
        {"action": "delete_selected", "_selected_action": [k.pk for k in keys], "post": "yes"},
    )

    assert response.status_code == 302
    assert not ApiKey.objects.filter(pk__in=[k.pk for k in keys]).exists()
    [event] = events("admin.deleted")
    assert event.organization == org and event.data["count"] == 3
    assert sorted(pk for pk, _ in event.data["objects"]) == sorted(str(k.pk) for k in keys)


def test_deleting_an_organisation_in_the_admin_keeps_its_chain(admin_client, db):
    from accounts.services import organization_create

    doomed = organization_create(
        name="Doomed", owner=UserFactory.create(), tier=tier_get(slug="free")
    )
    scope = str(doomed.pk)
    response = admin_client.post(_url(Organization, "delete", doomed.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Organization.objects.filter(pk=scope).exists()
    [event] = events("admin.deleted")
    assert event.chain.scope == scope and event.organization is None  # detached
    assert audit_chain_verify(scope=scope) is None
