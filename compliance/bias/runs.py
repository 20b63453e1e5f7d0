"""Executing a bias run in a worker: the lease, the method, and what a failure leaves."""

from __future__ import annotations

import logging
import uuid

from django.db import DatabaseError

from compliance.bias.passive import passive_run_execute
from compliance.bias.runner import key_retire, probe_run_execute, run_fail
from compliance.jobs import LeaseLost, leased
from compliance.models import BiasMethod, BiasRun, JobStatus

logger = logging.getLogger("aqta.compliance")


def bias_run_execute(run_id: uuid.UUID | str) -> str:
    """Run (or continue) one bias run; what became of it. Raises
    :class:`compliance.jobs.LeaseHeld` while another worker executes it, and database
    errors (the task is retried), never anything else."""
    run = BiasRun.objects.select_related("organization", "api_key").filter(pk=run_id).first()
    if run is None:
        return "missing"
    if run.finished:
        key_retire(run)
        return "finished"
    with leased(BiasRun, run.pk) as lease:
        run.refresh_from_db()
        if run.status in (JobStatus.COMPLETED, JobStatus.FAILED):
            return "finished"
        try:
            if run.method == BiasMethod.PASSIVE:
                passive_run_execute(run, lease)
            else:
                probe_run_execute(run, lease)
        except LeaseLost:
            logger.warning("bias run %s taken over by another worker", run.pk)
            return "lost"
        except DatabaseError:
            raise
        except Exception as error:  # a bug or bad data: the run fails, visibly, once
            logger.exception("bias run %s failed", run.pk)
            run_fail(run, f"{type(error).__name__}: {error}")
            return "failed"
    return "completed"
