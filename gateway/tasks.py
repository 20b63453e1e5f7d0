"""Celery tasks of the gateway app (eager in the embedded mode)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from gateway.analytics import rollups


@shared_task(name="gateway.tasks.rollups_refresh", ignore_result=True)
def rollups_refresh() -> dict[str, Any]:
    """Beat runs this every minute (CELERY_BEAT_SCHEDULE)."""
    result = rollups.rollups_refresh()
    return {**result, "since": result["since"].isoformat() if result["since"] else None}
