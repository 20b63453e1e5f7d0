"""Analytics: hourly and daily rollups of traces (the reads are in ``selectors``).

Aggregates are read from the rollups only, never by scanning traces: ``rollups_refresh``
(a Celery beat task, every minute) keeps them current. Only ``selectors.trace_list`` reads
traces, a page at a time along the ``(organization, -created_at)`` index.

Times are UTC. A ``datetime`` bound is an instant (start inclusive, end exclusive); a
``date`` bound is a whole calendar day (both ends inclusive). Hourly figures cover every
hour the range touches, daily figures every day it touches.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, Min, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncDate, TruncHour
from django.utils import timezone

from gateway.models import (
    LATENCY_BUCKET_EDGES_MS,
    DailyRollup,
    HourlyRollup,
    RollupWatermark,
    Trace,
    TraceStatus,
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


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def instant(value: Bound, *, end: bool = False) -> datetime:
    """A bound as an instant in UTC; a date is its midnight, or the next one for an end."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    return midnight(value + timedelta(days=1) if end else value)


def hour_range(start: Bound, end: Bound) -> tuple[datetime, datetime]:
    """[first hour, hour after the last) touched by the range."""
    first, stop = instant(start), instant(end, end=True)
    last = floor_hour(stop)
    return floor_hour(first), (last if last == stop else last + timedelta(hours=1))


def day_range(start: Bound, end: Bound) -> tuple[date, date]:
    """[first day, day after the last) touched by the range."""
    first, stop = instant(start), instant(end, end=True)
    last = stop.date()
    return first.date(), (last if midnight(last) == stop else last + timedelta(days=1))


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
    hourly = HourlyRollup.objects.filter(hour__gte=midnight(first)).order_by()
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
