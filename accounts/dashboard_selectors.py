"""Reads behind the dashboard: what the accounts and analytics selectors give, shaped
for the pages (periods, percentages, chart series), and the few reads they lack."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from accounts.models import Membership, Organization
from aqta.errors import not_found
from gateway import crypto, trace_ids
from gateway.analytics import selectors
from gateway.analytics.rollups import Bucket
from gateway.models import Trace, TraceContent

# Period: (heading, selector label, hours or days covered including the current one, bucket).
PERIODS: dict[str, tuple[str, str, int, Bucket]] = {
    "24h": ("Last 24 hours", "24 h", 24, "hour"),
    "7d": ("Last 7 days", "7 days", 7, "day"),
    "30d": ("Last 30 days", "30 days", 30, "day"),
}
DEFAULT_PERIOD = "7d"


def _percent(part: int | Decimal, whole: int | Decimal | None) -> int | None:
    """Share of a quota or budget used, capped at 100; None when there is no limit."""
    if whole is None:
        return None
    if not whole:  # a zero limit refuses every call: it is as used up as it gets
        return 100
    return min(100, int(Decimal(part) * 100 / Decimal(whole)))


def month_summary(*, organization: Organization) -> dict[str, Any]:
    """This month's usage against quota and budget, as the dashboard shows it."""
    status = selectors.month_status(organization=organization)
    return {
        "month": status,
        "month_label": datetime.strptime(status["month"], "%Y-%m").strftime("%B %Y"),
        "quota_percent": _percent(status["requests"], status["quota"]),
        "budget_percent": _percent(status["cost_eur"], status["budget_eur"]),
    }


def _window(period: str, now: datetime) -> tuple[datetime | date, datetime | date, Bucket]:
    _, _, count, bucket = PERIODS[period]
    if bucket == "hour":
        # Whole hours, the current one last (analytics counts every hour a range touches).
        first_hour = now.replace(minute=0, second=0, microsecond=0)
        return first_hour - timedelta(hours=count - 1), now, bucket
    # Whole UTC days, today last (date bounds are inclusive).
    today = now.astimezone(UTC).date()
    return today - timedelta(days=count - 1), today, bucket


def usage_summary(*, organization: Organization, period: str, now: datetime) -> dict[str, Any]:
    """Totals, breakdowns and chart series (JSON-ready) of one of the ``PERIODS``."""
    start, end, bucket = _window(period, now)
    series = selectors.usage_series(organization=organization, start=start, end=end, bucket=bucket)
    by_model = selectors.usage_by(
        organization=organization, start=start, end=end, dimension="model"
    )
    chart = {
        "bucket": bucket,
        "labels": [row["ts"] for row in series],
        **{
            name: [row[name] for row in series]
            for name in ("requests", "errors", "prompt_tokens", "completion_tokens")
        },
        # Decimals travel as strings: JSON numbers would round them.
        "cost_eur": [str(row["cost_eur"]) for row in series],
        "by_model": {
            "labels": [row["label"] or row["key"] for row in by_model],
            "cost_eur": [str(row["cost_eur"]) for row in by_model],
        },
    }
    totals = {
        "requests": sum(row["requests"] for row in series),
        "errors": sum(row["errors"] for row in series),
        "tokens": sum(row["prompt_tokens"] + row["completion_tokens"] for row in series),
        "cost_eur": sum((Decimal(row["cost_eur"]) for row in series), Decimal(0)),
    }
    return {
        "period_label": PERIODS[period][0],
        "totals": totals,
        "chart": chart,
        "by_model": by_model,
        "by_key": selectors.usage_by(
            organization=organization, start=start, end=end, dimension="key"
        ),
    }


def memberships_of(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user", "organization")
        .order_by("created_at")
    )


def membership_of(*, organization: Organization, membership_id: int) -> Membership:
    """A membership of ``organization``; another organisation's id is a 404."""
    membership = memberships_of(organization=organization).filter(pk=membership_id).first()
    if membership is None:
        raise not_found("No such member.")
    return membership


def trace_get(*, organization: Organization, trace_id: str | uuid.UUID) -> Trace:
    """A trace of ``organization`` by its id in any spelling (``tr_…``, a UUID); another
    organisation's id (or a malformed one) is a 404."""
    pk = trace_ids.parse(trace_id)
    if pk is None:
        raise not_found("No such trace.")
    trace = Trace.objects.filter(organization=organization, pk=pk).select_related("api_key").first()
    if trace is None:
        raise not_found("No such trace.")
    return trace


@dataclass(frozen=True)
class TraceContentView:
    request: str
    response: str
    error: str = ""


def _pretty(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


def trace_content_get(*, organization: Organization, trace: Trace) -> TraceContentView | None:
    """The decrypted prompt and completion, only while the organisation logs content.

    Turning content logging off hides what was stored earlier too: the switch is the
    organisation's statement of who may read prompts, not only of what is written.
    """
    if not organization.content_logging or trace.organization_id != organization.pk:
        return None
    content = TraceContent.objects.filter(trace=trace).first()
    if content is None:
        return None
    try:
        return TraceContentView(
            request=_pretty(crypto.decrypt(content.request_encrypted)),
            response=(
                crypto.decrypt(content.response_encrypted) if content.response_encrypted else ""
            ),
        )
    except ValueError:
        return TraceContentView(
            request="",
            response="",
            error="The stored content cannot be decrypted with the server's current keys.",
        )
