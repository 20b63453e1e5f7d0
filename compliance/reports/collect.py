"""What a compliance report says: every figure, collected from the stored records of one
organisation and one period (UTC days, both included). The result is plain JSON (money
as decimal strings), which is what is signed; the PDF only renders it (docs/reports.md).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Organization
from compliance.models import AuditEvent, BiasRun, JobStatus
from compliance.verify import audit_chain_report, receipts_chain_report
from gateway.models import GatewayEvent, Trace, TraceStatus

CHANGES_MAX = 500
HIGH_RISK_RECENT = 25
BUDGET_POLICIES = ("budget_guard",)
QUOTA_POLICIES = ("quota",)
# Audit actions that are not changes of keys, members or settings (reads, exports, jobs).
NOT_CHANGES = ("audit_trail.", "receipts.", "bias_run.", "report.")


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)).quantize(Decimal('0.000001'))}"


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[first instant of ``start``, first instant after ``end``) in UTC."""
    utc = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=utc),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=utc),
    )


def _traces(organization: Organization, start: datetime, end: datetime) -> QuerySet[Trace]:
    return Trace.objects.filter(
        organization=organization, created_at__gte=start, created_at__lt=end
    )


def _usage(traces: QuerySet[Trace]) -> dict[str, Any]:
    totals = traces.aggregate(
        requests=Count("pk"),
        errors=Count("pk", filter=Q(http_status__gte=500) | Q(status=TraceStatus.ERROR)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        cost=Sum("cost_eur"),
    )
    by_model = (
        traces.values("model", "provider")
        .annotate(
            requests=Count("pk"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost_eur"),
        )
        .order_by("-requests", "model", "provider")
    )
    by_day = (
        traces.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(requests=Count("pk"), cost=Sum("cost_eur"))
        .order_by("day")
    )
    return {
        "requests": totals["requests"],
        "errors": totals["errors"],
        "prompt_tokens": totals["prompt_tokens"] or 0,
        "completion_tokens": totals["completion_tokens"] or 0,
        "cost_eur": _money(totals["cost"]),
        "by_model": [
            {
                "model": row["model"] or "(none)",
                "provider": row["provider"] or "",
                "requests": row["requests"],
                "prompt_tokens": row["prompt_tokens"] or 0,
                "completion_tokens": row["completion_tokens"] or 0,
                "cost_eur": _money(row["cost"]),
            }
            for row in by_model
        ],
        "by_day": [
            {
                "day": row["day"].isoformat(),
                "requests": row["requests"],
                "cost_eur": _money(row["cost"]),
            }
            for row in by_day
        ],
    }


def _week_of(moment: datetime) -> tuple[str, date]:
    day = moment.date()
    year, week, weekday = day.isocalendar()
    return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)


def _policy(
    organization: Organization, traces: QuerySet[Trace], start: datetime, end: datetime
) -> dict[str, Any]:
    weeks: dict[str, dict[str, Any]] = {}

    def week(moment: datetime) -> dict[str, Any]:
        name, monday = _week_of(moment)
        return weeks.setdefault(
            name,
            {
                "week": name,
                "start": monday.isoformat(),
                "requests": 0,
                "blocked": 0,
                "suppressed": 0,
                "loop_events": 0,
                "budget_events": 0,
                "quota_events": 0,
                "high_risk": 0,
            },
        )

    rows = traces.values_list("created_at", "status", "policy", "high_risk")
    for created_at, status, policy, high_risk in rows.iterator(chunk_size=2000):
        row = week(created_at)
        row["requests"] += 1
        row["blocked"] += status == TraceStatus.BLOCKED
        row["suppressed"] += status == TraceStatus.SUPPRESSED
        row["budget_events"] += status == TraceStatus.BLOCKED and policy in BUDGET_POLICIES
        row["quota_events"] += status == TraceStatus.BLOCKED and policy in QUOTA_POLICIES
        row["high_risk"] += bool(high_risk)
    loops = GatewayEvent.objects.filter(
        organization=organization, kind="loop_detected", created_at__gte=start, created_at__lt=end
    ).values_list("created_at", flat=True)
    for created_at in loops.iterator(chunk_size=2000):
        week(created_at)["loop_events"] += 1
    by_policy = (
        traces.filter(status__in=[TraceStatus.BLOCKED, TraceStatus.SUPPRESSED])
        .values("policy")
        .annotate(blocked=Count("pk"))
        .order_by("-blocked", "policy")
    )
    return {
        "weeks": [weeks[name] for name in sorted(weeks)],
        "by_policy": [
            {"policy": row["policy"] or "(none)", "blocked": row["blocked"]} for row in by_policy
        ],
    }


def _checkpoint(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "sequence": summary["length"],
        "hash": summary["last_hash"],
        "signed_at": summary["signed_at"],
        "key_id": summary["key_id"],
    }


def _chain(report: Any, checked_at: str) -> dict[str, Any]:
    first = report.first_break
    return {
        "valid": report.valid,
        "entries": report.length,
        "checked": report.checked,
        "checked_at": checked_at,
        "reason": first.reason if first else "",
        "checkpoint": _checkpoint(report.checkpoint),
        "breaks": [{"sequence": b.sequence, "reason": b.reason} for b in report.breaks[:50]],
    }


def _verification(organization: Organization) -> dict[str, Any]:
    checked_at = timezone.now().isoformat()
    result = {"audit": _chain(audit_chain_report(scope=str(organization.pk)), checked_at)}
    if organization.tier.receipts:
        result["receipts"] = _chain(receipts_chain_report(organization.pk), checked_at)
    return result


def _bias(organization: Organization, start: datetime, end: datetime) -> dict[str, Any]:
    runs = BiasRun.objects.filter(
        organization=organization,
        status=JobStatus.COMPLETED,
        finished_at__gte=start,
        finished_at__lt=end,
    ).order_by("finished_at")
    return {
        "runs": [
            {
                "id": str(run.pk),
                "kind": run.method,
                "model": run.model,
                "probe_set": run.probe_set_name,
                "status": run.status,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "calls": run.calls_done,
                "cost_eur": _money(run.spent_eur),
                "stopped_reason": run.stopped_reason,
                "findings": run.findings,
            }
            for run in runs
        ]
    }


def _summary_of(event: AuditEvent) -> str:
    data = event.data if isinstance(event.data, dict) else {}
    name = data.get("name") or data.get("email") or data.get("key") or ""
    changed = data.get("changes") or data.get("fields")
    text = event.action.replace("_", " ").replace(".", " ")
    if name:
        text += f" '{name}'"
    if isinstance(changed, dict):
        text += ": " + ", ".join(sorted(str(k) for k in changed))[:200]
    elif isinstance(changed, list):
        text += ": " + ", ".join(str(k) for k in changed)[:200]
    return text


def _changes(organization: Organization, start: datetime, end: datetime) -> tuple[list, int]:
    events = AuditEvent.objects.filter(
        organization=organization, created_at__gte=start, created_at__lt=end
    )
    for prefix in NOT_CHANGES:
        events = events.exclude(action__startswith=prefix)
    events = events.order_by("created_at", "id")
    total = events.count()
    return [
        {
            "at": event.created_at.isoformat(),
            "actor": event.actor_label,
            "action": event.action,
            "target": event.target,
            "summary": _summary_of(event),
        }
        for event in events[:CHANGES_MAX]
    ], total


def _retention(organization: Organization) -> dict[str, Any]:
    trace_days = organization.retention_days or organization.tier.retention_days
    return {
        "trace_days": trace_days,
        "content_logging": organization.content_logging,
        "content_days": trace_days if organization.content_logging else 0,
        "audit_days": settings.AQTA_AUDIT_RETENTION_DAYS,
        "receipt_days": settings.AQTA_AUDIT_RETENTION_DAYS if organization.tier.receipts else 0,
    }


def _high_risk(
    organization: Organization, traces: QuerySet[Trace], start: datetime, end: datetime
) -> dict[str, Any]:
    flagged = traces.filter(high_risk=True)
    blocked = flagged.filter(status=TraceStatus.BLOCKED).count()
    decisions = flagged.count()
    events = GatewayEvent.objects.filter(
        organization=organization,
        kind="high_risk_detected",
        created_at__gte=start,
        created_at__lt=end,
    ).order_by("-created_at")
    by_rule: dict[tuple[str, str], int] = defaultdict(int)
    recent: list[dict[str, Any]] = []
    for event in events.iterator(chunk_size=2000):
        data = event.data if isinstance(event.data, dict) else {}
        rules = [r for r in data.get("rules", []) if isinstance(r, dict)]
        for rule in rules:
            by_rule[(str(rule.get("name", "")), str(rule.get("action", "")))] += 1
        if len(recent) < HIGH_RISK_RECENT:
            recent.append(
                {
                    "at": event.created_at.isoformat(),
                    "trace_id": str(event.trace_id or ""),
                    "rules": sorted({str(r.get("name", "")) for r in rules}),
                    "decision": "BLOCKED" if data.get("blocked") else "ALLOWED",
                }
            )
    return {
        "decisions": decisions,
        "blocked": blocked,
        "flagged": decisions - blocked,
        "by_rule": [
            {"rule": rule, "action": action, "count": count}
            for (rule, action), count in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "recent": recent,
    }


def report_collect(
    *, organization: Organization, start: date, end: date, report_id: str, generator: str
) -> dict[str, Any]:
    """The report's content (what is signed)."""
    first, after = period_bounds(start, end)
    traces = _traces(organization, first, after)
    usage = _usage(traces)
    changes, changes_total = _changes(organization, first, after)
    bias = _bias(organization, first, after)
    high_risk = _high_risk(organization, traces, first, after)
    return {
        "id": report_id,
        "organization": {
            "id": str(organization.pk),
            "name": organization.name,
            "tier": organization.tier.name,
        },
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "generated_at": timezone.now().isoformat(),
        "generator": generator,
        "empty": usage["requests"] == 0 and not changes and not bias["runs"],
        "usage": usage,
        "policy": _policy(organization, traces, first, after),
        "verification": _verification(organization),
        "bias": bias,
        "changes": changes,
        "changes_total": changes_total,
        "retention": _retention(organization),
        "high_risk": high_risk,
    }
