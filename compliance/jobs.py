"""How the long compliance jobs (bias runs, reports) run in Celery workers.

A job is a row (``JobFields``); its Celery task carries only the id and is acknowledged
late (``acks_late``, ``reject_on_worker_lost``), so a worker that dies mid-run leaves the
message to be delivered again. Every step of a job is idempotent and stored as it
completes, so a second delivery continues where the first stopped.

Two deliveries of one job may meet: the broker hands an unacknowledged message to another
worker after its visibility timeout, even while the first still runs. A *lease* decides:
a worker executes a job only while it holds ``lease_owner``/``lease_until``, which a
heartbeat thread renews every third of ``AQTA_JOB_LEASE_SECONDS``. A delivery that finds
the lease held elsewhere is postponed until the lease could lapse; one that finds the job
finished does nothing. The ``jobs-resume`` beat task re-sends jobs whose lease lapsed
with no delivery left to take them over (a message lost with its broker).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from compliance.models import BiasRun, ComplianceReport, JobFields, JobStatus

logger = logging.getLogger("aqta.compliance")


class LeaseHeld(Exception):
    """Another live worker is executing this job; try again after ``retry_in`` seconds."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"the job is being executed elsewhere; retry in {retry_in:.0f} s")
        self.retry_in = retry_in


class LeaseLost(Exception):
    """This worker's lease lapsed and another took the job over: stop at once."""


def worker_identity() -> str:
    """Unique per delivery: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(settings.AQTA_JOB_LEASE_SECONDS)


def lease_take(model: Any, job_id: uuid.UUID | str, owner: str) -> bool:
    """Claim the job for ``owner`` unless a live lease of another worker holds it."""
    now = timezone.now()
    claimed = (
        model._default_manager.filter(pk=job_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds()),
            attempts=F("attempts") + 1,
        )
    )
    return bool(claimed == 1)


def lease_renew(model: Any, job_id: uuid.UUID | str, owner: str) -> bool:
    until = timezone.now() + timedelta(seconds=lease_seconds())
    return bool(model.objects.filter(pk=job_id, lease_owner=owner).update(lease_until=until) == 1)


def lease_release(model: Any, job_id: uuid.UUID | str, owner: str) -> None:
    model._default_manager.filter(pk=job_id, lease_owner=owner).update(
        lease_owner="", lease_until=None
    )


def lease_retry_in(model: Any, job_id: uuid.UUID | str) -> float:
    """Seconds until the current lease could lapse (at least one)."""
    until = model._default_manager.filter(pk=job_id).values_list("lease_until", flat=True).first()
    if until is None:
        return 1.0
    return float(max(1.0, (until - timezone.now()).total_seconds() + 0.5))


class Lease:
    """A held lease and its heartbeat. ``check()`` raises :class:`LeaseLost` once a renewal
    found another owner (the job's steps call it between units of work)."""

    def __init__(self, model: Any, job_id: uuid.UUID | str, owner: str) -> None:
        self.model, self.job_id, self.owner = model, job_id, owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="job-lease", daemon=True)

    def _beat(self) -> None:
        interval = max(0.2, lease_seconds() / 3)
        try:
            while not self._stop.wait(interval):
                if not lease_renew(self.model, self.job_id, self.owner):
                    self.lost.set()
                    return
        except Exception:  # the database went away: stop claiming rather than crash
            logger.exception("job lease renewal failed")
            self.lost.set()
        finally:
            connection.close()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lease of {self.model.__name__} {self.job_id} lost")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def leased(model: Any, job_id: uuid.UUID | str) -> Iterator[Lease]:
    """Hold the job's lease for the block (raises :class:`LeaseHeld` if another has it)."""
    owner = worker_identity()  # (Celery's Django fix-up closes stale connections per task)
    if not lease_take(model, job_id, owner):
        raise LeaseHeld(lease_retry_in(model, job_id))
    lease = Lease(model, job_id, owner)
    lease.start()
    try:
        yield lease
    finally:
        lease.stop()
        if not lease.lost.is_set():
            lease_release(model, job_id, owner)


def progress_set(job: JobFields, *, progress: int, step: str) -> None:
    """Store the job's progress (0-100) and current step, visible to the API at once."""
    job.progress = max(0, min(100, progress))
    job.step = step[:200]
    type(job)._default_manager.filter(pk=job.pk).update(progress=job.progress, step=job.step)


def job_start(job: JobFields) -> None:
    """Mark a job running (first delivery) without touching one that already runs."""
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        type(job)._default_manager.filter(pk=job.pk).update(
            status=job.status, started_at=job.started_at
        )


def job_finish(job: JobFields, *, status: str, step: str, error: str = "") -> bool:
    """Mark the job finished, once: False if another delivery already did."""
    now = timezone.now()
    done = (
        type(job)
        ._default_manager.filter(pk=job.pk)
        .exclude(status__in=[JobStatus.COMPLETED, JobStatus.FAILED])
        .update(status=status, step=step[:200], error=error, finished_at=now, progress=100)
    )
    if done:
        job.status, job.step, job.error, job.finished_at, job.progress = (
            status,
            step[:200],
            error,
            now,
            100,
        )
    return bool(done == 1)


def stalled(model: Any) -> list[str]:
    """Unfinished jobs nobody holds: queued for over a lease period, or running with a
    lapsed lease. Their messages were lost (or are waiting out a visibility timeout)."""
    now = timezone.now()
    grace = now - timedelta(seconds=lease_seconds())
    rows = model._default_manager.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).filter(
        Q(lease_until__lt=now) | Q(lease_until__isnull=True, created_at__lt=grace)
    )
    return [str(pk) for pk in rows.values_list("pk", flat=True)[:100]]


def jobs_stalled() -> dict[str, list[str]]:
    return {"bias_runs": stalled(BiasRun), "reports": stalled(ComplianceReport)}
