"""Dashboard forms. They check shapes; the services check the rules (tier limits, roles)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django import forms
from django.utils import timezone

from accounts.dashboard_services import loop_guard_limits
from accounts.models import ApiKey, Organization, Role
from billing.models import LanguageModel, Provider
from gateway.models import TraceStatus


class DashboardForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def _choices(self, name: str) -> forms.ChoiceField:
        """The choice field ``name`` of this form instance, to set its choices."""
        field = self.fields[name]
        if not isinstance(field, forms.ChoiceField):
            raise TypeError(f"{name} is not a choice field")
        return field


class ApiKeyCreateForm(DashboardForm):
    name = forms.CharField(
        max_length=100,
        widget=forms.TextInput(
            attrs={"placeholder": "e.g. production backend", "data-testid": "key-name"}
        ),
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        help_text="Optional. The key stops working at the start of this day (UTC).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000_000,
        label="Rate limit (requests/minute)",
        help_text="Optional. Empty = the organisation's limit.",
    )
    monthly_budget_eur = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        label="Monthly budget (EUR)",
        help_text="Optional. Calls are refused once the key has spent this much in a month.",
    )
    allowed_models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Optional. None ticked = every model the tier allows.",
    )

    def __init__(self, *args: Any, models: list[LanguageModel], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("allowed_models").choices = [
            (m.model_id, m.display_name or m.model_id) for m in models
        ]

    def clean_expires_on(self) -> date | None:
        value: date | None = self.cleaned_data["expires_on"]
        if value is not None and value <= timezone.now().date():
            raise forms.ValidationError("Pick a day after today.")
        return value

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        expires = data["expires_on"]
        return {
            "name": data["name"],
            "expires_at": datetime.combine(expires, time.min, tzinfo=UTC) if expires else None,
            "rate_limit_per_minute": data["rate_limit_per_minute"],
            "monthly_budget_eur": data["monthly_budget_eur"],
            "allowed_models": data["allowed_models"],
        }


class OrganizationSettingsForm(DashboardForm):
    name = forms.CharField(max_length=120, label="Organisation name")
    monthly_budget_eur = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        label="Monthly budget (EUR)",
        help_text="Calls are refused once the organisation has spent this much in a "
        "calendar month (UTC). Empty = no budget.",
    )
    content_logging = forms.BooleanField(
        required=False,
        label="Log prompts and completions",
        help_text="Stored encrypted and shown on each trace. Off: only metadata is kept.",
    )
    response_cache = forms.BooleanField(
        required=False,
        label="Response cache",
        help_text="Answer identical non-streaming requests from the cache (EUR 0 per hit).",
    )
    retention_days = forms.IntegerField(required=False, min_value=1, label="Trace retention (days)")
    loop_guard_threshold = forms.IntegerField(
        required=False, min_value=1, label="Loop guard: identical requests allowed"
    )
    loop_guard_window_seconds = forms.IntegerField(
        required=False, min_value=1, label="Loop guard: window (seconds)"
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial", {name: getattr(organization, name) for name in self.base_fields}
        )
        super().__init__(*args, **kwargs)
        tier = organization.tier
        limits = loop_guard_limits(tier=tier)
        self._bound("retention_days", 1, tier.max_retention_days)
        self.fields["retention_days"].help_text = (
            f"Empty = the {tier.name} tier's {tier.retention_days} days "
            f"(at most {tier.max_retention_days})."
        )
        self._bound("loop_guard_threshold", limits.threshold_min, limits.threshold_max)
        self.fields["loop_guard_threshold"].help_text = (
            f"Empty = the tier's {tier.loop_guard_threshold}. "
            f"Allowed: {limits.threshold_min} to {limits.threshold_max}; lower is stricter."
        )
        self._bound("loop_guard_window_seconds", limits.window_min, limits.window_max)
        self.fields["loop_guard_window_seconds"].help_text = (
            f"Empty = the tier's {tier.loop_guard_window_seconds} s. "
            f"Allowed: {limits.window_min} to {limits.window_max}; longer is stricter."
        )

    def _bound(self, name: str, low: int, high: int) -> None:
        # Only browser hints: the service enforces the limits (and says why).
        self.fields[name].widget.attrs.update({"min": low, "max": high})


class MemberAddForm(DashboardForm):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"placeholder": "colleague@example.com"})
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, can_grant_owner: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not can_grant_owner:
            self._choices("role").choices = [c for c in Role.choices if c[0] != Role.OWNER]


class MemberRoleForm(DashboardForm):
    role = forms.ChoiceField(choices=Role.choices)


class OrganizationSwitchForm(forms.Form):
    organization_id = forms.UUIDField()
    next = forms.CharField(required=False, max_length=2000)


class TraceFilterForm(DashboardForm):
    """Filters of the traces list, read from the query string."""

    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    api_key = forms.ChoiceField(required=False, label="Key")
    model = forms.CharField(
        required=False, max_length=120, widget=forms.TextInput({"list": "model-options"})
    )
    # Free text: a trace names the deployment that answered, which may not be a provider id.
    provider = forms.CharField(
        required=False, max_length=40, widget=forms.TextInput({"list": "provider-options"})
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *TraceStatus.choices])
    error_code = forms.CharField(required=False, max_length=40, label="Error code")

    def __init__(
        self, *args: Any, api_keys: list[ApiKey], models: list[LanguageModel], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_suggestions = [m.model_id for m in models]
        self.provider_suggestions = Provider.values
        self._choices("api_key").choices = [("", "Any")] + [
            (str(k.pk), f"{k.name} ({k.masked})") for k in api_keys
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return data

    def filters(self) -> dict[str, Any]:
        """The valid, non-empty filters (dates are whole UTC days, both ends included)."""
        if not self.is_valid():
            return {}
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
