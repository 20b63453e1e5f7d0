"""The audit page's filters (read from the query string, as the API's)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms

from accounts.forms import DashboardForm
from compliance.selectors import AuditFilters
from gateway.analytics.rollups import instant


class AuditFilterForm(DashboardForm):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    action = forms.CharField(
        required=False,
        max_length=65,
        help_text="Or a prefix: auth.*",
        widget=forms.TextInput({"list": "action-options"}),
    )
    actor = forms.CharField(required=False, max_length=254, help_text="Email or api_key:…")
    target = forms.CharField(required=False, max_length=200)

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action_suggestions = actions

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return data

    def query(self) -> dict[str, str]:
        """The valid, non-empty filters as query parameters (the API takes the same)."""
        if not self.is_bound or not self.is_valid():
            return {}
        values = self.cleaned_data.items()
        return {k: (v.isoformat() if k in ("start", "end") else v) for k, v in values if v}

    def filters(self) -> AuditFilters:
        """The same filters for the selectors: dates are whole UTC days, both included."""
        if not self.is_bound or not self.is_valid():
            return {}
        data = self.cleaned_data
        filters: AuditFilters = {}
        if data.get("start"):
            filters["start"] = instant(data["start"])
        if data.get("end") and data["end"] < date.max:  # the last day has no next one
            filters["end"] = instant(data["end"], end=True)
        for name in ("action", "actor", "target"):
            if data.get(name):
                filters[name] = data[name]
        return filters
