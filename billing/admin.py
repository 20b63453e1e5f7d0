from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from aqta.errors import AqtaError
from billing.models import (
    PRICE_FIELDS,
    ExchangeRate,
    LanguageModel,
    ModelAlias,
    ModelPrice,
    Tier,
)
from billing.services import exchange_rate_set, model_price_set, period_start_check


class ModelPriceForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("model") and data.get("valid_from"):
            try:
                period_start_check(data["model"].prices.all(), data["valid_from"])
            except AqtaError as error:
                self.add_error("valid_from", error.message)
        return data


class ExchangeRateForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("valid_from"):
            rows = ExchangeRate.objects.filter(base="USD", quote="EUR")
            try:
                period_start_check(rows, data["valid_from"])
            except AqtaError as error:
                self.add_error("valid_from", error.message)
        return data


class DatedPeriodAdmin(admin.ModelAdmin):
    """Prices and rates are history: a new one is added (closing the open one through the
    service); an existing period is never edited or deleted."""

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


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
    """Read-only price history; new prices are added on the Model prices page."""

    model = ModelPrice
    extra = 0
    readonly_fields = (*PRICE_FIELDS, "valid_from", "valid_to")
    fields = readonly_fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


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
class ModelPriceAdmin(DatedPeriodAdmin):
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
    fields = ["model", *PRICE_FIELDS, "valid_from"]
    form = ModelPriceForm

    def save_model(
        self, request: HttpRequest, obj: ModelPrice, form: forms.ModelForm, change: bool
    ) -> None:
        prices = {name: form.cleaned_data.get(name) for name in PRICE_FIELDS}
        saved = model_price_set(model=obj.model, valid_from=obj.valid_from, **prices)
        obj.pk = saved.pk


@admin.register(ExchangeRate)
class ExchangeRateAdmin(DatedPeriodAdmin):
    list_display = ["base", "quote", "rate", "valid_from", "valid_to"]
    list_filter = ["base", "quote"]
    search_fields = ["base", "quote"]
    date_hierarchy = "valid_from"
    fields = ["rate", "valid_from"]
    form = ExchangeRateForm

    def save_model(
        self, request: HttpRequest, obj: ExchangeRate, form: forms.ModelForm, change: bool
    ) -> None:
        obj.pk = exchange_rate_set(rate=obj.rate, valid_from=obj.valid_from).pk


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "model"]
    search_fields = ["alias", "model__model_id"]
    autocomplete_fields = ["model"]
