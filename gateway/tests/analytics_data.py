"""Traces for the analytics tests, written straight to the table as the flusher would."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from accounts.models import ApiKey, Organization
from gateway.models import Trace


def make_trace(
    organization: Organization, api_key: ApiKey | None, created_at: datetime, **fields
) -> Trace:
    """A passed 200 call of gpt-4o-mini unless ``fields`` say otherwise (not saved)."""
    values = {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "status": "passed",
        "http_status": 200,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cost_eur": Decimal("0.00010000"),
        "latency_ms": 400,
        **fields,
    }
    return Trace(
        id=uuid.uuid4(),
        organization=organization,
        api_key=api_key,
        created_at=created_at,
        **values,
    )


def store(*traces: Trace) -> list[Trace]:
    return Trace.objects.bulk_create(traces)
