"""Fixtures of the steps' tests: where a step's state lives (process memory, or the tests'
own Redis). The fakes themselves are in ``fakes`` and ``provider``."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["embedded", "redis"])
def backend(request) -> str | None:
    """None for the embedded mode, else the tests' Redis URL (skipped without one)."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None
