from __future__ import annotations

from django import forms
from django.contrib import admin

from aqta.admin import ReadOnlyAdmin
from gateway import crypto
from gateway.models import GatewayEvent, ProviderEndpoint, Trace, UsageCounter


class ProviderEndpointForm(forms.ModelForm):
    base_url = forms.URLField(assume_scheme="https", max_length=200)
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderEndpoint
        fields = ["name", "provider", "base_url", "api_key", "is_default", "is_active"]

    def save(self, commit: bool = True) -> ProviderEndpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("api_key"):
            endpoint.api_key_encrypted = crypto.encrypt(self.cleaned_data["api_key"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(ProviderEndpoint)
class ProviderEndpointAdmin(admin.ModelAdmin):
    """Provider credentials: write-only, encrypted at rest, never displayed."""

    form = ProviderEndpointForm
    list_display = ["name", "provider", "base_url", "is_default", "is_active", "has_key"]
    list_filter = ["provider", "is_default", "is_active"]
    search_fields = ["name", "base_url"]

    @admin.display(boolean=True, description="Key set")
    def has_key(self, obj: ProviderEndpoint) -> bool:
        return bool(obj.api_key_encrypted)


@admin.register(Trace)
class TraceAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "model",
        "provider",
        "status",
        "http_status",
        "error_code",
        "cost_eur",
        "latency_ms",
        "stream",
        "cached",
        "loop_detected",
    ]
    list_filter = ["status", "stream", "cached", "loop_detected", "provider", "http_status"]
    search_fields = ["id", "model", "organization__name", "error_code"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["month", "organization", "api_key", "requests", "completion_tokens", "cost_eur"]
    list_filter = ["month"]
    search_fields = ["organization__name"]
    list_select_related = ["organization", "api_key"]


@admin.register(GatewayEvent)
class GatewayEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "organization", "trace", "delivered_at"]
    list_filter = ["kind"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]
