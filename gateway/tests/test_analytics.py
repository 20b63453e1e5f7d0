"""Rollups (hourly and daily) against the raw traces, and the selectors built on them."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from gateway.analytics import rollups, selectors
from gateway.models import LATENCY_BUCKET_EDGES_MS, DailyRollup, HourlyRollup, Trace, UsageCounter
from gateway.tasks import rollups_refresh as rollups_refresh_task
from gateway.tests.analytics_data import make_trace, store

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 16, 0, 0, tzinfo=UTC)  # half of March (15 of 31 days) has passed
T = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def key(api_key):
    return api_key[0]


@pytest.fixture
def second_key(org, user):
    return api_key_create(organization=org, created_by=user, name="batch jobs")[0]


@pytest.fixture
def other_org():
    stranger = UserFactory.create()
    other = organization_create(name="Other", owner=stranger, tier=tier_get(slug="pro"))
    return other, api_key_create(organization=other, created_by=stranger, name="theirs")[0]


def mixed_traffic(org, key, second_key) -> list[Trace]:
    """Two hours, two keys, two models, with failures, refusals and a loop suppression."""
    rng = random.Random(7)
    traces = []
    for i in range(240):
        when = T + timedelta(minutes=i // 2)  # 10:00 to 11:59
        kind = i % 12
        fields = {
            "latency_ms": rng.randint(5, 4000),
            "prompt_tokens": rng.randint(1, 900),
            "completion_tokens": rng.randint(0, 400),
            "cost_eur": Decimal(rng.randint(1, 99_999)) / Decimal(10**8),
            "model": "gpt-4o" if i % 3 else "claude-3-haiku-20240307",
            "provider": "openai" if i % 3 else "anthropic",
        }
        if kind == 0:
            fields.update(http_status=502, error_code="provider_error")
        elif kind == 1:
            fields.update(status="blocked", http_status=429, error_code="rate_limit_exceeded")
            fields.update(cost_eur=Decimal(0), prompt_tokens=0, completion_tokens=0)
        elif kind == 2:
            fields.update(status="suppressed", http_status=429, error_code="loop_detected")
            fields.update(cost_eur=Decimal(0), prompt_tokens=0, completion_tokens=0)
        traces.append(make_trace(org, key if i % 2 else second_key, when, **fields))
    return store(*traces)


def expected_hourly(traces: list[Trace]) -> dict[tuple, dict]:
    groups: dict[tuple, dict] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "blocked": 0, "prompt_tokens": 0,
                 "completion_tokens": 0, "cost_eur": Decimal(0), "latency_ms_sum": 0}
    )  # fmt: skip
    for t in traces:
        hour = t.created_at.replace(minute=0, second=0, microsecond=0)
        row = groups[(t.organization_id, t.api_key_id, t.model, t.provider, hour)]
        row["requests"] += 1
        row["errors"] += t.http_status >= 400 or t.status != "passed"
        row["blocked"] += t.status != "passed"
        row["prompt_tokens"] += t.prompt_tokens
        row["completion_tokens"] += t.completion_tokens
        row["cost_eur"] += t.cost_eur
        row["latency_ms_sum"] += t.latency_ms
    return groups


def hourly_rows() -> dict[tuple, dict]:
    fields = ("requests", "errors", "blocked", "prompt_tokens", "completion_tokens", "cost_eur")
    return {
        (r.organization_id, r.api_key_id, r.model, r.provider, r.hour): {
            **{f: getattr(r, f) for f in fields},
            "latency_ms_sum": r.latency_ms_sum,
        }
        for r in HourlyRollup.objects.all()
    }


def snapshot() -> list[tuple]:
    hourly = HourlyRollup.objects.order_by("hour", "model", "api_key_id").values_list(
        "organization_id", "api_key_id", "model", "hour", "requests", "cost_eur",
        "latency_histogram",
    )  # fmt: skip
    daily = DailyRollup.objects.order_by("day", "model", "api_key_id").values_list(
        "organization_id", "api_key_id", "model", "day", "requests", "cost_eur",
        "latency_histogram",
    )  # fmt: skip
    return [*hourly, *daily]


# --- Refreshing ---------------------------------------------------------------------------


def test_hourly_rollups_match_the_raw_traces(org, key, second_key):
    traces = mixed_traffic(org, key, second_key)
    rollups.rollups_refresh()

    assert hourly_rows() == expected_hourly(traces)
    for row in HourlyRollup.objects.all():
        assert sum(row.latency_histogram) == row.requests
    assert HourlyRollup.objects.filter(hour=T + timedelta(hours=1)).exists()


def test_daily_rollups_are_the_sums_of_their_hours(org, key, second_key):
    mixed_traffic(org, key, second_key)
    rollups.rollups_refresh()

    for day in DailyRollup.objects.all():
        hours = HourlyRollup.objects.filter(
            organization=day.organization, api_key=day.api_key, model=day.model, hour__date=day.day
        )
        assert day.requests == sum(h.requests for h in hours)
        assert day.errors == sum(h.errors for h in hours)
        assert day.cost_eur == sum(h.cost_eur for h in hours)
        assert day.latency_histogram == [
            sum(c) for c in zip(*(h.latency_histogram for h in hours), strict=True)
        ]
    assert sum(DailyRollup.objects.values_list("requests", flat=True)) == 240


def test_percentiles_fall_within_the_bucket_of_the_true_value(org, key):
    rng = random.Random(3)
    latencies = [int(rng.lognormvariate(6.2, 0.8)) for _ in range(1000)]
    store(*(make_trace(org, key, T, latency_ms=ms) for ms in latencies))
    rollups.rollups_refresh()

    ordered = sorted(latencies)
    [row] = selectors.usage_series(
        organization=org, start=T, end=T + timedelta(hours=1), bucket="hour"
    )
    for estimate, fraction in ((row["p50_ms"], 0.50), (row["p95_ms"], 0.95)):
        true = ordered[int(fraction * len(ordered)) - 1]
        bucket = rollups.latency_bucket(true)
        low = LATENCY_BUCKET_EDGES_MS[bucket - 1] if bucket else 0
        assert low <= estimate <= LATENCY_BUCKET_EDGES_MS[bucket]


def test_percentile_of_an_empty_histogram_is_none_and_the_top_bucket_is_open():
    assert rollups.percentile([0] * rollups.BUCKETS, 0.5) is None
    only_slow = [0] * (rollups.BUCKETS - 1) + [4]
    assert rollups.percentile(only_slow, 0.95) == LATENCY_BUCKET_EDGES_MS[-1]


def test_refreshing_twice_changes_nothing(org, key, second_key):
    mixed_traffic(org, key, second_key)
    rollups.rollups_refresh()
    first = snapshot()

    rollups.rollups_refresh()
    rollups.rollups_refresh(since=T - timedelta(days=3))

    assert snapshot() == first
    assert sum(HourlyRollup.objects.values_list("requests", flat=True)) == 240


def test_a_trace_arriving_late_is_counted_by_the_next_refresh(org, key):
    store(make_trace(org, key, NOW - timedelta(hours=3)))
    rollups.rollups_refresh()
    # Written by the flusher after that run, stamped with the time of its call.
    store(make_trace(org, key, NOW - timedelta(minutes=50), cost_eur=Decimal("0.5")))

    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        rollups.rollups_refresh()

    assert sum(HourlyRollup.objects.values_list("requests", flat=True)) == 2
    assert DailyRollup.objects.get().cost_eur == Decimal("0.50010000")


def test_a_refresh_recomputes_only_the_recent_hours(org, key):
    store(make_trace(org, key, NOW - timedelta(days=2)))
    rollups.rollups_refresh()
    # Much later than the late-arrival window: only an explicit rebuild sees it.
    store(make_trace(org, key, NOW - timedelta(days=2)))

    rollups.rollups_refresh()
    assert HourlyRollup.objects.get().requests == 1
    rollups.rollups_refresh(since=NOW - timedelta(days=3))
    assert HourlyRollup.objects.get().requests == 2


def test_the_first_refresh_backfills_from_the_first_trace(org, key):
    store(*(make_trace(org, key, NOW - timedelta(days=d, hours=1)) for d in (1, 9, 30)))

    result = rollups.rollups_refresh()

    assert result["hourly_rows"] == 3 and result["daily_rows"] == 3
    assert result["since"] == NOW - timedelta(days=30, hours=1)


def test_rollups_of_deleted_traces_disappear_when_their_hour_is_recomputed(org, key):
    [trace] = store(make_trace(org, key, NOW - timedelta(minutes=30)))
    rollups.rollups_refresh()
    trace.delete()

    rollups.rollups_refresh()

    assert not HourlyRollup.objects.exists() and not DailyRollup.objects.exists()


def test_the_beat_scheduled_task_refreshes_the_rollups(org, key, settings):
    store(make_trace(org, key, NOW - timedelta(minutes=5)))

    rollups_refresh_task.apply()  # as a worker runs it (eager or not)

    assert HourlyRollup.objects.get().requests == 1
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert rollups_refresh_task.name in scheduled


# --- Reading --------------------------------------------------------------------------------


def test_usage_series_by_hour_has_every_hour_and_filters_by_key_and_model(org, key, second_key):
    mixed_traffic(org, key, second_key)
    rollups.rollups_refresh()

    series = selectors.usage_series(
        organization=org, start=T - timedelta(hours=1), end=T + timedelta(hours=3), bucket="hour"
    )
    assert [row["ts"] for row in series] == [T + timedelta(hours=h) for h in range(-1, 3)]
    assert [row["requests"] for row in series] == [0, 120, 120, 0]
    assert series[0]["p50_ms"] is None and series[1]["p50_ms"] is not None
    assert series[1]["cost_eur"] + series[2]["cost_eur"] == sum(
        Trace.objects.values_list("cost_eur", flat=True)
    )

    mine = selectors.usage_series(
        organization=org, start=T, end=T + timedelta(hours=2), bucket="hour",
        api_key_id=key.pk, model="gpt-4o",
    )  # fmt: skip
    expected = Trace.objects.filter(
        api_key=key, model="gpt-4o", created_at__lt=T + timedelta(hours=1)
    )
    assert mine[0]["requests"] == expected.count()
    assert set(mine[0]) == {"ts", "requests", "errors", "prompt_tokens", "completion_tokens",
                            "cost_eur", "p50_ms", "p95_ms"}  # fmt: skip


def test_usage_series_by_day_takes_dates_inclusive(org, key):
    store(*(make_trace(org, key, datetime(2025, 3, d, 9, tzinfo=UTC)) for d in (10, 12, 12)))
    rollups.rollups_refresh()

    series = selectors.usage_series(
        organization=org, start=date(2025, 3, 10), end=date(2025, 3, 12), bucket="day"
    )

    assert [(r["ts"], r["requests"]) for r in series] == [
        (date(2025, 3, 10), 1), (date(2025, 3, 11), 0), (date(2025, 3, 12), 2),
    ]  # fmt: skip


def test_usage_by_groups_and_labels_models_keys_providers_and_days(org, key, second_key):
    mixed_traffic(org, key, second_key)
    rollups.rollups_refresh()
    window = {"organization": org, "start": T, "end": T + timedelta(hours=2)}

    by_model = selectors.usage_by(**window, dimension="model")
    assert [r["key"] for r in by_model] == ["gpt-4o", "claude-3-haiku-20240307"]  # costliest first
    assert by_model[0]["label"] == "GPT-4o"
    assert sum(r["requests"] for r in by_model) == 240
    by_key = {r["key"]: r for r in selectors.usage_by(**window, dimension="key")}
    assert by_key[str(key.pk)]["label"] == f"test key ({key.masked})"
    assert by_key[str(key.pk)]["requests"] == 120
    by_provider = {r["key"]: r["label"] for r in selectors.usage_by(**window, dimension="provider")}
    assert by_provider == {"openai": "OpenAI", "anthropic": "Anthropic"}
    [day] = selectors.usage_by(**window, dimension="day")
    assert day["key"] == "2025-03-14" and day["requests"] == 240
    tokens = sum(t.prompt_tokens + t.completion_tokens for t in Trace.objects.all())
    assert day["tokens"] == tokens and set(day) == {
        "key", "label", "requests", "errors", "tokens", "cost_eur"
    }  # fmt: skip


def test_usage_by_is_exact_to_the_hour_across_partial_days(org, key):
    times = [datetime(2025, 3, d, h, tzinfo=UTC) for d in (10, 11, 12, 13) for h in (3, 12, 20)]
    store(*(make_trace(org, key, when) for when in times))
    rollups.rollups_refresh()

    start, end = datetime(2025, 3, 10, 12, 30, tzinfo=UTC), datetime(2025, 3, 13, 12, tzinfo=UTC)
    [row] = selectors.usage_by(organization=org, start=start, end=end, dimension="model")

    # 10th 12:00 (the hour start touches) and 20:00, all of the 11th and 12th, the 13th's 03:00.
    assert row["requests"] == 2 + 3 + 3 + 1


def test_reads_never_include_another_organisations_usage(org, key, other_org):
    other, their_key = other_org
    store(make_trace(org, key, T), make_trace(other, their_key, T), make_trace(other, their_key, T))
    rollups.rollups_refresh()
    window = {"organization": org, "start": T, "end": T + timedelta(hours=1)}

    assert [r["requests"] for r in selectors.usage_by(**window, dimension="model")] == [1]
    foreign = selectors.usage_series(**window, bucket="hour", api_key_id=their_key.pk)
    assert foreign[0]["requests"] == 0
    assert selectors.trace_list(organization=org, filters={"api_key": their_key.pk}).count() == 0


def test_month_status_projects_the_month_linearly(org, key):
    org.monthly_budget_eur = Decimal("50.00")
    org.save()
    store(
        *(make_trace(org, key, datetime(2025, 3, 2 + i % 10, tzinfo=UTC), cost_eur=Decimal("0.01"))
          for i in range(150)),
        make_trace(org, key, T, status="blocked", http_status=429, cost_eur=Decimal(0)),
        make_trace(org, key, datetime(2025, 2, 27, tzinfo=UTC)),  # last month
    )  # fmt: skip
    rollups.rollups_refresh()

    status = selectors.month_status(organization=org)

    assert status == {
        "month": "2025-03",
        "requests": 150,  # the blocked one did not count against the quota
        "quota": 1_000_000,
        "cost_eur": Decimal("1.50000000"),
        "budget_eur": Decimal("50.00"),
        "projected_cost_eur": Decimal("3.10"),  # 1.50 * 31 / 15
        "projected_requests": 310,
        "rate_limit_per_minute": 1000,
    }


def test_month_status_uses_the_usage_counters_until_rollups_exist(org, key):
    org.monthly_request_quota = 500
    org.rate_limit_per_minute = 20
    org.save()
    UsageCounter.objects.create(
        organization=org, api_key=key, month=date(2025, 3, 1), requests=30, cost_eur=Decimal("3")
    )

    status = selectors.month_status(organization=org, now=datetime(2025, 3, 11, tzinfo=UTC))

    assert status["requests"] == 30 and status["cost_eur"] == Decimal("3")
    assert status["quota"] == 500 and status["rate_limit_per_minute"] == 20
    assert status["projected_requests"] == 93  # 30 / (10 / 31)
    assert status["projected_cost_eur"] == Decimal("9.30")


def test_trace_list_filters_and_orders_newest_first(org, key, second_key):
    store(
        make_trace(org, key, T),
        make_trace(org, key, T + timedelta(minutes=5), model="gpt-4o"),
        make_trace(org, second_key, T + timedelta(minutes=9), status="blocked", http_status=429,
                   error_code="rate_limit_exceeded"),
        make_trace(org, key, T - timedelta(days=1)),
    )  # fmt: skip

    window = {"start": T, "end": T + timedelta(hours=1)}
    listed = selectors.trace_list(organization=org, filters=window)
    assert [t.created_at.minute for t in listed] == [9, 5, 0]
    assert (
        selectors.trace_list(organization=org, filters={**window, "model": "gpt-4o"}).count() == 1
    )
    blocked = {**window, "status": "blocked", "error_code": "rate_limit_exceeded"}
    assert selectors.trace_list(organization=org, filters=blocked).get().api_key == second_key
    assert selectors.trace_list(organization=org, filters={"api_key": key.pk}).count() == 3
    assert selectors.trace_list(organization=org, filters={"end": date(2025, 3, 13)}).count() == 1
