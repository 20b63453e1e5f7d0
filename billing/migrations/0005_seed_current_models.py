"""Seed gpt-4 and the current generation of each provider's models (as of 2026-12).

Models, context windows and list prices (USD per 1M tokens) are those of the genai-prices
database, version 0.2.3 (``manage.py prices_import`` compares them with the installed one).
It records no output limits, so none are seeded: Anthropic calls without ``max_tokens`` then
ask for the translator's default. Cost-effective (allowed on the Free tier): the small class of
each family (Luna, Haiku, Flash, Flash Lite).

Perplexity has no new model here: its current models are served by the Agent API, which the
Sonar chat-completions translator does not speak.

Idempotent, and it never touches what an operator already has: a model that exists keeps
its settings, and a model that already has prices gets none from here.
"""

from datetime import UTC, datetime
from decimal import Decimal as D

from django.db import migrations

PRICES_FROM = datetime(2026, 12, 1, tzinfo=UTC)

# provider, model id, display name, cost-effective, context window, price periods
# (start, prices); a start of None is PRICES_FROM.
MODELS = [
    ("openai", "gpt-4", "GPT-4", False, 8_192, [(None, {"input": "30", "output": "60"})]),
    ("openai", "gpt-6.1-sol", "GPT-6.1 Sol", False, 1_050_000, [(None, {"input": "2", "output": "10", "cached": "0.1", "write": "2.5", "long_threshold": 272_000, "long_input": "4", "long_output": "15"})]),
    ("openai", "gpt-6.1-terra", "GPT-6.1 Terra", False, 1_050_000, [(None, {"input": "1", "output": "5", "cached": "0.05", "write": "1.25", "long_threshold": 272_000, "long_input": "2", "long_output": "7.5"})]),
    ("openai", "gpt-6-sol", "GPT-6 Sol", False, 1_050_000, [(None, {"input": "2", "output": "10", "cached": "0.2", "write": "2.5", "long_threshold": 272_000, "long_input": "4", "long_output": "15"})]),
    ("openai", "gpt-6-astra", "GPT-6 Astra", False, 1_050_000, [(None, {"input": "10", "output": "50", "cached": "1", "write": "12.5", "long_threshold": 272_000, "long_input": "20", "long_output": "75"})]),
    ("openai", "gpt-6-luna", "GPT-6 Luna", True, 1_050_000, [(None, {"input": "0.1", "output": "0.5", "cached": "0.01", "write": "0.125", "long_threshold": 272_000, "long_input": "0.2", "long_output": "0.75"})]),
    ("anthropic", "claude-opus-5-5", "Claude Opus 5.5", False, 1_000_000, [(None, {"input": "4", "output": "20", "cached": "0.2", "write": "5"})]),
    ("anthropic", "claude-sonnet-5-5", "Claude Sonnet 5.5", False, 1_000_000, [(None, {"input": "2", "output": "10", "cached": "0.1", "write": "2.5"})]),
    ("anthropic", "claude-haiku-5-5", "Claude Haiku 5.5", True, 1_000_000, [(None, {"input": "0.1", "output": "0.5", "cached": "0.01", "write": "0.125", "long_threshold": 100_000, "long_input": "0.5", "long_output": "2.5"})]),
    ("anthropic", "claude-fable-5-2", "Claude Fable 5.2", False, 1_000_000, [(None, {"input": "8", "output": "40", "cached": "0.2", "write": "10"})]),
    ("google", "gemini-4-argon", "Gemini 4 Argon", False, 1_048_576, [(None, {"input": "4", "output": "20", "cached": "0.2"})]),
    # Introductory rates through 2026-12-31, the list price from 2027-01-01.
    ("google", "gemini-3.8-flash", "Gemini 3.8 Flash", True, 1_000_000, [
        (None, {"input": "0.75", "output": "3.75", "cached": "0.075"}),
        (datetime(2027, 1, 1, tzinfo=UTC), {"input": "1.5", "output": "7.5", "cached": "0.15"}),
    ]),
    ("google", "gemini-3.5-flash-lite", "Gemini 3.5 Flash Lite", True, 1_000_000, [(None, {"input": "0.3", "output": "2.5", "cached": "0.03"})]),
]

# Undated names the price data lists for the dated ids seeded in 0002.
ALIASES = [
    ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022"),
    ("claude-3-haiku", "claude-3-haiku-20240307"),
]


def _dec(value):
    return D(value) if value is not None else None


def seed(apps, schema_editor):
    LanguageModel = apps.get_model("billing", "LanguageModel")
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ModelAlias = apps.get_model("billing", "ModelAlias")
    for provider, model_id, display, cheap, context, periods in MODELS:
        model, _ = LanguageModel.objects.get_or_create(
            model_id=model_id,
            defaults=dict(
                provider=provider,
                display_name=display,
                cost_effective=cheap,
                context_window=context,
            ),
        )
        if ModelPrice.objects.filter(model=model).exists():
            continue
        for index, (start, p) in enumerate(periods):
            ends = periods[index + 1][0] if index + 1 < len(periods) else None
            ModelPrice.objects.create(
                model=model,
                valid_from=start or PRICES_FROM,
                valid_to=ends,
                input_usd_per_mtok=D(p["input"]),
                output_usd_per_mtok=D(p["output"]),
                cached_input_usd_per_mtok=_dec(p.get("cached")),
                cache_write_usd_per_mtok=_dec(p.get("write")),
                long_context_threshold_tokens=p.get("long_threshold"),
                long_input_usd_per_mtok=_dec(p.get("long_input")),
                long_output_usd_per_mtok=_dec(p.get("long_output")),
            )
    for alias, model_id in ALIASES:
        model = LanguageModel.objects.filter(model_id=model_id).first()
        taken = LanguageModel.objects.filter(model_id=alias).exists()
        if model is not None and not taken:
            ModelAlias.objects.get_or_create(alias=alias, defaults={"model": model})


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_modelalias")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
