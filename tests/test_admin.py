"""The operators' Django admin: every page renders, keys stay secret, writes are audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, Organization
from accounts.selectors import api_key_get_by_secret
from accounts.services import api_key_create, api_key_revoke
from accounts.tests.factories import PASSWORD, UserFactory
from billing.models import Tier
from compliance.checkpoints import checkpoint_run
from compliance.models import AuditEvent
from gateway.tests.dead_letter_data import dead_letter

# Our own apps: each of their admin pages must be exercised on a real object.
OUR_APPS = {"accounts", "billing", "compliance", "gateway"}
REGISTERED = list(admin.site._registry)


def _url(model: type[Model], view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _change_form_data(response) -> dict:
    """The POST body a browser would send back for a rendered admin change form."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    data: dict = {}
    for form in forms:
        for field in form:
            value = field.value()
            if value is None or value is False:
                continue
            data[field.html_name] = "on" if value is True else value
    return data


@pytest.fixture(autouse=True)
def _staff_mfa_off(settings):
    # On by default outside the embedded mode; only the MFA test turns it back on.
    settings.AQTA_STAFF_REQUIRE_MFA = False


@pytest.fixture
def superuser(db):
    return UserFactory(email="ops@aqta.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client: Client, superuser) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def every_model(org, user, api_key, superuser) -> None:
    """At least one object of every registered model (the billing rows come seeded)."""
    # A revoked key beside the live one, so both sides of the "revoked" filter have rows.
    revoked, _ = api_key_create(organization=org, created_by=user, name="old")
    api_key_revoke(api_key=revoked, revoked_by=superuser)
    Group.objects.create(name="Support")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    app = SocialApp.objects.create(provider="openid_connect", provider_id="google", name="Google")
    account = SocialAccount.objects.create(user=user, provider="google", uid="1234")
    SocialToken.objects.create(app=app, account=account, token="tok")
    _gateway_objects(org, api_key[0])
    _compliance_jobs(org)
    checkpoint_run()  # the signed checkpoints of the audit chains


def _compliance_jobs(org) -> None:
    from datetime import date

    from compliance.bias.probes import DEFAULT_PROBE_SET
    from compliance.models import BiasRun, ComplianceReport, ProbeCall, ProbeSet

    ProbeSet.objects.create(organization=org, name="ours", definition=DEFAULT_PROBE_SET)
    run = BiasRun.objects.create(
        organization=org, method="probe", model="gpt-4o-mini", probe_set_name="default",
        definition=DEFAULT_PROBE_SET, key_secret_encrypted="never-shown",
    )  # fmt: skip
    ProbeCall.objects.create(
        run=run, index=0, case_id="c", attribute="sex", group="female", repetition=0
    )
    ComplianceReport.objects.create(
        organization=org,
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        format="pdf",
    )


def _gateway_objects(org, key) -> None:
    from django.utils import timezone

    from billing.models import LanguageModel, ModelAlias
    from gateway import crypto
    from gateway.models import (
        GatewayEvent,
        ModelDeployment,
        ProviderEndpoint,
        Trace,
        UsageCounter,
    )

    mini = LanguageModel.objects.get(model_id="gpt-4o-mini")
    ModelAlias.objects.create(alias="mini", model=mini)
    endpoint = ProviderEndpoint.objects.create(
        name="vllm",
        provider="openai_compatible",
        base_url="http://vllm.internal:8000/v1",
        api_key_encrypted=crypto.encrypt("endpoint-secret"),
    )
    ModelDeployment.objects.create(
        name="mini-vllm", model=mini, endpoint=endpoint, upstream_model_id="llama3"
    )
    trace = Trace.objects.create(
        created_at=timezone.now(),
        organization=org,
        api_key=key,
        model="gpt-4o-mini",
        provider="openai",
        status="passed",
        http_status=200,
    )
    UsageCounter.objects.create(organization=org, api_key=key, month=timezone.now().date())
    GatewayEvent.objects.create(
        organization=org, kind="loop_detected", trace=trace, created_at=timezone.now()
    )
    dead_letter(org, key, latency_ms="slow")


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_admin_page_renders_for_a_superuser(admin_client, every_model, model):
    model_admin = admin.site._registry[model]

    changelist = admin_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    assert "cl" in changelist.context

    obj = model._default_manager.order_by("pk").first()
    if model._meta.app_label in OUR_APPS:
        assert obj is not None, f"no {model._meta.label} to show"
    if obj is not None:
        assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200
    if model_admin.has_add_permission(changelist.wsgi_request):
        assert admin_client.get(_url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_changelist_search_and_filter_renders(admin_client, every_model, model):
    url = _url(model, "changelist")
    changelist = admin_client.get(url)
    if changelist.context["cl"].search_fields:
        searched = admin_client.get(url, {"q": "acme"})
        assert searched.status_code == 200
        assert "cl" in searched.context

    # A filter the admin cannot apply redirects to ?e=1 instead of answering 200.
    for spec in changelist.context["cl"].filter_specs:
        for choice in spec.choices(changelist.context["cl"]):
            filtered = admin_client.get(url + choice["query_string"])
            assert filtered.status_code == 200, choice["query_string"]
            assert "cl" in filtered.context


def test_it_finds_an_organisation_by_a_members_email(admin_client, org, user):
    response = admin_client.get(_url(Organization, "changelist"), {"q": user.email})

    assert list(response.context["cl"].result_list) == [org]


def test_it_finds_a_key_by_its_last_four_characters(admin_client, api_key):
    key, _ = api_key
    response = admin_client.get(_url(ApiKey, "changelist"), {"q": key.last4})

    assert key in response.context["cl"].result_list


def test_it_never_shows_the_key_secret_or_digest(admin_client, api_key):
    key, secret = api_key

    for url in (_url(ApiKey, "changelist"), _url(ApiKey, "change", key.pk)):
        html = admin_client.get(url).content.decode()
        assert key.prefix in html and key.last4 in html  # the key is on the page...
        assert secret not in html  # ...but never its secret
        assert key.digest not in html


def test_it_refuses_to_add_a_key_from_the_admin(admin_client, org):
    assert admin_client.get(_url(ApiKey, "add")).status_code == 403
    assert admin_client.post(_url(ApiKey, "add"), {"name": "x"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_the_revoke_action_revokes_the_selected_keys_and_audits_it(
    admin_client, superuser, api_key
):
    key, secret = api_key

    response = admin_client.post(
        _url(ApiKey, "changelist"), {"action": "revoke_keys", "_selected_action": [str(key.pk)]}
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key.revoked_by == superuser
    assert api_key_get_by_secret(secret=secret) is None
    event = AuditEvent.objects.get(action="api_key.revoked", target=str(key.pk))
    assert event.actor == superuser


def test_the_revoke_action_leaves_already_revoked_keys_alone(admin_client, superuser, api_key):
    key, _ = api_key
    revoked_at = api_key_revoke(api_key=key, actor_label="earlier").revoked_at

    admin_client.post(
        _url(ApiKey, "changelist"), {"action": "revoke_keys", "_selected_action": [str(key.pk)]}
    )

    key.refresh_from_db()
    assert key.revoked_at == revoked_at
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_it_offers_a_change_tier_action_for_every_tier(admin_client, org):
    response = admin_client.get(_url(Organization, "changelist"))

    offered = {name for name, _ in response.context["action_form"].fields["action"].choices}
    assert {f"move_to_{slug}" for slug in Tier.objects.values_list("slug", flat=True)} <= offered


def test_the_change_tier_action_moves_the_organisation_and_audits_it(admin_client, superuser, org):
    response = admin_client.post(
        _url(Organization, "changelist"),
        {"action": "move_to_starter", "_selected_action": [str(org.pk)]},
    )

    assert response.status_code == 302
    org.refresh_from_db()
    assert org.tier.slug == "starter"
    event = AuditEvent.objects.get(action="organization.tier_changed", target=str(org.pk))
    assert event.actor == superuser
    assert event.data == {"from": "pro", "to": "starter"}


def test_changing_the_tier_on_the_change_form_is_audited(admin_client, superuser, org):
    url = _url(Organization, "change", org.pk)
    data = _change_form_data(admin_client.get(url))
    data.update(tier=Tier.objects.get(slug="healthcare").pk, monthly_budget_eur="250.00")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    org.refresh_from_db()
    assert org.tier.slug == "healthcare"
    assert org.monthly_budget_eur == Decimal("250.00")  # the rest of the form is saved too
    event = AuditEvent.objects.get(action="organization.tier_changed", target=str(org.pk))
    assert event.actor == superuser
    assert event.data == {"from": "pro", "to": "healthcare"}


def test_saving_the_change_form_without_a_tier_change_records_no_tier_event(admin_client, org):
    url = _url(Organization, "change", org.pk)
    data = _change_form_data(admin_client.get(url))
    data["name"] = "Acme Renamed"

    assert admin_client.post(url, data).status_code == 302

    org.refresh_from_db()
    assert org.name == "Acme Renamed"
    assert not AuditEvent.objects.filter(action="organization.tier_changed").exists()


def test_audit_events_are_read_only(admin_client, org):
    event = AuditEvent.objects.get(action="organization.created", organization=org)
    url = _url(AuditEvent, "change", event.pk)

    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(url, {"action": "tampered"}).status_code == 403
    assert admin_client.get(_url(AuditEvent, "add")).status_code == 403

    event.refresh_from_db()
    assert event.action == "organization.created"


def test_audit_events_cannot_be_deleted(admin_client, org):
    event = AuditEvent.objects.get(action="organization.created", organization=org)

    assert admin_client.get(_url(AuditEvent, "delete", event.pk)).status_code == 403
    assert (
        admin_client.post(_url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    )
    changelist = admin_client.get(_url(AuditEvent, "changelist"))
    assert changelist.context["action_form"] is None  # not even "Delete selected"
    admin_client.post(
        _url(AuditEvent, "changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


# --- Trace dead letters ------------------------------------------------------------------------


def test_dead_letters_are_read_only_and_show_the_record_escaped(admin_client, org, api_key):
    from gateway.models import TraceDeadLetter

    letter = dead_letter(org, api_key[0], model="<script>alert(1)</script>")
    url = _url(TraceDeadLetter, "change", letter.pk)

    page = admin_client.get(url).content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "expected a number but got" in page
    assert 'name="_save"' not in page
    assert admin_client.post(url, {"error": "edited"}).status_code == 403
    assert admin_client.get(_url(TraceDeadLetter, "add")).status_code == 403


def test_replaying_dead_letters_stores_what_now_fits_and_audits_it(
    admin_client, superuser, org, api_key
):
    from gateway.models import Trace, TraceDeadLetter, UsageCounter

    fixed = dead_letter(org, api_key[0])  # whatever failed it is gone by now
    broken = dead_letter(org, api_key[0], latency_ms="slow")

    response = admin_client.post(
        _url(TraceDeadLetter, "changelist"),
        {"action": "replay", "_selected_action": [fixed.pk, broken.pk]},
        follow=True,
    )

    assert "Stored 1 dead letter(s); 1 still failing" in response.content.decode()
    assert Trace.objects.filter(id=fixed.trace_id).exists()
    assert UsageCounter.objects.get(organization=org).requests == 1
    assert list(TraceDeadLetter.objects.values_list("pk", "attempts")) == [(broken.pk, 2)]
    event = AuditEvent.objects.get(action="trace_dead_letters.replayed")
    assert event.actor == superuser
    assert event.data["stored"] == 1 and event.data["still_failing"] == 1


def test_deleting_dead_letters_discards_them_and_audits_it(admin_client, superuser, org, api_key):
    from gateway.models import TraceDeadLetter

    letters = [dead_letter(org, api_key[0]) for _ in range(2)]

    admin_client.post(
        _url(TraceDeadLetter, "changelist"),
        {"action": "delete_selected", "_selected_action": [x.pk for x in letters], "post": "yes"},
    )

    assert not TraceDeadLetter.objects.exists()
    event = AuditEvent.objects.get(action="trace_dead_letters.discarded")
    assert event.actor == superuser and event.data["discarded"] == 2
    assert set(event.data["trace_ids"]) == {x.trace_id for x in letters}


def test_anonymous_visitors_are_sent_to_the_allauth_login(client, db):
    response = client.get("/admin/", follow=True)

    assert response.redirect_chain[-1] == ("/accounts/login/?next=%2Fadmin%2F", 302)
    assert response.status_code == 200


def test_the_admin_login_form_cannot_bypass_allauth(client, superuser):
    response = client.post(
        "/admin/login/?next=/admin/", {"username": superuser.email, "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=")
    assert "_auth_user_id" not in client.session


def test_staff_without_totp_are_sent_to_enrol_it_when_mfa_is_required(client, settings, superuser):
    settings.AQTA_STAFF_REQUIRE_MFA = True
    client.force_login(superuser)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url == reverse("mfa_activate_totp") + "?next=/admin/"


def test_staff_with_totp_reach_the_admin_when_mfa_is_required(client, settings, superuser):
    settings.AQTA_STAFF_REQUIRE_MFA = True
    Authenticator.objects.create(user=superuser, type=Authenticator.Type.TOTP, data={"secret": "x"})
    client.force_login(superuser)

    assert client.get("/admin/").status_code == 200


def test_provider_credentials_are_never_shown(admin_client, every_model):
    from gateway.models import ProviderEndpoint

    endpoint = ProviderEndpoint.objects.get(name="vllm")
    page = admin_client.get(f"/admin/gateway/providerendpoint/{endpoint.pk}/change/")

    assert page.status_code == 200
    assert "endpoint-secret" not in page.content.decode()
    assert endpoint.api_key_encrypted not in page.content.decode()


def test_a_bias_runs_key_secret_is_never_shown(admin_client, every_model):
    from compliance.models import BiasRun

    run = BiasRun.objects.get()
    page = admin_client.get(f"/admin/compliance/biasrun/{run.pk}/change/")
    assert page.status_code == 200
    assert b"never-shown" not in page.content and b"key_secret" not in page.content
