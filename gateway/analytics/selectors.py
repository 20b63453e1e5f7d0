"""Reads for the analytics API and the dashboard: usage aggregates and series from the
rollups (never by scanning traces), the month's quota and budget status, trace lists.

Times are UTC; bounds are as in ``gateway.analytics.rollups``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing.models import LanguageModel, Provider
from gateway.analytics.rollups import (
    CENT,
    MIN_PROJECTION_ELAPSED,
    Bound,
    Bucket,
    Dimension,
    GroupBy,
    Totals,
    day_range,
    hour_range,
    instant,
    midnight,
    rollup_sums,
    summed,
)
from gateway.models import (
    DailyRollup,
    HourlyRollup,
    Trace,
    UsageCounter,
)

# Rollup rows to sum, and the column to group them on.
Rollups = QuerySet[DailyRollup] | QuerySet[HourlyRollup]
Source = tuple[Rollups, str]


def _scoped(rollups: Rollups, organization: Organization, filters: dict[str, Any]) -> Rollups:
    rollups = rollups.filter(organization=organization).order_by()
    if filters.get("api_key_id"):
        rollups = rollups.filter(api_key_id=filters["api_key_id"])
    for name in ("model", "provider"):
        if filters.get(name):
            rollups = rollups.filter(**{name: filters[name]})
    return rollups


def _sources(
    organization: Organization, start: Bound, end: Bound, by: GroupBy, filters: dict[str, Any]
) -> list[Source]:
    """(rows, column to group on) covering the range: hourly rows for hours, daily rows for
    days, and for other groupings daily rows for the whole days plus hourly rows for the
    partial days at either end (the fewest rows that are exact to the hour)."""
    if by == "day":
        first_day, stop_day = day_range(start, end)
        daily = DailyRollup.objects.filter(day__gte=first_day, day__lt=stop_day)
        return [(_scoped(daily, organization, filters), "day")]
    first, stop = hour_range(start, end)
    column = {"hour": "hour", "model": "model", "key": "api_key_id", "provider": "provider"}[by]
    hourly = HourlyRollup.objects
    whole_first = first.date() + timedelta(days=0 if first == midnight(first.date()) else 1)
    whole_stop = stop.date()
    if by == "hour" or whole_first >= whole_stop:
        return [
            (_scoped(hourly.filter(hour__gte=first, hour__lt=stop), organization, filters), column)
        ]
    daily = DailyRollup.objects.filter(day__gte=whole_first, day__lt=whole_stop)
    head = hourly.filter(hour__gte=first, hour__lt=midnight(whole_first))
    tail = hourly.filter(hour__gte=midnight(whole_stop), hour__lt=stop)
    parts: list[Rollups] = [daily, head, tail]
    return [(_scoped(qs, organization, filters), column) for qs in parts]


def _collect(sources: Iterable[Source], *, latency: bool) -> dict[Any, Totals]:
    """Totals per group value (the database sums; histograms only if ``latency``)."""
    totals: dict[Any, Totals] = defaultdict(Totals)
    for rows, column in sources:
        for row in rows.values(column).annotate(**rollup_sums(latency=latency)):
            totals[row[column]].add(summed(row).fields())
    return totals


def _labels(organization: Organization, by: GroupBy, keys: Iterable) -> dict[Any, str]:
    keys = list(keys)
    if by == "key":
        api_keys = ApiKey.objects.filter(organization=organization, pk__in=[k for k in keys if k])
        masked = {k.pk: f"{k.name} ({k.masked})" for k in api_keys.only("name", "prefix", "last4")}
        return {k: masked.get(k, "Deleted key") for k in keys}
    if by == "model":
        models = LanguageModel.objects.filter(model_id__in=keys).exclude(display_name="")
        names = dict(models.values_list("model_id", "display_name"))
        return {k: names.get(k) or k or "(none)" for k in keys}
    if by == "provider":
        choices = dict(Provider.choices)
        return {k: choices.get(k) or k or "(none)" for k in keys}
    if by == "hour":
        return {k: k.astimezone(UTC).strftime("%Y-%m-%d %H:00") for k in keys}
    return {k: k.isoformat() for k in keys}


def _time_axis(start: Bound, end: Bound, by: GroupBy) -> list[date]:
    """The hours (datetimes) or days (dates) of the range, in order."""
    first: date
    stop: date
    if by == "hour":
        first, stop = hour_range(start, end)
        step = timedelta(hours=1)
    else:
        first, stop = day_range(start, end)
        step = timedelta(days=1)
    axis: list[date] = []
    while first < stop:
        axis.append(first)
        first += step
    return axis


def _key_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def usage_aggregates(
    *,
    organization: Organization,
    start: Bound,
    end: Bound,
    group_by: GroupBy,
    api_key_id: Any = None,
    model: str | None = None,
    provider: str | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """Usage per hour, day, model, key or provider, and in total, with latency percentiles
    (unless ``latency`` is False: then ``p50_ms``/``p95_ms`` are None and it is cheaper).

    ``{"total": stats, "groups": [{"key", "label", **stats}]}`` where stats are
    ``requests``, ``errors``, ``blocked``, ``error_rate``, ``prompt_tokens``,
    ``completion_tokens``, ``tokens``, ``cost_eur`` (Decimal), ``p50_ms``, ``p95_ms``.
    ``key`` is the ISO time, model id, key id or provider; hour and day groups also have
    ``ts`` and come in order, empty ones included; the others by requests, most first.
    """
    filters = {"api_key_id": api_key_id, "model": model, "provider": provider}
    totals = _collect(_sources(organization, start, end, group_by, filters), latency=latency)
    if group_by in ("hour", "day"):
        keys: list = _time_axis(start, end, group_by)
    else:
        keys = sorted(totals, key=lambda k: (-totals[k].requests, _key_text(k)))
    labels = _labels(organization, group_by, keys)
    overall = Totals()
    groups = []
    for value in keys:
        group = totals.get(value, Totals())
        overall.add(group.fields())
        row = {"key": _key_text(value), "label": labels[value]}
        if group_by in ("hour", "day"):
            row["ts"] = value
        groups.append({**row, **group.stats()})
    return {"total": overall.stats(), "groups": groups}


def usage_series(
    *,
    organization: Organization,
    start: Bound,
    end: Bound,
    bucket: Bucket,
    api_key_id: Any = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Every hour or day of the range, in order (empty ones with zeros and no percentiles):
    ``{"ts", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_eur",
    "p50_ms", "p95_ms"}``; ``ts`` is an aware datetime for hours, a date for days."""
    rows = usage_aggregates(
        organization=organization,
        start=start,
        end=end,
        group_by=bucket,
        api_key_id=api_key_id,
        model=model,
    )["groups"]
    keys = ("ts", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_eur")
    return [{**{k: r[k] for k in keys}, "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"]} for r in rows]


def usage_by(
    *, organization: Organization, start: Bound, end: Bound, dimension: Dimension
) -> list[dict[str, Any]]:
    """Usage per model, key, provider (costliest first) or day (in order, every day):
    ``{"key", "label", "requests", "errors", "tokens", "cost_eur"}``."""
    rows = usage_aggregates(
        organization=organization, start=start, end=end, group_by=dimension, latency=False
    )["groups"]
    if dimension != "day":
        rows.sort(key=lambda r: (-r["cost_eur"], -r["requests"], r["key"]))
    keys = ("key", "label", "requests", "errors", "tokens", "cost_eur")
    return [{k: r[k] for k in keys} for r in rows]


def month_status(*, organization: Organization, now: datetime | None = None) -> dict[str, Any]:
    """This calendar month (UTC) so far against the organisation's quota and budget, and
    its linear projection to the month's end.

    ``requests`` counts admitted requests, as the quota does. Month-to-date figures are the
    larger of the rollups and the live usage counters: the rollups lag by up to a refresh,
    and a short retention may have purged days of this month from them.
    """
    now = instant(now or timezone.now())
    first = now.date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    rolled = DailyRollup.objects.filter(
        organization=organization, day__gte=first, day__lt=following
    ).aggregate(requests=Sum("requests"), blocked=Sum("blocked"), cost=Sum("cost_eur"))
    counted = UsageCounter.objects.filter(organization=organization, month=first).aggregate(
        requests=Sum("requests"), cost=Sum("cost_eur")
    )
    requests = max((rolled["requests"] or 0) - (rolled["blocked"] or 0), counted["requests"] or 0)
    cost = max(rolled["cost"] or Decimal(0), counted["cost"] or Decimal(0))
    span = midnight(following) - midnight(first)
    elapsed = min(max(now - midnight(first), MIN_PROJECTION_ELAPSED), span)
    fraction = Decimal(elapsed.total_seconds()) / Decimal(span.total_seconds())
    tier = organization.tier
    quota = organization.monthly_request_quota
    return {
        "month": first.strftime("%Y-%m"),
        "requests": requests,
        "quota": quota if quota is not None else tier.monthly_request_quota,
        "cost_eur": cost,
        "budget_eur": organization.monthly_budget_eur,
        "projected_cost_eur": (cost / fraction).quantize(CENT),
        "projected_requests": int((requests / fraction).to_integral_value()),
        "rate_limit_per_minute": organization.rate_limit_per_minute or tier.rate_limit_per_minute,
    }


# --- Traces -----------------------------------------------------------------------------------

TRACE_FILTERS = ("api_key", "model", "provider", "status", "error_code")


def trace_list(*, organization: Organization, filters: dict[str, Any]) -> QuerySet[Trace]:
    """The organisation's traces, newest first (ties broken by id, for keyset pages).

    ``filters``: ``start`` (inclusive) and ``end`` (exclusive) as dates or datetimes,
    ``api_key`` (id), ``model``, ``provider``, ``status``, ``error_code``; None or empty
    means no filter. A key id of another organisation matches nothing.
    """
    traces = Trace.objects.filter(organization=organization)
    if filters.get("start"):
        traces = traces.filter(created_at__gte=instant(filters["start"]))
    if filters.get("end"):
        traces = traces.filter(created_at__lt=instant(filters["end"], end=True))
    for name in TRACE_FILTERS:
        if filters.get(name):
            column = "api_key_id" if name == "api_key" else name
            traces = traces.filter(**{column: filters[name]})
    return traces.order_by("-created_at", "-id")


def trace_page_after(
    traces: QuerySet[Trace], *, created_at: datetime, trace_id: Any
) -> QuerySet[Trace]:
    """The traces after (older than) the given one in ``trace_list`` order."""
    # The redundant `lte` bound lets the index range start at the cursor.
    return traces.filter(
        Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=trace_id),
        created_at__lte=created_at,
    )
