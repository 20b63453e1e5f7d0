"""Scheduled compliance work (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import DatabaseError

from compliance import checkpoints, retention
from compliance.bias.runs import bias_run_execute
from compliance.jobs import LeaseHeld, jobs_stalled
from compliance.reports.generate import report_execute


@shared_task(name="compliance.tasks.retention_purge")
def retention_purge() -> dict:
    """Hourly: traces, content, events and rollups past each organisation's retention."""
    return retention.retention_purge()


@shared_task(name="compliance.tasks.audit_checkpoint")
def audit_checkpoint() -> dict:
    """Every AQTA_CHECKPOINT_INTERVAL_SECONDS: sign the head of every chain that moved."""
    return checkpoints.checkpoint_run().as_dict()


# Long jobs: acknowledged only when done, so a worker killed mid-run leaves the message to
# be delivered again; the lease (compliance.jobs) keeps two deliveries from running at once.
def _postponed(task: Task, held: LeaseHeld) -> str:
    if task.request.is_eager:  # one process, nothing to wait for: a stale lease lapses alone
        return "busy"
    raise task.retry(countdown=held.retry_in)


@shared_task(
    name="compliance.tasks.bias_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def bias_run(self: Task, run_id: str) -> str:
    """Execute (or continue) a bias detection run (docs/bias.md)."""
    try:
        return bias_run_execute(run_id)
    except LeaseHeld as held:
        return _postponed(self, held)
    except DatabaseError as error:
        raise self.retry(countdown=10, exc=error) from error


@shared_task(
    name="compliance.tasks.report_generate",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def report_generate(self: Task, report_id: str) -> str:
    """Collect, sign and render a compliance report (docs/reports.md)."""
    try:
        return report_execute(report_id)
    except LeaseHeld as held:
        return _postponed(self, held)
    except DatabaseError as error:
        raise self.retry(countdown=10, exc=error) from error


@shared_task(name="compliance.tasks.jobs_resume")
def jobs_resume() -> dict:
    """Every minute: send again the jobs whose worker died and whose message is gone."""
    stalled = jobs_stalled()
    for run_id in stalled["bias_runs"]:
        bias_run.delay(run_id)
    for report_id in stalled["reports"]:
        report_generate.delay(report_id)
    return stalled
