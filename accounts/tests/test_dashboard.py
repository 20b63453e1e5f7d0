from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts import views
from accounts.api.base import SESSION_ORGANIZATION
from accounts.models import ApiKey, Membership, Organization, Role
from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditEvent
from gateway import crypto
from gateway.analytics import rollups
from gateway.models import Trace, TraceContent
from tests.oidc_provider import OIDCProvider

pytestmark = pytest.mark.django_db

PAGES = ["overview", "usage", "keys", "traces", "settings", "members"]


@pytest.fixture
def client(user, org) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member(org):
    """A plain member of ``org``, signed in."""
    person = UserFactory.create()
    Membership.objects.create(organization=org, user=person, role=Role.MEMBER)
    client = Client()
    client.force_login(person)
    return person, client


@pytest.fixture
def other_org():
    stranger = UserFactory.create()
    return organization_create(name="Other Ltd", owner=stranger, tier=tier_get(slug="pro"))


def _trace(org, api_key=None, **fields) -> Trace:
    values = {
        "created_at": timezone.now() - timedelta(minutes=5),
        "organization": org,
        "api_key": api_key,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "status": "passed",
        "http_status": 200,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cost_eur": Decimal("0.00123400"),
        "latency_ms": 180,
    }
    values.update(fields)
    return Trace.objects.create(**values)


def _text(response) -> str:
    text: str = response.content.decode()
    return text


def _testid(response, name: str) -> bool:
    return f'data-testid="{name}"' in _text(response)


# --- every page --------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_for_an_owner(client, org, name):
    response = client.get(reverse(f"dashboard:{name}"))
    assert response.status_code == 200
    assert org.name in _text(response)
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("name", PAGES)
def test_each_page_needs_a_signed_in_user(name):
    response = Client().get(reverse(f"dashboard:{name}"))
    assert response.status_code == 302
    assert response["Location"].startswith(settings.LOGIN_URL)


def test_signed_in_users_see_a_dashboard_link_in_the_header(client):
    assert _testid(client.get(reverse("dashboard:keys")), "nav-dashboard")


def test_the_home_page_sends_signed_in_users_to_the_dashboard(user):
    request = RequestFactory().get("/")
    request.user = user
    response = views.home(request)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:overview")


def test_the_home_page_still_greets_visitors(db):
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    response = views.home(request)
    assert response.status_code == 200 and b"Sign in" in response.content


def test_a_user_without_an_organisation_sees_why(db):
    client = Client()
    client.force_login(UserFactory.create())
    response = client.get(reverse("dashboard:keys"))
    assert response.status_code == 200
    assert _testid(response, "no-organization")


# --- empty states ------------------------------------------------------------------------


def test_a_new_organisation_shows_empty_states(client):
    assert _testid(client.get(reverse("dashboard:overview")), "overview-empty")
    assert _testid(client.get(reverse("dashboard:keys")), "keys-empty")
    assert _testid(client.get(reverse("dashboard:traces")), "traces-empty")
    usage = client.get(reverse("dashboard:usage"))
    assert _testid(usage, "usage-empty")
    assert 'id="usage-total-requests"' in _text(usage)
    assert _testid(client.get(reverse("dashboard:members")), "members-alone")


def test_filters_that_match_nothing_say_so(client, org):
    _trace(org)
    response = client.get(reverse("dashboard:traces"), {"status": "blocked"})
    assert _testid(response, "traces-empty-filtered")


# --- API keys ----------------------------------------------------------------------------


def test_creating_a_key_shows_its_secret_once(client, org):
    response = client.post(reverse("dashboard:keys"), {"name": "ci"})

    assert response.status_code == 200
    match = re.search(r'id="new-key-secret"[^>]*>(sk-aqta-[A-Za-z0-9]+)<', _text(response))
    assert match, "the secret is shown"
    secret = match.group(1)
    assert 'data-copy-target="new-key-secret"' in _text(response)
    assert "no-store" in response["Cache-Control"]
    api_key = ApiKey.objects.get(organization=org, name="ci")
    assert secret.endswith(api_key.last4)

    again = client.get(reverse("dashboard:keys"))
    assert secret not in _text(again)
    assert 'id="new-key-secret"' not in _text(again)
    assert api_key.masked in _text(again)
    assert secret not in str(dict(client.session.items()))
    assert all(secret not in morsel.value for morsel in client.cookies.values())


def test_expired_and_revoked_keys_are_labelled_and_cannot_be_revoked_again(client, org, user):
    expired, _ = api_key_create(organization=org, created_by=user, name="old")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    text = _text(client.get(reverse("dashboard:keys")))
    match = re.search(rf'<tr id="key-{expired.pk}".*?</tr>', text, re.S)
    assert match is not None
    row = match.group(0)
    assert 'data-key-status="expired"' in row and "Expired" in row
    client.post(reverse("dashboard:key-revoke", args=[expired.pk]))
    again = client.get(reverse("dashboard:key-revoke", args=[expired.pk]), follow=True)
    assert "was already revoked" in _text(again)


def test_the_key_form_shows_its_errors(client, org):
    response = client.post(reverse("dashboard:keys"), {"name": "", "rate_limit_per_minute": "0"})
    assert response.status_code == 200
    assert _testid(response, "form-errors")
    assert "This field is required." in _text(response)
    assert not ApiKey.objects.filter(organization=org).exists()


def test_tier_limits_on_a_key_come_back_as_form_errors(client, user):
    starter = organization_create(name="Small", owner=user, tier=tier_get(slug="starter"))
    client.post(reverse("dashboard:organization-switch"), {"organization_id": str(starter.pk)})
    response = client.post(reverse("dashboard:keys"), {"name": "x", "rate_limit_per_minute": 500})
    assert "custom rate limits need the Pro tier" in _text(response)
    assert not ApiKey.objects.filter(organization=starter).exists()


def test_revoking_asks_for_confirmation_first(client, api_key):
    key, _ = api_key
    url = reverse("dashboard:key-revoke", args=[key.pk])

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert _testid(confirm, "confirm-revoke")
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None

    done = client.post(url, follow=True)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoked" in _text(done)
    match = re.search(rf'<tr id="key-{key.pk}".*?</tr>', _text(done), re.S)
    assert match is not None
    row = match.group(0)
    assert 'data-key-status="revoked"' in row and "key-revoke" not in row


def test_the_key_list_links_each_active_key_to_its_revoke_step(client, api_key):
    response = client.get(reverse("dashboard:keys"))
    assert reverse("dashboard:key-revoke", args=[api_key[0].pk]) in _text(response)
    assert _testid(response, "key-revoke")


def test_another_organisations_key_is_not_found(client, other_org):
    theirs, _ = api_key_create(organization=other_org, created_by=None, name="theirs")
    url = reverse("dashboard:key-revoke", args=[theirs.pk])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_members_revoke_only_their_own_keys(member, api_key, org):
    person, client = member
    owners_key, _ = api_key
    response = client.post(reverse("dashboard:key-revoke", args=[owners_key.pk]))
    assert response.status_code == 403
    owners_key.refresh_from_db()
    assert owners_key.revoked_at is None

    mine, _ = api_key_create(organization=org, created_by=person, name="mine")
    client.post(reverse("dashboard:key-revoke", args=[mine.pk]))
    mine.refresh_from_db()
    assert mine.revoked_at is not None


# --- CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["keys", "settings", "members", "organization-switch"])
def test_forms_are_refused_without_a_csrf_token(user, org, name):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse(f"dashboard:{name}"), {"name": "sneaky"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_forms_work_with_the_csrf_token(user, org):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("dashboard:keys"))
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', _text(page))
    assert match is not None
    token = match.group(1)
    response = client.post(reverse("dashboard:keys"), {"name": "ok", "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    assert ApiKey.objects.filter(organization=org, name="ok").exists()


# --- usage -------------------------------------------------------------------------------


@pytest.fixture
def usage_data(org, api_key):
    _trace(org, api_key[0])
    _trace(org, api_key[0], model="gpt-4o", cost_eur=Decimal("0.5"))
    _trace(org, api_key[0], status="blocked", http_status=429, error_code="rate_limit_exceeded")
    rollups.rollups_refresh()


@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
def test_the_usage_page_charts_the_period_with_the_vendored_library(client, usage_data, period):
    response = client.get(reverse("dashboard:usage"), {"period": period})
    text = _text(response)
    assert response.status_code == 200
    assert re.search(r'id="usage-total-requests"[^>]*>3<', text)
    assert re.search(r'id="usage-total-cost"[^>]*>€0\.50<', text)
    assert '<script id="usage-data" type="application/json">' in text
    assert "/static/vendor/chart.umd.min.js" in text
    assert "/static/js/usage-charts.js" in text
    assert 'id="chart-cost-by-model"' in text
    assert "GPT-4o mini" in text  # the by-model table


def test_the_usage_page_shows_quota_budget_and_rate_limit(client, org, usage_data):
    org.monthly_budget_eur = Decimal("1.00")
    org.save()
    text = _text(client.get(reverse("dashboard:usage")))
    assert 'id="quota-status"' in text and "1,000,000" in text
    assert 'id="budget-status"' in text and "€1.00 budget" in text
    assert 'id="rate-limit-status"' in text


def test_without_a_beat_the_usage_page_shows_a_call_within_about_a_minute(
    client, org, api_key, settings
):
    # Tasks run eagerly (the embedded mode): no Celery beat refreshes the rollups.
    settings.CELERY_TASK_ALWAYS_EAGER = True

    def usage_page() -> str:
        return _text(client.get(reverse("dashboard:usage"), {"period": "24h"}))

    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert 'data-testid="usage-empty"' in usage_page()
        clock.shift(timedelta(seconds=1))
        _trace(org, api_key[0], created_at=timezone.now())  # the flusher stores a call
        clock.shift(timedelta(seconds=5))
        assert 'data-testid="usage-empty"' in usage_page()  # summarised at most once a minute
        clock.shift(timedelta(seconds=55))

        text = usage_page()

    assert 'data-testid="usage-empty"' not in text
    assert re.search(r'id="usage-total-requests"[^>]*>1<', text)


def test_the_usage_page_falls_back_to_the_default_period(client):
    response = client.get(reverse("dashboard:usage"), {"period": "forever"})
    assert response.status_code == 200
    assert 'id="period-7d" aria-current="page"' in _text(response)


@pytest.mark.parametrize("name", PAGES)
def test_no_page_loads_anything_from_another_site(client, usage_data, name):
    text = _text(client.get(reverse(f"dashboard:{name}")))
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', text)
    assert sources
    assert not [s for s in sources if s.startswith(("http", "//"))]


def test_the_vendored_chart_library_is_in_static_with_its_licence():
    vendor = settings.BASE_DIR / "static" / "vendor"
    assert (vendor / "chart.umd.min.js").read_text().startswith("/*!\n * Chart.js v4")
    assert "MIT License" in (vendor / "chart.js.LICENSE.md").read_text()


# --- traces ------------------------------------------------------------------------------


def test_traces_are_listed_filtered_and_paged(client, org, api_key):
    for _ in range(views.TRACES_PER_PAGE + 2):
        _trace(org, api_key[0])
    blocked = _trace(org, status="blocked", http_status=402, error_code="budget_exceeded")

    first = client.get(reverse("dashboard:traces"))
    assert _text(first).count('data-testid="trace-row"') == views.TRACES_PER_PAGE
    assert _testid(first, "pagination")
    second = client.get(reverse("dashboard:traces"), {"page": 2})
    assert _text(second).count('data-testid="trace-row"') == 3

    only = client.get(reverse("dashboard:traces"), {"error_code": "budget_exceeded"})
    assert _text(only).count('data-testid="trace-row"') == 1
    assert blocked.public_id in _text(only)
    by_key = client.get(reverse("dashboard:traces"), {"api_key": str(api_key[0].pk)})
    assert _text(by_key).count('data-testid="trace-row"') == views.TRACES_PER_PAGE


def test_traces_filter_by_model_and_by_the_deployment_that_answered(client, org):
    _trace(org)
    _trace(org, model="gpt-4o", provider="azure-eu")
    by_provider = client.get(reverse("dashboard:traces"), {"provider": "azure-eu"})
    assert _text(by_provider).count('data-testid="trace-row"') == 1
    by_model = client.get(reverse("dashboard:traces"), {"model": "gpt-4o-mini"})
    assert _text(by_model).count('data-testid="trace-row"') == 1
    assert '<option value="gpt-4o-mini">' in _text(by_model)  # suggestions


def test_bad_trace_filters_are_shown_not_applied(client, org):
    _trace(org)
    response = client.get(reverse("dashboard:traces"), {"start": "2025-02-10", "end": "2025-02-01"})
    assert "The end date is before the start date." in _text(response)
    assert _text(response).count('data-testid="trace-row"') == 1


def test_trace_content_is_shown_only_with_content_logging(client, org):
    trace = _trace(org)
    TraceContent.objects.create(
        trace=trace,
        request_encrypted=crypto.encrypt(
            '{"messages": [{"role": "user", "content": "secret plan"}]}'
        ),
        response_encrypted=crypto.encrypt("the answer"),
    )
    url = reverse("dashboard:trace-detail", args=[trace.pk])

    off = client.get(url)
    assert off.status_code == 200
    assert _testid(off, "trace-content-off")
    assert "secret plan" not in _text(off) and "the answer" not in _text(off)

    org.content_logging = True
    org.save()
    on = client.get(url)
    assert _testid(on, "trace-content")
    assert "secret plan" in _text(on) and "the answer" in _text(on)


def test_a_trace_without_stored_content_says_so(client, org):
    org.content_logging = True
    org.save()
    trace = _trace(org)
    response = client.get(reverse("dashboard:trace-detail", args=[trace.pk]))
    assert _testid(response, "trace-content-missing")


def test_another_organisations_trace_is_not_found(client, other_org):
    theirs = _trace(other_org)
    assert client.get(reverse("dashboard:trace-detail", args=[theirs.pk])).status_code == 404
    assert client.get(f"/dashboard/traces/{theirs.public_id}/").status_code == 404


def test_a_trace_is_found_by_its_id_in_every_spelling(client, org):
    trace = _trace(org)
    spellings = (trace.public_id, str(trace.pk), trace.pk.hex, trace.public_id.upper())
    for spelling in spellings:
        response = client.get(f"/dashboard/traces/{spelling}/")
        assert response.status_code == 200, spelling
        assert trace.public_id in _text(response)
    for bad in ("tr_nothex", "tr_", "12345", trace.public_id + "0"):
        assert client.get(f"/dashboard/traces/{bad}/").status_code == 404, bad


# --- settings ----------------------------------------------------------------------------


def _settings(org: Organization, **changes) -> dict:
    data: dict[str, object] = {
        "name": org.name,
        "monthly_budget_eur": "",
        "retention_days": "",
        "loop_guard_threshold": "",
        "loop_guard_window_seconds": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not False}


def test_an_owner_changes_settings_and_it_is_audited(client, org):
    response = client.post(
        reverse("dashboard:settings"),
        _settings(org, monthly_budget_eur="25.50", content_logging="on", loop_guard_threshold=5),
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.monthly_budget_eur == Decimal("25.50")
    assert org.content_logging is True and org.loop_guard_threshold == 5
    event = AuditEvent.objects.filter(organization=org, action="organization.updated").get()
    assert event.data["monthly_budget_eur"] == "25.50" and event.data["content_logging"] == "True"
    assert "Settings saved" in _text(client.get(response["Location"]))


def test_settings_errors_are_shown(client, org):
    response = client.post(
        reverse("dashboard:settings"),
        _settings(org, monthly_budget_eur="-1", retention_days="9999"),
    )
    assert response.status_code == 200
    text = _text(response)
    assert "Ensure this value is greater than or equal to 0." in text
    org.refresh_from_db()
    assert org.monthly_budget_eur is None


def test_tier_limits_on_settings_come_back_as_errors(client, org):
    response = client.post(reverse("dashboard:settings"), _settings(org, retention_days="9999"))
    assert "Retention on the Pro tier must be between 1 and 365." in _text(response)


def test_tiers_without_custom_limits_may_only_tighten_the_loop_guard(client, user):
    starter = organization_create(name="Small", owner=user, tier=tier_get(slug="starter"))
    client.post(reverse("dashboard:organization-switch"), {"organization_id": str(starter.pk)})
    loose = client.post(reverse("dashboard:settings"), _settings(starter, loop_guard_threshold=50))
    assert "must be between 2 and 10" in _text(loose)
    strict = client.post(reverse("dashboard:settings"), _settings(starter, loop_guard_threshold=4))
    assert strict.status_code == 302
    starter.refresh_from_db()
    assert starter.loop_guard_threshold == 4


def test_members_cannot_change_settings(member, org):
    _, client = member
    page = client.get(reverse("dashboard:settings"))
    assert page.status_code == 200 and _testid(page, "settings-read-only")
    assert "<fieldset disabled>" in _text(page)
    response = client.post(reverse("dashboard:settings"), _settings(org, content_logging="on"))
    assert response.status_code == 403
    assert _testid(response, "forbidden-message")
    org.refresh_from_db()
    assert org.content_logging is False


# --- members -----------------------------------------------------------------------------


def test_an_owner_adds_a_member_by_email(client, org):
    colleague = UserFactory.create(email="colleague@example.com")
    response = client.post(
        reverse("dashboard:members"), {"email": "Colleague@Example.com", "role": "admin"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(organization=org, user=colleague).role == Role.ADMIN
    assert AuditEvent.objects.filter(organization=org, action="membership.added").exists()


def test_adding_an_unknown_or_existing_member_shows_an_error(client, org, user):
    unknown = client.post(
        reverse("dashboard:members"), {"email": "nobody@example.com", "role": "member"}
    )
    assert "No Aqta account uses this email address" in _text(unknown)
    twice = client.post(reverse("dashboard:members"), {"email": user.email, "role": "member"})
    assert "is already a member" in _text(twice)


def test_members_cannot_change_members(member, org, user):
    _, client = member
    page = client.get(reverse("dashboard:members"))
    assert _testid(page, "members-read-only") and not _testid(page, "add-member-form")
    outsider = UserFactory.create()
    add = client.post(reverse("dashboard:members"), {"email": outsider.email, "role": "admin"})
    assert add.status_code == 403
    owner = Membership.objects.get(organization=org, user=user)
    assert (
        client.post(
            reverse("dashboard:member-role", args=[owner.pk]), {"role": "member"}
        ).status_code
        == 403
    )
    assert client.post(reverse("dashboard:member-remove", args=[owner.pk])).status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    assert not Membership.objects.filter(user=outsider).exists()


def test_the_last_owner_cannot_be_demoted_or_removed(client, org, user):
    owner = Membership.objects.get(organization=org, user=user)
    demote = client.post(
        reverse("dashboard:member-role", args=[owner.pk]), {"role": "member"}, follow=True
    )
    assert "The last owner cannot be demoted" in _text(demote)
    remove = client.post(reverse("dashboard:member-remove", args=[owner.pk]), follow=True)
    assert "The last owner cannot be removed" in _text(remove)
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_the_last_owner_is_offered_no_role_or_removal_controls(client, org, member):
    text = _text(client.get(reverse("dashboard:members")))
    assert text.count('data-testid="member-remove"') == 1  # the member's, not the owner's
    assert text.count('data-testid="member-role-form"') == 1


def test_admins_cannot_grant_the_owner_role(org):
    admin = UserFactory.create()
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    person = UserFactory.create()
    plain = Membership.objects.create(organization=org, user=person, role=Role.MEMBER)
    client = Client()
    client.force_login(admin)
    response = client.post(
        reverse("dashboard:member-role", args=[plain.pk]), {"role": "owner"}, follow=True
    )
    assert "Only an owner can grant" in _text(response)
    plain.refresh_from_db()
    assert plain.role == Role.MEMBER
    client.post(reverse("dashboard:member-role", args=[plain.pk]), {"role": "admin"})
    plain.refresh_from_db()
    assert plain.role == Role.ADMIN


def test_removing_a_member_asks_for_confirmation(client, org, member):
    person, _ = member
    membership = Membership.objects.get(organization=org, user=person)
    url = reverse("dashboard:member-remove", args=[membership.pk])
    assert _testid(client.get(url), "confirm-remove")
    assert Membership.objects.filter(pk=membership.pk).exists()
    client.post(url)
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_another_organisations_member_is_not_found(client, other_org):
    theirs = Membership.objects.get(organization=other_org)
    assert client.get(reverse("dashboard:member-remove", args=[theirs.pk])).status_code == 404
    url = reverse("dashboard:member-role", args=[theirs.pk])
    assert client.post(url, {"role": "member"}).status_code == 404


# --- organisation switcher ---------------------------------------------------------------


def test_the_switcher_changes_the_current_organisation(client, user, org):
    second = organization_create(name="Second Org", owner=user, tier=tier_get(slug="pro"))
    page = client.get(reverse("dashboard:overview"))
    assert _testid(page, "org-switcher") and "Second Org" in _text(page)

    response = client.post(
        reverse("dashboard:organization-switch"),
        {"organization_id": str(second.pk), "next": reverse("dashboard:keys")},
    )
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:keys")
    assert client.session[SESSION_ORGANIZATION] == str(second.pk)
    client.post(reverse("dashboard:keys"), {"name": "in second"})
    assert ApiKey.objects.get(name="in second").organization == second


def test_the_switcher_refuses_an_organisation_the_user_is_not_in(client, other_org, org):
    response = client.post(
        reverse("dashboard:organization-switch"), {"organization_id": str(other_org.pk)}
    )
    assert response.status_code == 404
    assert SESSION_ORGANIZATION not in client.session


def test_the_switcher_ignores_an_offsite_next(client, org):
    response = client.post(
        reverse("dashboard:organization-switch"),
        {"organization_id": str(org.pk), "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("dashboard:overview")


def test_a_user_removed_from_the_session_organisation_falls_back_to_another(client, user, org):
    second = organization_create(name="Second Org", owner=user, tier=tier_get(slug="pro"))
    client.post(reverse("dashboard:organization-switch"), {"organization_id": str(second.pk)})
    Membership.objects.filter(organization=second, user=user).delete()
    response = client.get(reverse("dashboard:overview"))
    assert response.status_code == 200
    assert "<h1>Acme</h1>" in _text(response)


def test_messages_never_carry_a_secret(client):
    # The confirmation of a created key is the page itself, not a flashed message.
    response = client.post(reverse("dashboard:keys"), {"name": "ci"})
    assert not list(response.context["messages"])


# --- sign-in pages (allauth) -------------------------------------------------------------


def test_the_sign_in_pages_use_the_dashboard_layout(db):
    client = Client()
    login = client.get(reverse("account_login"))
    assert login.status_code == 200 and _testid(login, "login-form")
    assert "css/aqta.css" in _text(login)
    signup = client.get(reverse("account_signup"))
    assert _testid(signup, "signup-form") and 'name="password1"' in _text(signup)
    reset = client.get(reverse("account_reset_password"))
    assert _testid(reset, "password-reset-form")


def test_google_and_microsoft_buttons_appear_when_configured(db, settings):
    assert not _testid(Client().get(reverse("account_login")), "social-sign-in")
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": pid,
                    "name": name,
                    "client_id": "id",
                    "secret": "secret",
                    "settings": {"server_url": "https://idp.invalid"},
                }
                for pid, name in (("google", "Google"), ("microsoft", "Microsoft"))
            ]
        }
    }
    for page in ("account_login", "account_signup"):
        text = _text(Client().get(reverse(page)))
        assert "Sign in with Google" in text and "Sign in with Microsoft" in text
        assert 'action="/accounts/oidc/google/login/?process=login"' in text


def test_signing_up_through_the_page_lands_in_a_personal_organisation(db):
    client = Client()
    response = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": "a-long-test-passphrase-42"},
    )
    assert response.status_code == 302
    page = client.get(reverse("dashboard:overview"))
    assert page.status_code == 200 and "new&#x27;s organisation" in _text(page)


def test_the_google_button_signs_in_and_lands_on_the_dashboard(db, settings):
    with OIDCProvider("dash-client", "dash-secret") as idp:
        idp.add_user("g-grace", "grace@example.com", name="Grace Hopper")
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "google",
                        "name": "Google",
                        "client_id": "dash-client",
                        "secret": "dash-secret",
                        "settings": {"server_url": idp.issuer, "oauth_pkce_enabled": True},
                    }
                ]
            }
        }
        client = Client()
        page = _text(client.get(reverse("account_login") + "?next=/dashboard/keys/"))
        match = re.search(r'<form method="post" action="([^"]+)">', page)
        assert match is not None
        action = match.group(1).replace("&amp;", "&")
        assert "next=%2Fdashboard%2Fkeys%2F" in action

        to_idp = client.post(action)
        assert to_idp.status_code == 302 and to_idp["Location"].startswith(idp.issuer)
        back = httpx.get(to_idp["Location"], follow_redirects=False)
        callback = urlsplit(back.headers["location"])
        done = client.get(f"{callback.path}?{callback.query}")

    assert done.status_code == 302 and done["Location"] == "/dashboard/keys/"
    keys = client.get("/dashboard/keys/")
    assert keys.status_code == 200 and "grace@example.com" in _text(keys)
