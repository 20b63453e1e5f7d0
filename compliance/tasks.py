"""Scheduled compliance work (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from compliance import retention


@shared_task(name="compliance.tasks.retention_purge")
def retention_purge() -> dict:
    """Hourly: traces, content, events and rollups past each organisation's retention."""
    return retention.retention_purge()
