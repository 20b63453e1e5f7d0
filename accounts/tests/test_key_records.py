"""The cacheable record of a key: limits resolved key → organisation → tier."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.key_records import KeyRecord, key_record_build, key_record_load
from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke
from billing.selectors import tier_get

pytestmark = pytest.mark.django_db


def record_of(api_key: ApiKey) -> KeyRecord:
    """Build from a fresh read, as the gateway would after a change."""
    fresh = ApiKey.objects.select_related("organization__tier").get(pk=api_key.pk)
    return key_record_build(fresh)


@pytest.fixture
def key(api_key: tuple[ApiKey, str]) -> ApiKey:
    return api_key[0]


def test_it_describes_the_key_and_its_organisation(key, org):
    record = record_of(key)

    assert (record.key_id, record.org_id, record.tier) == (str(key.pk), str(org.pk), "pro")
    assert record.all_models is True
    assert record.allowed_models == ()
    assert (record.content_logging, record.response_cache) == (False, False)
    assert record.expires_at is None


def test_the_rate_limit_is_the_tiers_without_overrides(key):
    assert record_of(key).rate_limit_per_minute == tier_get(slug="pro").rate_limit_per_minute


def test_the_rate_limit_is_the_organisations_when_it_has_one(key, org):
    org.rate_limit_per_minute = 200
    org.save()

    assert record_of(key).rate_limit_per_minute == 200


def test_the_rate_limit_is_the_keys_when_it_has_one(org, user):
    org.rate_limit_per_minute = 200
    org.save()
    key, _ = api_key_create(organization=org, created_by=user, name="slow", rate_limit_per_minute=7)

    assert record_of(key).rate_limit_per_minute == 7


def test_the_quota_is_the_tiers_without_an_override(key):
    assert record_of(key).monthly_request_quota == tier_get(slug="pro").monthly_request_quota


def test_the_quota_is_the_organisations_when_it_has_one(key, org):
    org.monthly_request_quota = 25_000
    org.save()

    assert record_of(key).monthly_request_quota == 25_000


def test_a_zero_quota_override_is_kept(key, org):
    org.monthly_request_quota = 0
    org.save()

    assert record_of(key).monthly_request_quota == 0


def test_the_quota_is_none_when_neither_sets_one(key, org):
    org.tier = tier_get(slug="enterprise")  # custom pricing: no tier quota
    org.save()

    assert record_of(key).monthly_request_quota is None


def test_budgets_are_none_when_unset(key):
    record = record_of(key)

    assert (record.org_budget_eur, record.key_budget_eur) == (None, None)
    assert (record.org_budget, record.key_budget) == (None, None)


def test_budgets_are_exact_decimal_strings(org, user):
    org.monthly_budget_eur = Decimal("250.00")
    org.save()
    key, _ = api_key_create(
        organization=org, created_by=user, name="capped", monthly_budget_eur=Decimal("10.50")
    )

    record = record_of(key)

    assert (record.org_budget_eur, record.key_budget_eur) == ("250.00", "10.50")
    assert (record.org_budget, record.key_budget) == (Decimal("250.00"), Decimal("10.50"))


def test_a_zero_budget_is_a_budget(key, org):
    org.monthly_budget_eur = Decimal(0)
    org.save()

    assert record_of(key).org_budget == Decimal(0)


def test_the_loop_guard_is_the_tiers_unless_the_organisation_overrides_it(key, org):
    tier = tier_get(slug="pro")
    before = record_of(key)
    org.loop_guard_threshold, org.loop_guard_window_seconds = 3, 300
    org.save()

    after = record_of(key)

    assert (before.loop_threshold, before.loop_window_seconds) == (
        tier.loop_guard_threshold,
        tier.loop_guard_window_seconds,
    )
    assert (after.loop_threshold, after.loop_window_seconds) == (3, 300)


def test_it_carries_the_keys_model_list_and_expiry(org, user):
    expires = timezone.now() + timedelta(days=30)
    key, _ = api_key_create(
        organization=org,
        created_by=user,
        name="scoped",
        allowed_models=["gpt-4o-mini", "gpt-4o"],
        expires_at=expires,
    )

    record = record_of(key)

    assert record.allowed_models == ("gpt-4o", "gpt-4o-mini")
    assert record.expires_at == pytest.approx(expires.timestamp())


def test_a_record_survives_a_json_round_trip(org, user):
    org.monthly_budget_eur = Decimal("99.99")
    org.content_logging = True
    org.save()
    key, _ = api_key_create(
        organization=org,
        created_by=user,
        name="full",
        allowed_models=["gpt-4o-mini"],
        monthly_budget_eur=Decimal("5.00"),
        expires_at=timezone.now() + timedelta(days=1),
    )
    record = record_of(key)

    copy = KeyRecord.from_json(record.to_json())

    assert copy == record
    assert isinstance(copy.allowed_models, tuple)


def test_loading_finds_an_active_key_by_its_digest(key):
    assert key_record_load(key.digest) == record_of(key)


def test_loading_an_unknown_digest_finds_nothing(key):
    assert key_record_load("0" * len(key.digest)) is None


def test_loading_a_revoked_key_finds_nothing(key, user):
    api_key_revoke(api_key=key, revoked_by=user)

    assert key_record_load(key.digest) is None
