"""Retention: how long an organisation's gateway data is kept, and the purge that enforces it.

Each organisation keeps traces for its own ``retention_days`` or, when empty, its tier's
default, never longer than the tier's ``max_retention_days`` (so a move to a cheaper
tier shortens retention without anyone editing the organisation).

The hourly purge (``compliance.tasks.retention_purge``) deletes what is older than that:

- traces, with their content and the gateway events that point at them;
- gateway events older than the cutoff that point at no trace;
- analytics rollups whose hour or day lies wholly before the cutoff;
- then the compliance records, on their own, longer retention: audit events and
  receipts (``compliance.audit_purge``).

It deletes in batches of primary keys, one short transaction per batch, so that no lock
is held for long and the flusher keeps inserting while it runs.

What it leaves alone, on purpose:

- usage counters: one row per key and month with counts and EUR totals only, no
  content. They are the billing history that invoices, quotas and budgets refer to.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from accounts.models import Organization, User
from aqta.errors import AqtaError
from billing.models import Tier
from compliance.audit_purge import compliance_purge
from compliance.services import audit_event_record
from gateway.models import DailyRollup, GatewayEvent, HourlyRollup, Trace, TraceContent

logger = logging.getLogger("aqta.retention")
# What a purge run reports, by kind of row deleted.
PURGED = ("traces", "trace_contents", "gateway_events", "hourly_rollups", "daily_rollups")


def retention_days_validate(*, tier: Tier, days: int | None) -> None:
    """Raise a 400 naming ``retention_days`` unless ``days`` is allowed on ``tier``.

    ``None`` means the tier's default and is always allowed."""
    if days is None:
        return
    if days < 1:
        raise AqtaError("retention_days must be at least 1 day.", param="retention_days")
    if days > tier.max_retention_days:
        raise AqtaError(
            f"retention_days can be at most {tier.max_retention_days} days on the "
            f"{tier.name} tier.",
            param="retention_days",
        )


def retention_days_effective(*, organization: Organization) -> int:
    tier = organization.tier
    return min(organization.retention_days or tier.retention_days, tier.max_retention_days)


def retention_cutoff(*, organization: Organization, now: datetime) -> datetime:
    """Data created before this moment is past the organisation's retention."""
    return now - timedelta(days=retention_days_effective(organization=organization))


@transaction.atomic
def organization_retention_set(
    *,
    organization: Organization,
    days: int | None,
    actor: User | None,
    actor_label: str = "",
) -> Organization:
    """Set (or, with ``None``, reset to the tier default) how long traces are kept."""
    retention_days_validate(tier=organization.tier, days=days)
    previous = organization.retention_days
    if previous == days:
        return organization
    organization.retention_days = days
    organization.save(update_fields=["retention_days"])
    audit_event_record(
        action="organization.retention_changed",
        organization=organization,
        actor=actor,
        actor_label=actor_label,
        target=str(organization.pk),
        data={"from": previous, "to": days},
    )
    return organization


@dataclass
class _Run:
    """One purge run: its limits, the batches it spent and what it deleted."""

    batch_size: int
    max_batches: int | None
    deleted: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    def can_spend(self) -> bool:
        return self.max_batches is None or self.batches < self.max_batches


def _in_batches(
    run: _Run, queryset: QuerySet, order_by: str, delete: Callable[[list], dict[str, int]]
) -> bool:
    """Delete ``queryset`` batch by batch, oldest first. False if the run ran out of batches."""
    while True:
        if not run.can_spend():
            return False
        ids = list(queryset.order_by(order_by).values_list("pk", flat=True)[: run.batch_size])
        if not ids:
            return True
        with transaction.atomic():
            run.deleted.update(delete(ids))
        run.batches += 1
        if len(ids) < run.batch_size:
            return True


def _delete_traces(ids: list) -> dict[str, int]:
    events, _ = GatewayEvent.objects.filter(trace_id__in=ids).delete()
    # Content cascades; only the primary key is loaded for the delete.
    _, per_model = Trace.objects.filter(pk__in=ids).only("pk").delete()
    return {
        "traces": per_model.get(Trace._meta.label, 0),
        "trace_contents": per_model.get(TraceContent._meta.label, 0),
        "gateway_events": events,
    }


def _deleter(model: type[Model], name: str) -> Callable[[list[Any]], dict[str, int]]:
    def delete(ids: list[Any]) -> dict[str, int]:
        return {name: model._default_manager.filter(pk__in=ids).delete()[0]}

    return delete


def _organization_purge(run: _Run, organization: Organization, cutoff: datetime) -> bool:
    """Everything of one organisation past ``cutoff``; False if the run ran out of batches."""
    owned = {"organization": organization}
    # A rollup bucket (UTC hour or day) goes once it lies wholly before the cutoff.
    hour = cutoff.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    steps = [
        (Trace.objects.filter(**owned, created_at__lt=cutoff), "created_at", _delete_traces),
        (
            GatewayEvent.objects.filter(**owned, created_at__lt=cutoff),
            "created_at",
            _deleter(GatewayEvent, "gateway_events"),
        ),
        (
            HourlyRollup.objects.filter(**owned, hour__lt=hour),
            "hour",
            _deleter(HourlyRollup, "hourly_rollups"),
        ),
        (
            DailyRollup.objects.filter(**owned, day__lt=hour.date()),
            "day",
            _deleter(DailyRollup, "daily_rollups"),
        ),
    ]
    return all(_in_batches(run, queryset, order, delete) for queryset, order, delete in steps)


def retention_purge(
    *, now: datetime | None = None, batch_size: int = 5000, max_batches: int | None = None
) -> dict:
    """Delete every organisation's gateway data past its retention (see the module doc).

    ``max_batches`` bounds one run (the rest waits for the next one). Returns what was
    deleted, the batches spent and whether the run got through every organisation."""
    now = now or timezone.now()
    run = _Run(batch_size=batch_size, max_batches=max_batches)
    finished = True
    for organization in Organization.objects.select_related("tier").order_by("pk"):
        cutoff = retention_cutoff(organization=organization, now=now)
        before = run.deleted.copy()
        finished = _organization_purge(run, organization, cutoff)
        deleted = run.deleted - before
        if deleted:
            logger.info(
                "retention purge of %s before %s: %s",
                organization.pk,
                cutoff.isoformat(),
                dict(deleted),
                extra={"organization": str(organization.pk)},
            )
        if not finished:
            break
    counts = {name: run.deleted[name] for name in PURGED}
    compliance = compliance_purge(now=now) if finished else {"audit_events": 0, "receipts": 0}
    return {**counts, **compliance, "batches": run.batches, "finished": finished}
