"""The dashboard's receipt filters, read from the query string."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.forms import DashboardForm
from accounts.models import ApiKey
from healthcare.models import ReceiptOutcome
from healthcare.receipts import MAX_TEXT

HIGH_RISK_CHOICES = [("", "Any"), ("true", "High-risk only"), ("false", "Not high-risk")]


class ReceiptFilterForm(DashboardForm):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    outcome = forms.ChoiceField(required=False, choices=[("", "Any"), *ReceiptOutcome.choices])
    model = forms.CharField(
        required=False, max_length=MAX_TEXT, widget=forms.TextInput({"list": "model-options"})
    )
    key = forms.ChoiceField(required=False, label="Key")
    high_risk = forms.ChoiceField(required=False, label="High-risk", choices=HIGH_RISK_CHOICES)

    def __init__(
        self, *args: Any, api_keys: list[ApiKey], models: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_suggestions = models
        self._choices("key").choices = [("", "Any")] + [
            (str(k.pk), f"{k.name} ({k.masked})") for k in api_keys
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return data

    def query(self) -> dict[str, str]:
        """The valid, non-empty filters as the receipts API takes them (also for the
        export links): dates as ISO days, both ends included."""
        if not self.is_bound or not self.is_valid():
            return {}
        return {
            name: value.isoformat() if hasattr(value, "isoformat") else str(value)
            for name, value in self.cleaned_data.items()
            if value not in (None, "")
        }

    def filters(self) -> dict[str, Any]:
        """The same, for ``healthcare.selectors.receipt_list``."""
        filters: dict[str, Any] = dict(self.cleaned_data) if self.query() else {}
        filters = {k: v for k, v in filters.items() if v not in (None, "")}
        if "high_risk" in filters:
            filters["high_risk"] = filters["high_risk"] == "true"
        return filters
