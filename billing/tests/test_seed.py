"""The seeded tiers and model catalogue match the product spec and the providers' list prices."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from billing.models import ExchangeRate, LanguageModel, ModelAlias, ModelPrice, Tier
from billing.selectors import model_price_at, models_for_tier, tier_get

SEVEN_YEARS_DAYS = 7 * 365

ALL_MODELS = {
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "claude-3-5-sonnet-20241022",
    "claude-3-haiku-20240307",
    "gemini-1.5-pro",
    "gemini-2.0-flash",
    "sonar",
    "sonar-pro",
    # 0005: gpt-4 and the current generation (genai-prices 0.2.3).
    "gpt-4",
    "gpt-6.1-sol",
    "gpt-6.1-terra",
    "gpt-6-sol",
    "gpt-6-astra",
    "gpt-6-luna",
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-fable-5-2",
    "gemini-4-argon",
    "gemini-3.8-flash",
    "gemini-3.5-flash-lite",
}
COST_EFFECTIVE_MODELS = {
    "gpt-4o-mini",
    "gpt-3.5-turbo",
    "claude-3-haiku-20240307",
    "gemini-2.0-flash",
    "sonar",
    "gpt-6-luna",
    "claude-haiku-5-5",
    "gemini-3.8-flash",
    "gemini-3.5-flash-lite",
}

NO_EXTRAS = {
    "cached_input_usd_per_mtok": None,
    "cache_write_usd_per_mtok": None,
    "long_context_threshold_tokens": None,
    "long_input_usd_per_mtok": None,
    "long_output_usd_per_mtok": None,
    "request_fee_low_usd": None,
    "request_fee_medium_usd": None,
    "request_fee_high_usd": None,
}


def _price(input_: str, output: str, **extras: object) -> dict[str, object]:
    return {
        **NO_EXTRAS,
        "input_usd_per_mtok": D(input_),
        "output_usd_per_mtok": D(output),
        **{key: D(value) if isinstance(value, str) else value for key, value in extras.items()},
    }


def _long(threshold: int, long_input: str, long_output: str) -> dict[str, object]:
    return {
        "long_context_threshold_tokens": threshold,
        "long_input_usd_per_mtok": long_input,
        "long_output_usd_per_mtok": long_output,
    }


# USD per 1M tokens, from the providers' price pages: openai.com/api/pricing,
# anthropic.com/pricing#api, ai.google.dev/gemini-api/docs/pricing (Gemini 1.5 Pro: Vertex AI
# pricing) and docs.perplexity.ai's pricing page; the 0005 models as genai-prices 0.2.3 has them.
LIST_PRICES = {
    "gpt-4o": ("openai", _price("2.50", "10.00", cached_input_usd_per_mtok="1.25")),
    "gpt-4o-mini": ("openai", _price("0.15", "0.60", cached_input_usd_per_mtok="0.075")),
    "gpt-4-turbo": ("openai", _price("10.00", "30.00")),
    "gpt-3.5-turbo": ("openai", _price("0.50", "1.50")),
    "claude-3-5-sonnet-20241022": (
        "anthropic",
        _price("3.00", "15.00", cached_input_usd_per_mtok="0.30", cache_write_usd_per_mtok="3.75"),
    ),
    "claude-3-haiku-20240307": (
        "anthropic",
        _price("0.25", "1.25", cached_input_usd_per_mtok="0.03", cache_write_usd_per_mtok="0.30"),
    ),
    "gemini-1.5-pro": (
        "google",
        _price(
            "1.25",
            "5.00",
            long_context_threshold_tokens=128_000,
            long_input_usd_per_mtok="2.50",
            long_output_usd_per_mtok="10.00",
        ),
    ),
    "gemini-2.0-flash": ("google", _price("0.10", "0.40", cached_input_usd_per_mtok="0.025")),
    "sonar": (
        "perplexity",
        _price(
            "1.00",
            "1.00",
            request_fee_low_usd="0.005",
            request_fee_medium_usd="0.008",
            request_fee_high_usd="0.012",
        ),
    ),
    "sonar-pro": (
        "perplexity",
        _price(
            "3.00",
            "15.00",
            request_fee_low_usd="0.006",
            request_fee_medium_usd="0.010",
            request_fee_high_usd="0.014",
        ),
    ),
    "gpt-4": ("openai", _price("30", "60")),
    "gpt-6.1-sol": (
        "openai",
        _price(
            "2",
            "10",
            cached_input_usd_per_mtok="0.1",
            cache_write_usd_per_mtok="2.5",
            **_long(272_000, "4", "15"),
        ),
    ),
    "gpt-6.1-terra": (
        "openai",
        _price(
            "1",
            "5",
            cached_input_usd_per_mtok="0.05",
            cache_write_usd_per_mtok="1.25",
            **_long(272_000, "2", "7.5"),
        ),
    ),
    "gpt-6-sol": (
        "openai",
        _price(
            "2",
            "10",
            cached_input_usd_per_mtok="0.2",
            cache_write_usd_per_mtok="2.5",
            **_long(272_000, "4", "15"),
        ),
    ),
    "gpt-6-astra": (
        "openai",
        _price(
            "10",
            "50",
            cached_input_usd_per_mtok="1",
            cache_write_usd_per_mtok="12.5",
            **_long(272_000, "20", "75"),
        ),
    ),
    "gpt-6-luna": (
        "openai",
        _price(
            "0.1",
            "0.5",
            cached_input_usd_per_mtok="0.01",
            cache_write_usd_per_mtok="0.125",
            **_long(272_000, "0.2", "0.75"),
        ),
    ),
    "claude-opus-5-5": (
        "anthropic",
        _price("4", "20", cached_input_usd_per_mtok="0.2", cache_write_usd_per_mtok="5"),
    ),
    "claude-sonnet-5-5": (
        "anthropic",
        _price("2", "10", cached_input_usd_per_mtok="0.1", cache_write_usd_per_mtok="2.5"),
    ),
    "claude-haiku-5-5": (
        "anthropic",
        _price(
            "0.1",
            "0.5",
            cached_input_usd_per_mtok="0.01",
            cache_write_usd_per_mtok="0.125",
            **_long(100_000, "0.5", "2.5"),
        ),
    ),
    "claude-fable-5-2": (
        "anthropic",
        _price("8", "40", cached_input_usd_per_mtok="0.2", cache_write_usd_per_mtok="10"),
    ),
    "gemini-4-argon": ("google", _price("4", "20", cached_input_usd_per_mtok="0.2")),
    "gemini-3.8-flash": ("google", _price("0.75", "3.75", cached_input_usd_per_mtok="0.075")),
    "gemini-3.5-flash-lite": ("google", _price("0.3", "2.5", cached_input_usd_per_mtok="0.03")),
}
CONTEXT_WINDOWS = {
    "gpt-4": 8_192,
    "gpt-6.1-sol": 1_050_000,
    "gpt-6.1-terra": 1_050_000,
    "gpt-6-sol": 1_050_000,
    "gpt-6-astra": 1_050_000,
    "gpt-6-luna": 1_050_000,
    "claude-opus-5-5": 1_000_000,
    "claude-sonnet-5-5": 1_000_000,
    "claude-haiku-5-5": 1_000_000,
    "claude-fable-5-2": 1_000_000,
    "gemini-4-argon": 1_048_576,
    "gemini-3.8-flash": 1_000_000,
    "gemini-3.5-flash-lite": 1_000_000,
}
CURRENT_FROM = datetime(2026, 12, 1, tzinfo=UTC)


def _no_compliance(tier: Tier) -> bool:
    return not (tier.audit_trail or tier.bias_detection or tier.compliance_reports or tier.receipts)


def test_the_five_tiers_are_seeded_in_price_order(db):
    assert list(Tier.objects.values_list("slug", flat=True)) == [
        "free",
        "starter",
        "pro",
        "healthcare",
        "enterprise",
    ]


def test_free_is_limited_to_a_small_quota_and_cost_effective_models(db):
    free = tier_get(slug="free")

    assert free.name == "Free"
    assert free.monthly_price_eur == D("0")
    assert free.monthly_request_quota == 500
    assert free.rate_limit_per_minute == 5
    assert free.all_models is False
    assert free.analytics == "none"
    assert _no_compliance(free)
    assert free.compliance is False
    assert free.retention_days == 7


def test_starter_has_basic_analytics_and_every_model(db):
    starter = tier_get(slug="starter")

    assert starter.name == "Starter"
    assert starter.monthly_price_eur == D("49")
    assert starter.monthly_request_quota == 100_000
    assert starter.rate_limit_per_minute == 100
    assert starter.all_models is True
    assert starter.analytics == "basic"
    assert _no_compliance(starter)
    assert starter.retention_days == 90


def test_pro_has_advanced_analytics_and_custom_rate_limits(db):
    pro = tier_get(slug="pro")

    assert pro.name == "Pro"
    assert pro.monthly_price_eur == D("149")
    assert pro.monthly_request_quota == 1_000_000
    assert pro.rate_limit_per_minute == 1_000
    assert pro.all_models is True
    assert pro.analytics == "advanced"
    assert pro.custom_rate_limits is True
    assert _no_compliance(pro)
    assert pro.retention_days == 365


def test_healthcare_has_every_compliance_feature_and_seven_years_of_retention(db):
    healthcare = tier_get(slug="healthcare")

    assert healthcare.name == "Healthcare"
    assert healthcare.monthly_price_eur == D("999")
    assert healthcare.monthly_request_quota == 1_000_000
    assert healthcare.rate_limit_per_minute == 1_000
    assert healthcare.all_models is True
    assert healthcare.audit_trail is True
    assert healthcare.bias_detection is True
    assert healthcare.compliance_reports is True
    assert healthcare.receipts is True
    assert healthcare.compliance is True
    assert healthcare.max_retention_days >= SEVEN_YEARS_DAYS
    assert healthcare.retention_days <= healthcare.max_retention_days


def test_enterprise_is_custom_priced_with_seven_years_of_retention(db):
    enterprise = tier_get(slug="enterprise")

    assert enterprise.name == "Enterprise"
    assert enterprise.monthly_price_eur is None
    assert enterprise.monthly_request_quota is None
    assert enterprise.all_models is True
    assert enterprise.max_retention_days >= SEVEN_YEARS_DAYS


def test_no_tier_defaults_to_a_longer_retention_than_it_allows(db):
    for tier in Tier.objects.all():
        assert tier.retention_days <= tier.max_retention_days, tier.slug


def test_the_catalogue_holds_the_seeded_models(db):
    assert set(LanguageModel.objects.values_list("model_id", flat=True)) == ALL_MODELS
    assert LanguageModel.objects.filter(is_active=True).count() == len(ALL_MODELS)


@pytest.mark.parametrize("model_id", sorted(LIST_PRICES))
def test_each_model_has_its_provider_and_list_price(db, model_id):
    provider, expected = LIST_PRICES[model_id]
    model = LanguageModel.objects.get(model_id=model_id)

    price = model_price_at(model=model, at=datetime(2026, 12, 15, tzinfo=UTC))

    assert model.provider == provider
    assert price is not None
    assert {field: getattr(price, field) for field in expected} == expected


@pytest.mark.parametrize("model_id", sorted(ALL_MODELS))
def test_each_model_is_cost_effective_only_if_the_spec_says_so(db, model_id):
    model = LanguageModel.objects.get(model_id=model_id)

    assert model.cost_effective is (model_id in COST_EFFECTIVE_MODELS)


def test_a_usd_to_eur_rate_is_seeded_from_the_price_date(db):
    rate = ExchangeRate.objects.get(base="USD", quote="EUR")

    assert rate.rate == D("0.87")
    assert rate.valid_from == datetime(2024, 1, 1, tzinfo=UTC)
    assert rate.valid_to is None


def test_free_may_call_only_the_cost_effective_models(db):
    models = models_for_tier(tier=tier_get(slug="free"))

    assert {model.model_id for model in models} == COST_EFFECTIVE_MODELS


@pytest.mark.parametrize("slug", ["starter", "pro", "healthcare", "enterprise"])
def test_paid_tiers_may_call_every_model(db, slug):
    models = models_for_tier(tier=tier_get(slug=slug))

    assert {model.model_id for model in models} == ALL_MODELS
    assert len(models) == len(ALL_MODELS)


def test_an_inactive_model_is_offered_to_no_tier(db):
    LanguageModel.objects.filter(model_id="gpt-4o-mini").update(is_active=False)

    for slug in ("free", "pro"):
        model_ids = {model.model_id for model in models_for_tier(tier=tier_get(slug=slug))}
        assert "gpt-4o-mini" not in model_ids, slug


@pytest.mark.parametrize("model_id", sorted(CONTEXT_WINDOWS))
def test_each_current_model_has_its_context_window_and_no_price_before_the_seed(db, model_id):
    model = LanguageModel.objects.get(model_id=model_id)

    assert model.context_window == CONTEXT_WINDOWS[model_id]
    assert model.max_output_tokens is None
    assert model.is_active is True
    first_price = model.prices.order_by("valid_from").first()
    assert first_price is not None
    assert first_price.valid_from == CURRENT_FROM
    assert model_price_at(model=model, at=CURRENT_FROM - timedelta(seconds=1)) is None


def test_gemini_3_8_flash_moves_from_its_introductory_rate_on_the_first_of_january(db):
    model = LanguageModel.objects.get(model_id="gemini-3.8-flash")
    intro, list_price = model.prices.order_by("valid_from")

    assert (intro.valid_from, intro.valid_to) == (CURRENT_FROM, datetime(2027, 1, 1, tzinfo=UTC))
    assert (list_price.valid_from, list_price.valid_to) == (datetime(2027, 1, 1, tzinfo=UTC), None)
    assert (list_price.input_usd_per_mtok, list_price.output_usd_per_mtok) == (D("1.5"), D("7.5"))
    assert list_price.cached_input_usd_per_mtok == D("0.15")
    assert model_price_at(model=model, at=datetime(2027, 1, 1, tzinfo=UTC)) == list_price


def test_the_undated_claude_3_names_are_aliases_of_the_dated_ids(db):
    aliases = dict(ModelAlias.objects.values_list("alias", "model__model_id"))

    assert aliases == {
        "claude-3-5-sonnet": "claude-3-5-sonnet-20241022",
        "claude-3-haiku": "claude-3-haiku-20240307",
    }


def test_seeding_again_changes_nothing_and_keeps_an_operators_price(db):
    from django.apps import apps

    migration = importlib.import_module("billing.migrations.0005_seed_current_models")
    gpt_4 = LanguageModel.objects.get(model_id="gpt-4")
    gpt_4.cost_effective = True
    gpt_4.save(update_fields=["cost_effective"])
    ModelPrice.objects.filter(model=gpt_4).update(input_usd_per_mtok=D("25"))
    before = ModelPrice.objects.count(), ModelAlias.objects.count()

    migration.seed(apps, None)

    assert (ModelPrice.objects.count(), ModelAlias.objects.count()) == before
    gpt_4.refresh_from_db()
    assert gpt_4.cost_effective is True
    assert gpt_4.prices.get().input_usd_per_mtok == D("25")
