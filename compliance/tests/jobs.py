"""Running the Celery jobs of a test in its own process: eagerly, with the commit hooks
that enqueue them executed (a test's transaction never commits)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aqta.celery import app


@pytest.fixture
def eager_jobs() -> Iterator[None]:
    """Tasks run in the test's process even where the settings name a broker."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = before


@contextmanager
def jobs_run(capture) -> Iterator[None]:
    """Execute the on-commit hooks (the enqueueing) at the end of the block."""
    with capture(execute=True):
        yield
