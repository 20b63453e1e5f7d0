"""Reading an organisation's audit trail: filters, pages and exports (API and dashboard)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypedDict

from django.db.models import QuerySet

from accounts.models import Organization
from compliance.models import AuditEvent
from compliance.verify import ChainReport, audit_chain_report, receipts_chain_report
from healthcare.models import Receipt, ReceiptChain

EXPORT_CHUNK = 1_000


class AuditFilters(TypedDict, total=False):
    start: datetime
    end: datetime
    action: str  # exact, or a prefix ending in "*": "auth.*"
    actor: str  # the actor's email or API key label, any case
    target: str


def audit_event_list(*, organization: Organization, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The organisation's events matching ``filters``, newest first (by sequence)."""
    events = AuditEvent.objects.filter(chain__scope=str(organization.pk))
    if "start" in filters:
        events = events.filter(created_at__gte=filters["start"])
    if "end" in filters:
        events = events.filter(created_at__lt=filters["end"])
    action = filters.get("action")
    if action and action.endswith("*"):
        events = events.filter(action__startswith=action[:-1])
    elif action:
        events = events.filter(action=action)
    if actor := filters.get("actor"):
        events = events.filter(actor_label__iexact=actor)
    if target := filters.get("target"):
        events = events.filter(target=target)
    return events.order_by("-sequence")


def audit_page(
    *, organization: Organization, filters: AuditFilters, limit: int, before: int | None
) -> tuple[list[AuditEvent], bool]:
    """One page, newest first, of events before sequence ``before``; and whether more."""
    events = audit_event_list(organization=organization, filters=filters)
    if before is not None:
        events = events.filter(sequence__lt=before)
    page = list(events[: limit + 1])
    return page[:limit], len(page) > limit


def audit_export_events(
    *, organization: Organization, filters: AuditFilters
) -> Iterator[list[AuditEvent]]:
    """Every matching event in chain order (oldest first), a chunk at a time: an export of
    any size in constant memory."""
    events = audit_event_list(organization=organization, filters=filters).order_by("sequence")
    after = 0
    while True:
        chunk = list(events.filter(sequence__gt=after)[:EXPORT_CHUNK])
        if chunk:
            yield chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        after = chunk[-1].sequence


def event_values(event: AuditEvent, scope: str) -> dict[str, Any]:
    """An event as the API and the exports show it: everything its hash covers (see
    docs/audit.md, so anyone can recompute it) and the chain fields."""
    return {
        "id": event.pk,
        "scope": scope,
        "sequence": event.sequence,
        "created_at": event.created_at.isoformat(),
        "action": event.action,
        "actor": event.actor_label,
        "target": event.target,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def has_receipt_chain(organization: Organization) -> bool:
    return (
        ReceiptChain.objects.filter(organization=organization).exists()
        or Receipt.objects.filter(organization=organization).exists()
    )


def organization_chains_verify(*, organization: Organization) -> list[ChainReport]:
    """The organisation's audit chain and, if it has receipts, its receipt chain."""
    reports = [audit_chain_report(scope=str(organization.pk))]
    if has_receipt_chain(organization):
        reports.append(receipts_chain_report(organization.pk))
    return reports


def verification_summary(reports: list[ChainReport]) -> dict[str, Any]:
    return {
        "valid": all(report.valid for report in reports),
        "chains": [report.as_dict() for report in reports],
    }
