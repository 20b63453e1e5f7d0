"""The dashboard's Audit page: the organisation's trail, its verification and its exports
(Healthcare tier; the conventions of ``accounts.views``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.views import Current, _render, page
from compliance import selectors
from compliance.forms import AuditFilterForm
from compliance.models import AuditEvent
from compliance.records import audit_verification_record
from compliance.verify import ChainReport
from healthcare.access import audit_trail_require

EVENTS_PER_PAGE = 25


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
