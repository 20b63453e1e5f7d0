from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from aqta.errors import AqtaError
from billing.selectors import tier_get
from compliance import tasks
from compliance.models import AuditEvent
from compliance.retention import (
    organization_retention_set,
    retention_cutoff,
    retention_purge,
)
from compliance.services import audit_chain_verify, audit_event_record
from gateway.models import (
    DailyRollup,
    GatewayEvent,
    HourlyRollup,
    Trace,
    TraceContent,
    UsageCounter,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 15, 12, 30, tzinfo=UTC)
SEVEN_YEARS = 7 * 365 + 2


def _org(tier: str, *, name: str = "Acme", retention_days: int | None = None):
    organization = organization_create(
        name=name, owner=UserFactory.create(), tier=tier_get(slug=tier)
    )
    if retention_days is not None:
        organization.retention_days = retention_days
        organization.save(update_fields=["retention_days"])
    return organization


def _trace(organization, age: timedelta) -> Trace:
    return Trace.objects.create(
        created_at=NOW - age,
        organization=organization,
        model="gpt-4o-mini",
        provider="openai",
        status="passed",
        http_status=200,
    )


def _traces(organization, age: timedelta, count: int) -> None:
    Trace.objects.bulk_create(
        Trace(
            created_at=NOW - age - timedelta(seconds=i),
            organization=organization,
            status="passed",
            http_status=200,
        )
        for i in range(count)
    )


@pytest.mark.parametrize(
    ("tier", "days"),
    [("free", 7), ("starter", 90), ("pro", 365), ("healthcare", 365 * 6), ("enterprise", 365)],
)
def test_each_tier_keeps_traces_for_its_default_retention(tier, days):
    organization = _org(tier)
    kept = _trace(organization, timedelta(days=days) - timedelta(minutes=1))
    _trace(organization, timedelta(days=days) + timedelta(minutes=1))

    retention_purge(now=NOW)

    assert retention_cutoff(organization=organization, now=NOW) == NOW - timedelta(days=days)
    assert list(Trace.objects.all()) == [kept]


def test_a_healthcare_organisation_may_keep_traces_for_seven_years():
    organization = _org("healthcare", retention_days=SEVEN_YEARS)
    kept = _trace(organization, timedelta(days=365 * 6 + 200))
    _trace(organization, timedelta(days=SEVEN_YEARS + 1))

    retention_purge(now=NOW)

    assert list(Trace.objects.all()) == [kept]


def test_an_organisation_override_shortens_retention():
    organization = _org("pro", retention_days=30)
    kept = _trace(organization, timedelta(days=29))
    _trace(organization, timedelta(days=31))

    retention_purge(now=NOW)

    assert list(Trace.objects.all()) == [kept]


def test_an_override_beyond_the_tiers_maximum_is_capped_by_it():
    # e.g. left over after a move to a cheaper tier
    organization = _org("free", retention_days=365)

    assert retention_cutoff(organization=organization, now=NOW) == NOW - timedelta(days=7)


def test_it_purges_in_batches_and_leaves_recent_and_other_organisations_rows_alone():
    free = _org("free")
    pro = _org("pro", name="Other")
    _traces(free, timedelta(days=30), 10)
    _traces(free, timedelta(days=1), 2)
    _traces(pro, timedelta(days=30), 4)

    result = retention_purge(now=NOW, batch_size=3)

    assert result["traces"] == 10
    assert result["batches"] == 4  # 3 + 3 + 3 + 1
    assert result["finished"] is True
    assert Trace.objects.filter(organization=free).count() == 2
    assert not Trace.objects.filter(organization=free, created_at__lt=NOW - timedelta(days=7))
    assert Trace.objects.filter(organization=pro).count() == 4


def test_each_batch_is_its_own_short_transaction():
    organization = _org("free")
    _traces(organization, timedelta(days=30), 5)

    with CaptureQueriesContext(connection) as queries:
        retention_purge(now=NOW, batch_size=2)

    # In the test's own transaction each batch shows as a savepoint.
    savepoints = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) == 3


def test_a_run_stops_after_max_batches_and_the_next_run_finishes():
    organization = _org("free")
    _traces(organization, timedelta(days=30), 10)

    first = retention_purge(now=NOW, batch_size=3, max_batches=2)
    assert (first["traces"], first["finished"]) == (6, False)
    assert Trace.objects.count() == 4

    second = retention_purge(now=NOW, batch_size=3)
    assert (second["traces"], second["finished"]) == (4, True)
    assert not Trace.objects.exists()


def test_content_and_events_go_with_their_traces():
    organization = _org("free")
    old, recent = _trace(organization, timedelta(days=8)), _trace(organization, timedelta(days=1))
    for trace in (old, recent):
        TraceContent.objects.create(trace=trace, request_encrypted="x", response_encrypted="y")
        GatewayEvent.objects.create(
            organization=organization,
            kind="loop_detected",
            trace=trace,
            created_at=NOW - timedelta(days=1),  # the event's own date does not matter
        )

    result = retention_purge(now=NOW)

    assert (result["traces"], result["trace_contents"], result["gateway_events"]) == (1, 1, 1)
    assert list(TraceContent.objects.values_list("trace_id", flat=True)) == [recent.pk]
    assert list(GatewayEvent.objects.values_list("trace_id", flat=True)) == [recent.pk]


def test_old_events_without_a_trace_are_purged_too():
    organization = _org("free")
    for days in (8, 1):
        GatewayEvent.objects.create(
            organization=organization, kind="loop_detected", created_at=NOW - timedelta(days=days)
        )

    retention_purge(now=NOW)

    assert GatewayEvent.objects.get().created_at == NOW - timedelta(days=1)


def test_audit_events_outlive_the_traces():
    """They follow the compliance retention (compliance/tests/test_audit_retention.py)."""
    organization = _org("free")
    audit_event_record(action="test.one", organization=organization)
    events = AuditEvent.objects.count()
    _trace(organization, timedelta(days=8))

    retention_purge(now=NOW + timedelta(days=365 * 6))

    assert not Trace.objects.exists()
    assert AuditEvent.objects.count() == events
    assert audit_chain_verify(scope=str(organization.pk)) is None


def test_usage_counters_are_kept_as_billing_history():
    organization = _org("free")
    UsageCounter.objects.create(organization=organization, month=date(2024, 1, 1), requests=3)

    retention_purge(now=NOW)

    assert UsageCounter.objects.get().requests == 3


def test_rollups_are_purged_once_their_hour_or_day_lies_before_the_cutoff():
    organization = _org("free")
    cutoff = NOW - timedelta(days=7)  # 2025-06-08 12:30
    for hour in ("10:00", "11:00", "12:00", "13:00"):
        HourlyRollup.objects.create(
            organization=organization, hour=datetime.fromisoformat(f"2025-06-08T{hour}+00:00")
        )
    for day in (6, 7, 8, 9):
        DailyRollup.objects.create(organization=organization, day=date(2025, 6, day))

    result = retention_purge(now=NOW)

    assert (result["hourly_rollups"], result["daily_rollups"]) == (2, 2)
    assert [r.hour.hour for r in HourlyRollup.objects.order_by("hour")] == [12, 13]
    assert [r.day.day for r in DailyRollup.objects.order_by("day")] == [8, 9]
    assert cutoff.date() == date(2025, 6, 8)


def test_rollups_of_other_organisations_are_left_alone():
    _org("free")
    pro = _org("pro", name="Other")
    HourlyRollup.objects.create(organization=pro, hour=NOW - timedelta(days=30))
    DailyRollup.objects.create(organization=pro, day=date(2025, 5, 1))

    retention_purge(now=NOW)

    assert HourlyRollup.objects.count() == DailyRollup.objects.count() == 1


def test_the_celery_task_purges():
    organization = _org("free")
    _trace(organization, timedelta(days=400))

    result = tasks.retention_purge.apply().get()

    assert result["traces"] == 1
    assert not Trace.objects.exists()


def test_the_celery_task_runs_eagerly_in_embedded_mode():
    from aqta.celery import app

    if not app.conf.task_always_eager:
        pytest.skip("Celery sends tasks to the broker outside the embedded mode")
    organization = _org("free")
    _trace(organization, timedelta(days=400))

    tasks.retention_purge.delay()

    assert not Trace.objects.exists()


def test_the_beat_schedule_names_the_task():
    from django.conf import settings

    from aqta.celery import app

    scheduled = settings.CELERY_BEAT_SCHEDULE["retention-purge"]["task"]
    assert scheduled == tasks.retention_purge.name
    assert scheduled in app.tasks


# --- Setting an organisation's retention ------------------------------------------------


def test_an_admin_may_set_retention_up_to_the_tiers_maximum(user):
    organization = _org("healthcare")

    organization_retention_set(organization=organization, days=SEVEN_YEARS, actor=user)

    organization.refresh_from_db()
    assert organization.retention_days == SEVEN_YEARS
    event = AuditEvent.objects.get(action="organization.retention_changed")
    assert event.actor == user
    assert event.data == {"from": None, "to": SEVEN_YEARS}


@pytest.mark.parametrize(("tier", "days"), [("free", 8), ("pro", 366), ("healthcare", 9999)])
def test_retention_beyond_the_tiers_maximum_is_refused(user, tier, days):
    organization = _org(tier)

    with pytest.raises(AqtaError) as refused:
        organization_retention_set(organization=organization, days=days, actor=user)

    assert refused.value.status == 400
    assert refused.value.param == "retention_days"
    assert "retention_days" in refused.value.message
    organization.refresh_from_db()
    assert organization.retention_days is None
    assert not AuditEvent.objects.filter(action="organization.retention_changed").exists()


def test_retention_of_zero_days_is_refused(user):
    with pytest.raises(AqtaError) as refused:
        organization_retention_set(organization=_org("pro"), days=0, actor=user)

    assert refused.value.param == "retention_days"


def test_clearing_retention_returns_to_the_tier_default(user):
    organization = _org("pro", retention_days=30)

    organization_retention_set(organization=organization, days=None, actor=user)

    organization.refresh_from_db()
    assert organization.retention_days is None
    assert retention_cutoff(organization=organization, now=NOW) == NOW - timedelta(days=365)


def test_setting_the_same_retention_again_records_nothing(user):
    organization = _org("pro", retention_days=30)

    organization_retention_set(organization=organization, days=30, actor=user)

    assert not AuditEvent.objects.filter(action="organization.retention_changed").exists()
