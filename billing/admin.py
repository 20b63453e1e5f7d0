from __future__ import annotations

from django.contrib import admin

from billing.models import ExchangeRate, LanguageModel, ModelPrice, Tier


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "monthly_price_eur",
        "monthly_request_quota",
        "rate_limit_per_minute",
        "all_models",
        "analytics",
        "receipts",
        "retention_days",
    ]
    list_filter = ["all_models", "analytics", "audit_trail", "receipts"]
    search_fields = ["name", "slug"]
    ordering = ["sort_order"]


class ModelPriceInline(admin.TabularInline):
    model = ModelPrice
    extra = 0
    fields = [
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cached_input_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "request_fee_low_usd",
        "valid_from",
        "valid_to",
    ]


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "provider",
        "cost_effective",
        "context_window",
        "max_output_tokens",
        "is_active",
    ]
    list_filter = ["provider", "cost_effective", "is_active"]
    search_fields = ["model_id", "display_name"]
    inlines = [ModelPriceInline]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cached_input_usd_per_mtok",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["model__provider", ("valid_to", admin.EmptyFieldListFilter)]
    search_fields = ["model__model_id"]
    list_select_related = ["model"]
    date_hierarchy = "valid_from"


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    list_display = ["base", "quote", "rate", "valid_from", "valid_to"]
    list_filter = ["base", "quote"]
    search_fields = ["base", "quote"]
    date_hierarchy = "valid_from"
