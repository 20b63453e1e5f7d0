"""Analytics: hourly and daily rollups of traces, and the reads built on them.

The API (``gateway/analytics_api.py``) and the dashboard call the same functions here.
Aggregates are read from the rollups only, never by scanning traces: ``rollups_refresh``
(a Celery beat task, every minute) keeps them current. Only ``trace_list`` reads traces,
a page at a time along the ``(organization, -created_at)`` index.

Times are UTC. A ``datetime`` bound is an instant (start inclusive, end exclusive); a
``date`` bound is a whole calendar day (both ends inclusive). Hourly figures cover every
hour the range touches, daily figures every day it touches.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncDate, TruncHour
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing.models import LanguageModel, Provider
from gateway.models import (
    LATENCY_BUCKET_EDGES_MS,
    DailyRollup,
    HourlyRollup,
    RollupWatermark,
    Trace,
    TraceStatus,
    UsageCounter,
)

logger = logging.getLogger("aqta.gateway.analytics")

# Traces reach the database through the buffer, after the call they record: every refresh
# recomputes this much before the previous run's start so late ones are counted.
LATE_ARRIVAL = timedelta(hours=2)
# A first run (or a `since` far back) is done in windows of this size, each one query.
BACKFILL_WINDOW = timedelta(days=7)
WATERMARK = "rollups"
BUCKETS = len(LATENCY_BUCKET_EDGES_MS) + 1
# A projection from the first minutes of a month would be noise: elapse at least this much.
MIN_PROJECTION_ELAPSED = timedelta(hours=1)
CENT = Decimal("0.01")

Bucket = Literal["hour", "day"]
Dimension = Literal["model", "key", "provider", "day"]
GroupBy = Literal["hour", "day", "model", "key", "provider"]
Bound = date | datetime


# --- Time ---------------------------------------------------------------------------------


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def instant(value: Bound, *, end: bool = False) -> datetime:
    """A bound as an instant in UTC; a date is its midnight, or the next one for an end."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    return _midnight(value + timedelta(days=1) if end else value)


def _hour_range(start: Bound, end: Bound) -> tuple[datetime, datetime]:
    """[first hour, hour after the last) touched by the range."""
    first, stop = instant(start), instant(end, end=True)
    last = floor_hour(stop)
    return floor_hour(first), (last if last == stop else last + timedelta(hours=1))


def _day_range(start: Bound, end: Bound) -> tuple[date, date]:
    """[first day, day after the last) touched by the range."""
    first, stop = instant(start), instant(end, end=True)
    last = stop.date()
    return first.date(), (last if _midnight(last) == stop else last + timedelta(days=1))


# --- Latency histogram ----------------------------------------------------------------------


def latency_bucket(latency_ms: int) -> int:
    return bisect.bisect_right(LATENCY_BUCKET_EDGES_MS, latency_ms)


def _bucket_filter(index: int) -> Q:
    edges = LATENCY_BUCKET_EDGES_MS
    q = Q()
    if index > 0:
        q &= Q(latency_ms__gte=edges[index - 1])
    if index < len(edges):
        q &= Q(latency_ms__lt=edges[index])
    return q


def percentile(histogram: list[int], fraction: float) -> int | None:
    """The latency (ms) below which ``fraction`` of the requests fall, interpolated linearly
    inside the bucket that holds it: exact to the bucket's width."""
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = LATENCY_BUCKET_EDGES_MS[index - 1] if index else 0
            if index >= len(LATENCY_BUCKET_EDGES_MS):
                return low  # the open top bucket: all we know is "at least"
            high = LATENCY_BUCKET_EDGES_MS[index]
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return None


# --- Refreshing the rollups ---------------------------------------------------------------

SUMS = ("requests", "errors", "blocked", "prompt_tokens", "completion_tokens", "cost_eur")
GROUP = ("organization_id", "api_key_id", "model", "provider")


def rollups_refresh(*, since: datetime | None = None) -> dict[str, Any]:
    """Recompute the rollups of every hour from ``since`` on (default: two hours before
    the previous run started; on the first run, the first trace), then of the days those
    hours belong to. Recomputing replaces rows, so running it twice changes nothing.

    One refresh runs at a time: the watermark row is locked for its duration.
    """
    started = timezone.now()
    with transaction.atomic():
        mark, _ = RollupWatermark.objects.select_for_update().get_or_create(name=WATERMARK)
        if since is None and mark.refreshed_at is not None:
            since = mark.refreshed_at - LATE_ARRIVAL
        if since is None:
            since = Trace.objects.aggregate(first=Min("created_at"))["first"]
        hours = days = 0
        if since is not None:
            since = floor_hour(instant(since))
            hours = _refresh_hours(since)
            days = _refresh_days(since.date())
        mark.refreshed_from, mark.refreshed_at = since, started
        mark.save()
    elapsed = (timezone.now() - started).total_seconds()
    logger.info(
        "rollups refreshed from %s: %d hourly, %d daily rows in %.2fs", since, hours, days, elapsed
    )
    return {"since": since, "hourly_rows": hours, "daily_rows": days, "seconds": elapsed}


def rollups_refresh_if_stale(*, max_age: timedelta = timedelta(minutes=1)) -> bool:
    """Refresh unless a refresh started less than ``max_age`` ago; True if it ran."""
    marks = RollupWatermark.objects.filter(name=WATERMARK)
    last = marks.values_list("refreshed_at", flat=True).first()
    if last is not None and timezone.now() - last < max_age:
        return False
    rollups_refresh()
    return True


def rollups_refresh_without_beat() -> None:
    """Where no Celery beat runs (tasks run eagerly: the embedded mode), every read of the
    rollups (the analytics API, the dashboard's usage page) refreshes them if the last
    refresh is a minute old, so a call shows within about a minute, as the beat task would
    make it (a steady-state refresh costs milliseconds)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        rollups_refresh_if_stale()


def _windows(start: datetime) -> Iterator[tuple[datetime, datetime | None]]:
    """[start, now) in BACKFILL_WINDOW steps; the last window is open, for traces stamped
    ahead of this clock."""
    horizon = timezone.now()
    while start + BACKFILL_WINDOW < horizon:
        yield start, start + BACKFILL_WINDOW
        start += BACKFILL_WINDOW
    yield start, None


def _refresh_hours(since: datetime) -> int:
    written = 0
    for start, end in _windows(since):
        stale = HourlyRollup.objects.filter(hour__gte=start)
        if end is not None:
            stale = stale.filter(hour__lt=end)
        stale.delete()
        rows = [HourlyRollup(**values) for values in _aggregate_traces(start, end)]
        HourlyRollup.objects.bulk_create(rows, batch_size=2000)
        written += len(rows)
    return written


def _aggregate_traces(start: datetime, end: datetime | None) -> Iterator[dict[str, Any]]:
    traces = Trace.objects.filter(created_at__gte=start)
    if end is not None:
        traces = traces.filter(created_at__lt=end)
    not_passed = ~Q(status=TraceStatus.PASSED)
    buckets = {f"b{i}": Count("pk", filter=_bucket_filter(i)) for i in range(BUCKETS)}
    rows = (
        traces.order_by()
        .annotate(hour_start=TruncHour("created_at", tzinfo=UTC))
        .values(*GROUP, "hour_start")
        .annotate(
            n_requests=Count("pk"),
            n_errors=Count("pk", filter=Q(http_status__gte=400) | not_passed),
            n_blocked=Count("pk", filter=not_passed),
            n_prompt_tokens=Sum("prompt_tokens"),
            n_completion_tokens=Sum("completion_tokens"),
            n_cost_eur=Sum("cost_eur"),
            n_latency_ms_sum=Sum("latency_ms"),
            **buckets,
        )
    )
    for row in rows:
        yield {
            **{name: row[name] for name in GROUP},
            "hour": row["hour_start"],
            **{name: row[f"n_{name}"] or 0 for name in (*SUMS, "latency_ms_sum")},
            "latency_histogram": [row[f"b{i}"] for i in range(BUCKETS)],
        }


def _refresh_days(first: date) -> int:
    DailyRollup.objects.filter(day__gte=first).delete()
    hourly = HourlyRollup.objects.filter(hour__gte=_midnight(first)).order_by()
    grouped = (
        hourly.annotate(utc_day=TruncDate("hour", tzinfo=UTC))
        .values(*GROUP, "utc_day")
        .annotate(**rollup_sums(latency=True))
    )
    rows = [
        DailyRollup(
            **{name: row[name] for name in GROUP}, day=row["utc_day"], **summed(row).fields()
        )
        for row in grouped
    ]
    DailyRollup.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def rollup_sums(*, latency: bool) -> dict[str, Any]:
    """Aggregates summing rollup rows; with ``latency``, their histograms element-wise (in
    the database, so rows are never decoded here)."""
    sums: dict[str, Any] = {f"s_{name}": Sum(name) for name in (*SUMS, "latency_ms_sum")}
    if latency:
        for i in range(BUCKETS):
            count = Cast(KT(f"latency_histogram__{i}"), BigIntegerField())
            sums[f"h{i}"] = Sum(count)
    return sums


def summed(row: dict[str, Any]) -> Totals:
    """The Totals of a row aggregated with ``rollup_sums``."""
    total = Totals()
    total.add({name: row[f"s_{name}"] for name in (*SUMS, "latency_ms_sum")})
    if "h0" in row:
        total.latency_histogram = [row[f"h{i}"] or 0 for i in range(BUCKETS)]
    return total


# --- Reading the rollups --------------------------------------------------------------------


@dataclass
class Totals:
    """Sums of rollup rows, with their merged latency histogram."""

    requests: int = 0
    errors: int = 0
    blocked: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_eur: Decimal = Decimal(0)
    latency_ms_sum: int = 0
    latency_histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, row: dict[str, Any]) -> None:
        self.requests += row["requests"] or 0
        self.errors += row["errors"] or 0
        self.blocked += row["blocked"] or 0
        self.prompt_tokens += row["prompt_tokens"] or 0
        self.completion_tokens += row["completion_tokens"] or 0
        self.cost_eur += row["cost_eur"] or 0
        self.latency_ms_sum += row["latency_ms_sum"] or 0
        histogram = row.get("latency_histogram")
        if histogram:
            mine = self.latency_histogram
            for index, count in enumerate(histogram[:BUCKETS]):
                mine[index] += count

    def fields(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in (*SUMS, "latency_ms_sum", "latency_histogram")
        }

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "blocked": self.blocked,
            "error_rate": round(self.errors / self.requests, 4) if self.requests else 0.0,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.prompt_tokens + self.completion_tokens,
            "cost_eur": self.cost_eur,
            "p50_ms": percentile(self.latency_histogram, 0.50),
            "p95_ms": percentile(self.latency_histogram, 0.95),
        }


def _scoped(rollups: QuerySet, organization: Organization, filters: dict[str, Any]) -> QuerySet:
    rollups = rollups.filter(organization=organization).order_by()
    if filters.get("api_key_id"):
        rollups = rollups.filter(api_key_id=filters["api_key_id"])
    for name in ("model", "provider"):
        if filters.get(name):
            rollups = rollups.filter(**{name: filters[name]})
    return rollups


def _sources(organization: Organization, start: Bound, end: Bound, by: GroupBy, filters: dict):
    """(rows, column to group on) covering the range: hourly rows for hours, daily rows for
    days, and for other groupings daily rows for the whole days plus hourly rows for the
    partial days at either end (the fewest rows that are exact to the hour)."""
    if by == "day":
        first_day, stop_day = _day_range(start, end)
        daily = DailyRollup.objects.filter(day__gte=first_day, day__lt=stop_day)
        return [(_scoped(daily, organization, filters), "day")]
    first, stop = _hour_range(start, end)
    column = {"hour": "hour", "model": "model", "key": "api_key_id", "provider": "provider"}[by]
    hourly = HourlyRollup.objects
    whole_first = first.date() + timedelta(days=0 if first == _midnight(first.date()) else 1)
    whole_stop = stop.date()
    if by == "hour" or whole_first >= whole_stop:
        return [
            (_scoped(hourly.filter(hour__gte=first, hour__lt=stop), organization, filters), column)
        ]
    daily = DailyRollup.objects.filter(day__gte=whole_first, day__lt=whole_stop)
    head = hourly.filter(hour__gte=first, hour__lt=_midnight(whole_first))
    tail = hourly.filter(hour__gte=_midnight(whole_stop), hour__lt=stop)
    return [(_scoped(qs, organization, filters), column) for qs in (daily, head, tail)]


def _collect(sources, *, latency: bool) -> dict[Any, Totals]:
    """Totals per group value (the database sums; histograms only if ``latency``)."""
    totals: dict[Any, Totals] = defaultdict(Totals)
    for rows, column in sources:
        for row in rows.values(column).annotate(**rollup_sums(latency=latency)):
            totals[row[column]].add(summed(row).fields())
    return totals


def _labels(organization: Organization, by: GroupBy, keys: Iterable) -> dict[Any, str]:
    keys = list(keys)
    if by == "key":
        found = ApiKey.objects.filter(organization=organization, pk__in=[k for k in keys if k])
        names = {k.pk: f"{k.name} ({k.masked})" for k in found.only("name", "prefix", "last4")}
        return {k: names.get(k, "Deleted key") for k in keys}
    if by == "model":
        found = LanguageModel.objects.filter(model_id__in=keys).exclude(display_name="")
        names = dict(found.values_list("model_id", "display_name"))
        return {k: names.get(k) or k or "(none)" for k in keys}
    if by == "provider":
        choices = dict(Provider.choices)
        return {k: choices.get(k) or k or "(none)" for k in keys}
    if by == "hour":
        return {k: k.astimezone(UTC).strftime("%Y-%m-%d %H:00") for k in keys}
    return {k: k.isoformat() for k in keys}


def _time_axis(start: Bound, end: Bound, by: GroupBy) -> list:
    if by == "hour":
        first, stop = _hour_range(start, end)
        step = timedelta(hours=1)
    else:
        first, stop = _day_range(start, end)
        step = timedelta(days=1)
    axis = []
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
    span = _midnight(following) - _midnight(first)
    elapsed = min(max(now - _midnight(first), MIN_PROJECTION_ELAPSED), span)
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


def trace_page_after(traces: QuerySet[Trace], *, created_at: datetime, trace_id: Any) -> QuerySet:
    """The traces after (older than) the given one in ``trace_list`` order."""
    # The redundant `lte` bound lets the index range start at the cursor.
    return traces.filter(
        Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=trace_id),
        created_at__lte=created_at,
    )
