"""Dead letters as the flusher parks them, for the admin and command tests."""

from __future__ import annotations

import hashlib

import orjson
from django.utils import timezone

from gateway.models import TraceDeadLetter
from gateway.tests.test_traces import trace_record


def dead_letter(org, key, **changes) -> TraceDeadLetter:
    """A parked record of ``key`` (``changes`` applied), dated now."""
    record = trace_record(key, ts=timezone.now().timestamp(), **changes)
    payload = orjson.dumps(record).decode()
    return TraceDeadLetter.objects.create(
        created_at=timezone.now(),
        last_attempt_at=timezone.now(),
        source="stream",
        trace_id=record["id"],
        organization_id=str(org.pk),
        error="ValueError: Field 'latency_ms' expected a number but got 'slow'.",
        payload=payload,
        payload_sha256=hashlib.sha256(payload.encode()).hexdigest(),
    )
