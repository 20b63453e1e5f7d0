"""The dashboard's compliance pages (Healthcare tier; the conventions of ``accounts.views``):

- Audit: the organisation's trail, its verification and its exports;
- Bias detection: the runs, starting one, and a run's findings group by group;
- Reports: the signed compliance reports, requesting one, and downloading it.

Members read; owners and admins start runs and request reports. The jobs run in Celery
workers, enqueued once the request's transaction commits, as the API does.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.authentication import request_user
from accounts.models import Organization, User
from accounts.views import Current, _form_error, _render, _require_manager, page
from aqta.errors import AqtaError, ErrorCode
from billing.selectors import models_for_tier
from compliance import selectors
from compliance.bias.api import DEFAULT, probe_set_get
from compliance.bias.passive import passive_run_create
from compliance.bias.probes import DEFAULT_PROBE_SET, ProbeSetError, probe_variants
from compliance.bias.runner import probe_run_create
from compliance.bias.stats import FOUR_FIFTHS
from compliance.forms import AuditFilterForm, PassiveRunForm, ProbeRunForm, ReportRequestForm
from compliance.models import AuditEvent, BiasMethod, BiasRun, ComplianceReport, ProbeSet
from compliance.records import audit_verification_record
from compliance.reports.api import report_file, report_get
from compliance.reports.generate import public_id, report_create
from compliance.verify import ChainReport
from healthcare.access import (
    audit_trail_require,
    bias_detection_require,
    compliance_reports_require,
)

EVENTS_PER_PAGE = 25
RUNS_PER_PAGE = 25
REPORTS_PER_PAGE = 25


def _actions(organization_scope: str) -> list[str]:
    events = AuditEvent.objects.filter(chain__scope=organization_scope)
    return sorted(set(events.values_list("action", flat=True).distinct()))


def _verify(request: HttpRequest, current: Current) -> list[ChainReport]:
    reports = selectors.organization_chains_verify(organization=current.organization)
    for report in reports:
        first = report.first_break
        audit_verification_record(
            request,
            "audit_chain" if report.kind == "audit" else "receipt_chain",
            report.scope,
            valid=report.valid,
            reason=first.reason if first else "",
            organization=current.organization,
        )
    return reports


@dataclass(frozen=True)
class Shown:
    """A chain's verification as the page shows it."""

    report: ChainReport
    checkpoint_at: datetime | None
    checkpoint_length: int | None


def _shown(reports: list[ChainReport]) -> list[Shown]:
    shown = []
    for report in reports:
        checkpoint = report.checkpoint or {}
        signed = checkpoint.get("signed_at")
        at = datetime.fromisoformat(signed) if isinstance(signed, str) else None
        shown.append(Shown(report, at, checkpoint.get("length")))
    return shown


def _rows(events: list[AuditEvent]) -> list[dict[str, Any]]:
    return [
        {"event": event, "details": json.dumps(event.data, ensure_ascii=False, sort_keys=True)}
        for event in events
    ]


def _exports(query: dict[str, str]) -> dict[str, str]:
    url = reverse("compliance:audit-trail")
    return {fmt: f"{url}?{urlencode({**query, 'format': fmt})}" for fmt in ("csv", "jsonl")}


@page("audit")
@require_http_methods(["GET", "POST"])
def audit(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    audit_trail_require(organization)
    scope = str(organization.pk)
    form = AuditFilterForm(request.GET or None, actions=_actions(scope))
    events = selectors.audit_event_list(organization=organization, filters=form.filters())
    page_obj = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context: dict[str, Any] = {
        "form": form,
        "page_obj": page_obj,
        "filtered": bool(form.filters()),
        "query": query.urlencode(),
        "exports": _exports(form.query()),
        "rows": _rows(list(page_obj.object_list)),
        "reports": _shown(_verify(request, current)) if request.method == "POST" else None,
    }
    return _render(request, current, "dashboard/audit.html", context)


# --- Bias detection ----------------------------------------------------------------------


def _model_choices(organization: Organization) -> list[tuple[str, str]]:
    models = sorted(models_for_tier(tier=organization.tier), key=lambda m: m.model_id)
    return [(m.model_id, m.display_name or m.model_id) for m in models]


def _probe_set_choices(organization: Organization) -> list[tuple[str, str]]:
    default = (DEFAULT, f"{DEFAULT_PROBE_SET['name']} (default)")
    own = ProbeSet.objects.filter(organization=organization).only("pk", "name")
    return [default, *((str(s.pk), s.name) for s in own)]


@dataclass
class RunForms:
    """The two ways to start a run; the one that was submitted is bound."""

    probe: ProbeRunForm
    passive: PassiveRunForm
    method: str = BiasMethod.PROBE

    @classmethod
    def build(cls, organization: Organization, data: Any = None) -> RunForms:
        method = (data or {}).get("method")
        method = method if method in BiasMethod.values else BiasMethod.PROBE
        sets = _probe_set_choices(organization)
        probe_data = data if data is not None and method == BiasMethod.PROBE else None
        passive_data = data if data is not None and method == BiasMethod.PASSIVE else None
        return cls(
            probe=ProbeRunForm(probe_data, models=_model_choices(organization), probe_sets=sets),
            passive=PassiveRunForm(passive_data, probe_sets=sets),
            method=method,
        )

    @property
    def submitted(self) -> ProbeRunForm | PassiveRunForm:
        return self.passive if self.method == BiasMethod.PASSIVE else self.probe


def _probe_start(organization: Organization, user: User, data: dict[str, Any]) -> BiasRun:
    definition, name, stored = probe_set_get(organization, data["probe_set"])
    try:
        calls = len(probe_variants(definition, data["repetitions"]))
    except ProbeSetError as error:
        raise AqtaError(str(error), code=ErrorCode.INVALID_VALUE, param="probe_set") from None
    if calls > settings.AQTA_BIAS_MAX_CALLS:
        raise AqtaError(
            f"This run would send {calls} calls; at most {settings.AQTA_BIAS_MAX_CALLS}.",
            code=ErrorCode.INVALID_VALUE,
            param="repetitions",
        )
    return probe_run_create(
        organization=organization,
        actor=user,
        actor_label=user.email,
        model=data["model"],
        definition=definition,
        probe_set_name=name,
        probe_set=stored,
        repetitions=data["repetitions"],
        budget_cap_eur=data["budget_cap_eur"],
        concurrency=data["concurrency"],
    )


def _passive_start(organization: Organization, user: User, data: dict[str, Any]) -> BiasRun:
    definition, name, stored = probe_set_get(organization, data["probe_set"])
    return passive_run_create(
        organization=organization,
        actor=user,
        actor_label=user.email,
        start=data["start"],
        end=data["end"],
        definition=definition,
        probe_set_name=name,
        probe_set=stored,
    )


def _run_start(request: HttpRequest, current: Current, forms: RunForms) -> BiasRun | None:
    """Start the submitted run and enqueue it; None with the form's errors set if not."""
    form = forms.submitted
    if not form.is_valid():
        return None
    start = _passive_start if forms.method == BiasMethod.PASSIVE else _probe_start
    try:
        run = start(current.organization, request_user(request), form.cleaned_data)
    except AqtaError as error:
        if error.status not in {400, 404}:
            raise
        _form_error(form, error)
        return None
    from compliance.tasks import bias_run

    transaction.on_commit(lambda: bias_run.delay(str(run.pk)))
    return run


@page("bias")
@require_http_methods(["GET", "POST"])
def bias(request: HttpRequest, current: Current) -> HttpResponse:
    """The runs, newest first; POST (owners and admins) starts one."""
    organization = current.organization
    bias_detection_require(organization)
    forms = RunForms.build(organization, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        refusal = _require_manager(request, current)
        if refusal is not None:
            return refusal
        run = _run_start(request, current, forms)
        if run is not None:
            messages.success(request, f"{run.method.capitalize()} run started.")
            return redirect("dashboard:bias-run", run_id=run.pk)
    runs = BiasRun.objects.filter(organization=organization).order_by("-created_at", "-id")
    page_obj = Paginator(runs.defer("definition"), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "forms": forms,
        "page_obj": page_obj,
        "query": "",
        "polling": any(not run.finished for run in page_obj),
    }
    return _render(request, current, "compliance/bias.html", context)


def percent(value: Any) -> str:
    """A proportion as a percentage with one decimal ("62.5 %"), or an em dash."""
    number = _finite(value)
    return "—" if number is None else f"{100 * number:.1f} %"


def ratio_text(value: Any) -> str:
    """Two decimals, four when two would round across the four-fifths line (as the
    findings' reason sentences print it)."""
    number = _finite(value)
    if number is None:
        return "—"
    text = f"{number:.2f}"
    return text if (float(text) < FOUR_FIFTHS) == (number < FOUR_FIFTHS) else f"{number:.4f}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _label(definition: Any, *path: str) -> str:
    """A label from the run's probe set (``attributes.<a>.label`` ...), else the id."""
    node = definition
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    label = node.get("label") if isinstance(node, dict) else None
    return str(label) if label else str(path[-1])


def _group_row(row: dict[str, Any], definition: Any, attribute: str) -> dict[str, Any]:
    ratio = _finite(row.get("impact_ratio"))
    mean = _finite(row.get("mean"))
    low, high = percent(row.get("ci_low")), percent(row.get("ci_high"))
    return {
        "group": str(row.get("group", "")),
        "label": _label(definition, "attributes", attribute, "levels", str(row.get("group"))),
        "n": row.get("n") if isinstance(row.get("n"), int) else None,
        "rate": percent(row.get("rate")),
        "mean": "—" if mean is None else f"{mean:.3g}",
        "ci": "—" if "—" in (low, high) else f"{low[:-2]} \N{EN DASH} {high}",
        "ratio": ratio_text(ratio),
        "below": ratio is not None and ratio < FOUR_FIFTHS,
    }


STATUS_BADGES = {"flagged": "bad", "inconclusive": "warn", "not_flagged": "ok"}
STATUS_LABELS = {"flagged": "Flagged", "inconclusive": "Inconclusive", "not_flagged": "Not flagged"}


def _card(finding: dict[str, Any], definition: Any) -> dict[str, Any]:
    attribute, outcome = str(finding.get("attribute")), str(finding.get("outcome"))
    status = str(finding.get("status"))
    groups = finding.get("groups")
    rows = [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []
    return {
        "attribute": attribute,
        "outcome": outcome,
        "title": f"{_label(definition, 'attributes', attribute)} · "
        f"{_label(definition, 'outcomes', outcome)}",
        "status": status,
        "badge": STATUS_BADGES.get(status, ""),
        "status_label": STATUS_LABELS.get(status, status),
        "reason": str(finding.get("reason") or ""),
        "continuous": finding.get("kind") == "continuous",
        "paired": finding.get("design") == "paired",
        "rows": [_group_row(row, definition, attribute) for row in rows],
    }


def _rank(card: dict[str, Any]) -> int:
    order = list(STATUS_BADGES)
    return order.index(card["status"]) if card["status"] in order else len(order)


def finding_cards(findings: Any, definition: Any) -> list[dict[str, Any]]:
    """The run's findings as the run page shows them: flagged first, then inconclusive,
    then not flagged; anything that is not a finding is left out."""
    stored = findings if isinstance(findings, list) else []
    cards = [_card(finding, definition) for finding in stored if isinstance(finding, dict)]
    return sorted(cards, key=_rank)


@page("bias")
def bias_run_detail(request: HttpRequest, current: Current, run_id: uuid.UUID) -> HttpResponse:
    """One run: its progress while it runs, then a card per finding."""
    bias_detection_require(current.organization)
    run = (
        BiasRun.objects.select_related("api_key")
        .filter(organization=current.organization, pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such bias detection run.")
    context = {
        "run": run,
        "cards": finding_cards(run.findings, run.definition),
        "poll_url": reverse("compliance:bias-run", args=[run.pk]),
        "polling": not run.finished,
    }
    return _render(request, current, "compliance/bias_run.html", context)


# --- Compliance reports ------------------------------------------------------------------


@page("reports")
@require_http_methods(["GET", "POST"])
def reports(request: HttpRequest, current: Current) -> HttpResponse:
    """The reports, newest first; POST (owners and admins) requests one."""
    organization = current.organization
    compliance_reports_require(organization)
    form = ReportRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        refusal = _require_manager(request, current)
        if refusal is not None:
            return refusal
        if form.is_valid():
            report = _report_request(request, current, form)
            messages.success(request, "Report requested; it is listed below.")
            return redirect(f"{reverse('dashboard:reports')}#report-{public_id(report)}")
    rows = (
        ComplianceReport.objects.filter(organization=organization)
        .defer("pdf", "document")
        .order_by("-created_at", "-id")
    )
    page_obj = Paginator(rows, REPORTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page_obj": page_obj,
        "query": "",
        "rows": [(public_id(r), r) for r in page_obj],
        "polling": any(not r.finished for r in page_obj),
    }
    return _render(request, current, "compliance/reports.html", context)


def _report_request(
    request: HttpRequest, current: Current, form: ReportRequestForm
) -> ComplianceReport:
    user = request_user(request)
    start, end = form.cleaned_data["period"]
    report = report_create(
        organization=current.organization,
        actor=user,
        actor_label=user.email,
        start=start,
        end=end,
        format=form.cleaned_data["format"],
    )
    from compliance.tasks import report_generate

    transaction.on_commit(lambda: report_generate.delay(str(report.pk)))
    return report


@page("reports")
def report_download(request: HttpRequest, current: Current, reference: str) -> HttpResponse:
    """The finished report file (PDF or signed JSON); back to the list while it is not."""
    compliance_reports_require(current.organization)
    report = report_get(current.organization, reference)
    try:
        return report_file(report)
    except AqtaError as error:
        if error.code != ErrorCode.CONFLICT:
            raise
        messages.warning(request, error.message)
        return redirect("dashboard:reports")
