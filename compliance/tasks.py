"""Scheduled compliance work (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from compliance import checkpoints, retention


@shared_task(name="compliance.tasks.retention_purge")
def retention_purge() -> dict:
    """Hourly: traces, content, events and rollups past each organisation's retention."""
    return retention.retention_purge()


@shared_task(name="compliance.tasks.audit_checkpoint")
def audit_checkpoint() -> dict:
    """Every AQTA_CHECKPOINT_INTERVAL_SECONDS: sign the head of every chain that moved."""
    return checkpoints.checkpoint_run().as_dict()
