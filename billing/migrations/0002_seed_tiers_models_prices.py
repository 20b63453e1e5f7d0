"""Seed tiers, the model catalogue with list prices (USD per 1M tokens) and a USD→EUR rate.

Prices are the providers' list prices as of the seed date; operators change them in the
admin by adding a new dated price, never by editing history.
"""

from datetime import UTC, datetime
from decimal import Decimal as D

from django.db import migrations

SEVEN_YEARS = 7 * 365 + 2

TIERS = [
    # slug, name, price, quota, rpm, all_models, analytics, custom_rl, healthcare, retention, max
    ("free", "Free", D("0"), 500, 5, False, "none", False, False, 7, 7),
    ("starter", "Starter", D("49"), 100_000, 100, True, "basic", False, False, 90, 90),
    ("pro", "Pro", D("149"), 1_000_000, 1_000, True, "advanced", True, False, 365, 365),
    ("healthcare", "Healthcare", D("999"), 1_000_000, 1_000, True, "advanced", False, True, 365 * 6, SEVEN_YEARS),
    ("enterprise", "Enterprise", None, None, 5_000, True, "advanced", True, True, 365, SEVEN_YEARS),
]

# provider, model id, display name, cost-effective, context, max output, prices
MODELS = [
    ("openai", "gpt-4o", "GPT-4o", False, 128_000, 16_384, {"input": "2.50", "output": "10.00", "cached": "1.25"}),
    ("openai", "gpt-4o-mini", "GPT-4o mini", True, 128_000, 16_384, {"input": "0.15", "output": "0.60", "cached": "0.075"}),
    ("openai", "gpt-4-turbo", "GPT-4 Turbo", False, 128_000, 4_096, {"input": "10.00", "output": "30.00"}),
    ("openai", "gpt-3.5-turbo", "GPT-3.5 Turbo", True, 16_385, 4_096, {"input": "0.50", "output": "1.50"}),
    ("anthropic", "claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet", False, 200_000, 8_192, {"input": "3.00", "output": "15.00", "cached": "0.30", "write": "3.75"}),
    ("anthropic", "claude-3-haiku-20240307", "Claude 3 Haiku", True, 200_000, 4_096, {"input": "0.25", "output": "1.25", "cached": "0.03", "write": "0.30"}),
    # Google's Vertex list price after the Oct-2024 cut; the whole call moves to the long rates above 128k prompt tokens.
    ("google", "gemini-1.5-pro", "Gemini 1.5 Pro", False, 2_097_152, 8_192, {"input": "1.25", "output": "5.00", "long_threshold": 128_000, "long_input": "2.50", "long_output": "10.00"}),
    ("google", "gemini-2.0-flash", "Gemini 2.0 Flash", True, 1_048_576, 8_192, {"input": "0.10", "output": "0.40", "cached": "0.025"}),
    ("perplexity", "sonar", "Sonar", True, 128_000, 8_000, {"input": "1.00", "output": "1.00", "fees": ("0.005", "0.008", "0.012")}),
    ("perplexity", "sonar-pro", "Sonar Pro", False, 200_000, 8_000, {"input": "3.00", "output": "15.00", "fees": ("0.006", "0.010", "0.014")}),
]

PRICES_FROM = datetime(2024, 1, 1, tzinfo=UTC)
USD_EUR = D("0.87")


def _dec(value):
    return D(value) if value is not None else None


def seed(apps, schema_editor):
    Tier = apps.get_model("billing", "Tier")
    LanguageModel = apps.get_model("billing", "LanguageModel")
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ExchangeRate = apps.get_model("billing", "ExchangeRate")
    for order, (slug, name, price, quota, rpm, all_models, analytics, custom, hc, keep, max_keep) in enumerate(TIERS):
        Tier.objects.update_or_create(
            slug=slug,
            defaults=dict(
                name=name,
                monthly_price_eur=price,
                monthly_request_quota=quota,
                rate_limit_per_minute=rpm,
                all_models=all_models,
                analytics=analytics,
                custom_rate_limits=custom,
                audit_trail=hc,
                bias_detection=hc,
                compliance_reports=hc,
                receipts=hc,
                retention_days=keep,
                max_retention_days=max_keep,
                sort_order=order,
            ),
        )
    for provider, model_id, display, cheap, context, max_out, p in MODELS:
        model, _ = LanguageModel.objects.update_or_create(
            model_id=model_id,
            defaults=dict(
                provider=provider,
                display_name=display,
                cost_effective=cheap,
                context_window=context,
                max_output_tokens=max_out,
            ),
        )
        fees = p.get("fees", (None, None, None))
        ModelPrice.objects.get_or_create(
            model=model,
            valid_from=PRICES_FROM,
            defaults=dict(
                input_usd_per_mtok=D(p["input"]),
                output_usd_per_mtok=D(p["output"]),
                cached_input_usd_per_mtok=_dec(p.get("cached")),
                cache_write_usd_per_mtok=_dec(p.get("write")),
                long_context_threshold_tokens=p.get("long_threshold"),
                long_input_usd_per_mtok=_dec(p.get("long_input")),
                long_output_usd_per_mtok=_dec(p.get("long_output")),
                request_fee_low_usd=_dec(fees[0]),
                request_fee_medium_usd=_dec(fees[1]),
                request_fee_high_usd=_dec(fees[2]),
            ),
        )
    ExchangeRate.objects.get_or_create(
        base="USD", quote="EUR", valid_from=PRICES_FROM, defaults={"rate": USD_EUR}
    )


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
