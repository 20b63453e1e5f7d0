"""The compliance pages' forms: the audit filters (read from the query string, as the
API's), starting a bias detection run, and requesting a compliance report. Their limits
are the API's (``compliance.bias.api``, ``compliance.reports.api``)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone

from accounts.forms import DashboardForm
from compliance.bias.api import PASSIVE_DEFAULT_DAYS
from compliance.bias.api import PERIOD_MAX_DAYS as BIAS_PERIOD_MAX_DAYS
from compliance.bias.probes import MAX_REPETITIONS
from compliance.models import ReportFormat
from compliance.reports.api import MONTH
from compliance.reports.api import PERIOD_MAX_DAYS as REPORT_PERIOD_MAX_DAYS
from compliance.selectors import AuditFilters
from gateway.analytics.rollups import instant

Choices = list[tuple[str, str]]


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


def _date_input() -> forms.DateInput:
    # ISO, whatever the locale: the only value format a date input takes.
    return forms.DateInput({"type": "date"}, format="%Y-%m-%d")


class ProbeRunForm(DashboardForm):
    """A counterfactual probe run: every variant of a probe set sent to one model."""

    model = forms.ChoiceField(help_text="A model this organisation may call.")
    probe_set = forms.ChoiceField(label="Probe set")
    repetitions = forms.IntegerField(
        min_value=1,
        max_value=MAX_REPETITIONS,
        initial=3,
    )
    budget_cap_eur = forms.DecimalField(
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        initial=Decimal("5.00"),
        label="Budget cap (EUR)",
    )
    concurrency = forms.IntegerField(min_value=1, max_value=16, initial=4)

    def __init__(self, *args: Any, models: Choices, probe_sets: Choices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("model").choices = models
        self._choices("probe_set").choices = probe_sets


class PassiveRunForm(DashboardForm):
    """Passive monitoring: the groups of a probe set looked for in a period's traffic."""

    probe_set = forms.ChoiceField(
        label="Probe set", help_text="Its attributes and outcomes are looked for."
    )
    start = forms.DateField(label="From", widget=_date_input())
    end = forms.DateField(label="To", widget=_date_input())

    def __init__(self, *args: Any, probe_sets: Choices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("probe_set").choices = probe_sets
        today = timezone.now().date()
        self.fields["end"].initial = today
        self.fields["start"].initial = today - timedelta(days=PASSIVE_DEFAULT_DAYS - 1)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                self.add_error("end", "The end date is before the start date.")
            elif (end - start).days + 1 > BIAS_PERIOD_MAX_DAYS:
                self.add_error("end", f"At most {BIAS_PERIOD_MAX_DAYS} days.")
        return data


def month_bounds(text: str) -> tuple[date, date] | None:
    """The first and last day of ``"YYYY-MM"``, or None if it is not such a month."""
    match = MONTH.fullmatch(text)
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or not 2000 <= year <= 2999:
        return None
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def last_month(today: date) -> str:
    previous = today.replace(day=1) - timedelta(days=1)
    return f"{previous:%Y-%m}"


MONTHS_OFFERED = 36


def month_choices(today: date) -> Choices:
    """This month (so far) and the 36 before it, newest first; other periods are given
    as days."""
    choices: Choices = [("", "Other period: give the days")]
    first = today.replace(day=1)
    for n in range(MONTHS_OFFERED + 1):
        label = f"{first:%B %Y}" + (" (so far)" if n == 0 else "")
        choices.append((f"{first:%Y-%m}", label))
        first = (first - timedelta(days=1)).replace(day=1)
    return choices


class ReportRequestForm(DashboardForm):
    """A report of a calendar month, or of any start and end day (both included)."""

    month = forms.ChoiceField(required=False)
    start = forms.DateField(required=False, label="Or from", widget=_date_input())
    end = forms.DateField(required=False, label="To", widget=_date_input())
    format = forms.ChoiceField(choices=ReportFormat.choices, initial=ReportFormat.PDF)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        today = timezone.now().date()
        self._choices("month").choices = month_choices(today)
        self.fields["month"].initial = last_month(today)

    def clean_month(self) -> tuple[date, date] | None:
        text: str = self.cleaned_data["month"]
        return month_bounds(text) if text else None

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        month, start, end = data.get("month"), data.get("start"), data.get("end")
        if month and (start or end):
            raise forms.ValidationError(
                "Give a month or the days, not both: pick “Other period” to give the days."
            )
        if month:
            start, end = month
        elif not (start and end):
            raise forms.ValidationError("Give a month, or both a start and an end day.")
        if start > end:
            self.add_error("end", "The end date is before the start date.")
        elif start > timezone.now().date():
            self.add_error("month" if month else "start", "The period has not begun.")
        elif (end - start).days + 1 > REPORT_PERIOD_MAX_DAYS:
            self.add_error("end", f"At most {REPORT_PERIOD_MAX_DAYS} days.")
        data["period"] = (start, end)
        return data
