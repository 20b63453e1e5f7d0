"""Operating the service from the admin: usage and activity per organisation, provider
health, deployments, retention, and who may see what."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError

from accounts.models import ApiKey, Organization
from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from aqta import redis as aqta_redis
from billing.models import LanguageModel
from billing.selectors import tier_get
from compliance.models import AuditEvent
from gateway.models import ModelDeployment, ProviderEndpoint, Trace, UsageCounter

DEPLOYMENT = "ops-test-vllm"


def _url(model, view: str = "changelist", *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _cell(html: str, column: str) -> list[str]:
    """The text of every cell of one changelist column, top to bottom."""
    cells = re.findall(rf'class="field-{column}[^"]*">(.*?)</t[dh]>', html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


@pytest.fixture(autouse=True)
def _staff_mfa_off(settings):
    settings.AQTA_STAFF_REQUIRE_MFA = False


@pytest.fixture
def superuser(db):
    return UserFactory.create(email="ops@aqta.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client: Client, superuser) -> Client:
    client.force_login(superuser)
    return client


def _organization(name: str, tier: str = "pro") -> Organization:
    return organization_create(name=name, owner=UserFactory.create(), tier=tier_get(slug=tier))


def _month() -> date:
    return timezone.now().date().replace(day=1)


# --- Organisations: usage this month and last activity ------------------------------------


def test_organisations_show_this_months_requests_and_cost(admin_client, org, api_key):
    key, _ = api_key
    other_key, _ = api_key_create(organization=org, created_by=None, name="second")
    UsageCounter.objects.create(
        organization=org, api_key=key, month=_month(), requests=40, cost_eur=Decimal("10.5")
    )
    UsageCounter.objects.create(
        organization=org,
        api_key=other_key,
        month=_month(),
        requests=2,
        cost_eur=Decimal("1.845678"),
    )
    last_month = _month() - timedelta(days=1)
    UsageCounter.objects.create(
        organization=org, api_key=key, month=last_month.replace(day=1), requests=999
    )
    _organization("Zeta")  # no usage at all

    html = admin_client.get(_url(Organization)).content.decode()

    assert _cell(html, "requests_this_month") == ["42", "0"]
    assert _cell(html, "cost_this_month") == ["12.35", "0.00"]


def test_organisations_show_their_last_activity(admin_client, org, api_key):
    key, _ = api_key
    other, _ = api_key_create(organization=org, created_by=None, name="second")
    latest = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=latest - timedelta(days=3))
    ApiKey.objects.filter(pk=other.pk).update(last_used_at=latest)
    _organization("Zeta")

    response = admin_client.get(_url(Organization))

    rows = {o.name: o for o in response.context["cl"].result_list}
    assert rows["Acme"]._last_activity == latest
    assert rows["Zeta"]._last_activity is None
    assert _cell(response.content.decode(), "last_activity")[1] == "never"


def test_the_organisation_list_can_be_sorted_by_cost(admin_client, org):
    cheap = _organization("Cheap")
    UsageCounter.objects.create(organization=org, month=_month(), cost_eur=Decimal("5"))
    UsageCounter.objects.create(organization=cheap, month=_month(), cost_eur=Decimal("1"))
    columns = admin_client.get(_url(Organization)).context["cl"].list_display

    for order, expected in (("", ["Cheap", "Acme"]), ("-", ["Acme", "Cheap"])):
        sort = f"{order}{columns.index('cost_this_month')}"
        response = admin_client.get(_url(Organization), {"o": sort})
        assert [o.name for o in response.context["cl"].result_list] == expected


def test_the_organisation_list_makes_no_query_per_row(admin_client, org, api_key):
    UsageCounter.objects.create(organization=org, month=_month(), requests=1)
    with CaptureQueriesContext(connection) as one_row:
        admin_client.get(_url(Organization))
    for n in range(10):
        other = _organization(f"Org {n}")
        key, _ = api_key_create(organization=other, created_by=None, name="k")
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        UsageCounter.objects.create(organization=other, api_key=key, month=_month(), requests=n)

    with CaptureQueriesContext(connection) as many_rows:
        response = admin_client.get(_url(Organization))

    assert len(response.context["cl"].result_list) == 11
    assert len(many_rows) == len(one_row)


def test_the_organisation_list_stays_within_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    for n in range(20):
        organization = _organization(f"Org {n}")
        UsageCounter.objects.create(organization=organization, month=_month(), requests=n)

    with django_assert_max_num_queries(9):
        assert admin_client.get(_url(Organization)).status_code == 200


# --- Provider health ----------------------------------------------------------------------


class FakeRedis:
    """The few Redis calls the health column makes, in memory (embedded test runs)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}

    def set(self, key: str, value, ex: int = -1) -> None:
        self.values[key] = (str(value).encode(), ex)

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.values.pop(key, None)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.replies: list[bytes | int | None] = []

    def __enter__(self) -> FakePipeline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def ttl(self, key: str) -> None:
        self.replies.append(self.redis.values.get(key, (None, -2))[1])

    def get(self, key: str) -> None:
        self.replies.append(self.redis.values.get(key, (None, 0))[0])

    def execute(self) -> list:
        return self.replies


class BrokenRedis(FakeRedis):
    def pipeline(self, transaction: bool = True):
        raise RedisError("connection refused")


@pytest.fixture
def breaker_redis(monkeypatch):
    """Where breakers are read from: the configured Redis, else an in-memory stand-in."""
    client: Redis | FakeRedis
    if aqta_redis.enabled():
        client = aqta_redis.sync_client()
    else:
        client = FakeRedis()
        monkeypatch.setattr(aqta_redis, "enabled", lambda: True)
        monkeypatch.setattr(aqta_redis, "sync_client", lambda: client)
    yield client
    client.delete(f"aqta:cb:open:{DEPLOYMENT}", f"aqta:cb:f:{DEPLOYMENT}")


@pytest.fixture
def endpoint(db) -> ProviderEndpoint:
    endpoint = ProviderEndpoint.objects.create(
        name="vllm", provider="openai_compatible", base_url="http://vllm.internal:8000/v1"
    )
    ModelDeployment.objects.create(
        name=DEPLOYMENT,
        model=LanguageModel.objects.get(model_id="gpt-4o-mini"),
        endpoint=endpoint,
        upstream_model_id="llama3",
    )
    return endpoint


def _calls(
    org,
    provider: str,
    *http_statuses: int,
    ago: timedelta = timedelta(minutes=5),
    status: str = "passed",
    cached: bool = False,
) -> None:
    Trace.objects.bulk_create(
        Trace(
            created_at=timezone.now() - ago,
            organization=org,
            provider=provider,
            status=status,
            http_status=http_status,
            cached=cached,
        )
        for http_status in http_statuses
    )


def _health(client: Client) -> list[str]:
    return _cell(client.get(_url(ProviderEndpoint)).content.decode(), "health")


def test_health_shows_the_error_rate_of_the_last_hour(admin_client, org, endpoint):
    _calls(org, DEPLOYMENT, 200, 200, 200, 502)
    _calls(org, DEPLOYMENT, 502, 502, ago=timedelta(hours=2))  # before the window
    _calls(org, DEPLOYMENT, 429, status="blocked")  # never reached the provider
    _calls(org, DEPLOYMENT, 200, cached=True)  # answered from the cache
    _calls(org, "another-deployment", 504)

    assert "25.0% errors (1/4) in the last hour" in _health(admin_client)[0]


def test_health_says_when_there_were_no_calls(admin_client, endpoint):
    assert "no calls in the last hour" in _health(admin_client)[0]


def test_a_default_endpoint_counts_the_calls_made_under_its_providers_name(admin_client, org):
    ProviderEndpoint.objects.create(
        name="openai-main", provider="openai", base_url="https://api.openai.com/v1", is_default=True
    )
    _calls(org, "openai", 200, 503)

    assert "50.0% errors (1/2)" in _health(admin_client)[0]


def test_an_endpoint_without_deployments_or_models_serves_no_model(admin_client, db):
    ProviderEndpoint.objects.create(
        name="spare", provider="openai", base_url="https://spare.example/v1"
    )

    assert _health(admin_client) == ["serves no model"]


def test_health_shows_an_open_breaker(admin_client, endpoint, breaker_redis):
    breaker_redis.set(f"aqta:cb:open:{DEPLOYMENT}", 1, ex=30)
    breaker_redis.set(f"aqta:cb:f:{DEPLOYMENT}", 5, ex=300)

    health = _health(admin_client)[0]

    assert re.search(rf"open: {DEPLOYMENT} \((29|30) s\)", health), health


def test_health_shows_recent_failures_of_a_closed_breaker(admin_client, endpoint, breaker_redis):
    breaker_redis.set(f"aqta:cb:f:{DEPLOYMENT}", 2, ex=300)

    assert _health(admin_client)[0].startswith("closed, 2 recent failures")


def test_health_without_breaker_state_shows_a_closed_breaker(admin_client, endpoint, breaker_redis):
    assert _health(admin_client)[0].startswith("closed ·")


def test_health_in_embedded_mode_says_breakers_are_not_shared(admin_client, endpoint, monkeypatch):
    monkeypatch.setattr(aqta_redis, "enabled", lambda: False)

    assert _health(admin_client)[0].startswith("breaker not shared (embedded)")


def test_health_survives_redis_being_down(admin_client, endpoint, monkeypatch):
    monkeypatch.setattr(aqta_redis, "enabled", lambda: True)
    monkeypatch.setattr(aqta_redis, "sync_client", BrokenRedis)

    assert _health(admin_client)[0].startswith("breaker state unavailable")


def test_the_endpoint_list_makes_no_query_per_row(
    admin_client, org, endpoint, breaker_redis, django_assert_max_num_queries
):
    with CaptureQueriesContext(connection) as one_row:
        admin_client.get(_url(ProviderEndpoint))
    for n in range(8):
        other = ProviderEndpoint.objects.create(
            name=f"vllm-{n}", provider="openai_compatible", base_url=f"http://vllm{n}.internal/v1"
        )
        ModelDeployment.objects.create(
            name=f"ops-test-{n}",
            model=LanguageModel.objects.get(model_id="gpt-4o"),
            endpoint=other,
            upstream_model_id="llama3",
        )
        _calls(org, f"ops-test-{n}", 200, 500)

    with django_assert_max_num_queries(len(one_row)):
        assert len(_health(admin_client)) == 9


# --- Deployments --------------------------------------------------------------------------


def test_deployments_are_listed_with_their_routing(admin_client, endpoint):
    html = admin_client.get(_url(ModelDeployment)).content.decode()

    assert _cell(html, "name") == [DEPLOYMENT]
    assert _cell(html, "model") == ["gpt-4o-mini"]
    assert _cell(html, "endpoint") == ["vllm (OpenAI-compatible (self-hosted))"]
    assert _cell(html, "upstream_model_id") == ["llama3"]
    assert _cell(html, "priority") == ["0"]
    assert len(_cell(html, "health")) == 1


def test_an_operator_adds_a_deployment(admin_client, endpoint):
    assert admin_client.get(_url(ModelDeployment, "add")).status_code == 200

    response = admin_client.post(
        _url(ModelDeployment, "add"),
        {
            "name": "mini-fallback",
            "model": LanguageModel.objects.get(model_id="gpt-4o-mini").pk,
            "endpoint": endpoint.pk,
            "upstream_model_id": "llama3-70b",
            "priority": 1,
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    assert ModelDeployment.objects.get(name="mini-fallback").priority == 1


# --- Retention on the organisation form ---------------------------------------------------


def _change_form_data(response) -> dict:
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


def test_retention_beyond_the_tiers_maximum_is_refused_on_the_form(admin_client, org):
    url = _url(Organization, "change", org.pk)
    data = {**_change_form_data(admin_client.get(url)), "retention_days": "400"}

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "retention_days" in response.context["adminform"].form.errors
    assert "at most 365 days" in response.content.decode()
    org.refresh_from_db()
    assert org.retention_days is None


def test_retention_set_on_the_form_is_audited(admin_client, superuser, org):
    url = _url(Organization, "change", org.pk)
    data = {**_change_form_data(admin_client.get(url)), "retention_days": "30"}

    assert admin_client.post(url, data).status_code == 302

    org.refresh_from_db()
    assert org.retention_days == 30
    event = AuditEvent.objects.get(action="organization.retention_changed")
    assert (event.actor, event.data) == (superuser, {"from": None, "to": 30})
    assert not AuditEvent.objects.filter(action="organization.updated").exists()


def test_retention_is_checked_against_the_new_tier(admin_client, org):
    url = _url(Organization, "change", org.pk)
    data = _change_form_data(admin_client.get(url))
    data.update(tier=tier_get(slug="healthcare").pk, retention_days="2557")

    assert admin_client.post(url, data).status_code == 302

    org.refresh_from_db()
    assert (org.tier.slug, org.retention_days) == ("healthcare", 2557)


# --- Who may see what ---------------------------------------------------------------------

OPERATED = [Organization, ApiKey, ProviderEndpoint, ModelDeployment, Trace, UsageCounter]


@pytest.mark.parametrize("model", OPERATED, ids=lambda m: m._meta.label)
def test_staff_without_permissions_are_refused(client, db, model):
    client.force_login(UserFactory.create(is_staff=True))

    assert client.get(_url(model)).status_code == 403


@pytest.mark.parametrize("model", OPERATED, ids=lambda m: m._meta.label)
def test_a_superuser_sees_every_operations_page(admin_client, db, model):
    assert admin_client.get(_url(model)).status_code == 200


def test_staff_see_what_their_permissions_allow(client, org, api_key):
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_organization"))
    client.force_login(staff)

    response = client.get(_url(Organization))

    assert response.status_code == 200
    assert response.context["action_form"] is None  # no tier change, no delete
    assert client.get(_url(ApiKey)).status_code == 403
    assert client.get(_url(Organization, "change", org.pk)).status_code == 200  # view only
    assert client.post(_url(Organization, "change", org.pk), {"name": "x"}).status_code == 403
