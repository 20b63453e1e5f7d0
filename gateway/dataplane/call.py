"""One /v1 request on its way through the pipeline: what each step learnt about it.

Steps fill it in order (``pipeline.py``); the last step turns it into the trace record.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from accounts.key_records import KeyRecord
from billing.pricing import Usage
from gateway.dataplane import policy
from gateway.dataplane.catalog import Deployment, ModelEntry
from gateway.dataplane.http import Headers
from gateway.dataplane.providers.base import Provider
from gateway.models import TraceStatus
from gateway.trace_ids import TraceIds
from healthcare.highrisk import Match


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment that can serve the call, with the adapter that speaks its protocol."""

    deployment: Deployment
    adapter: Provider


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call may go: the catalogue model and its deployments in order of preference
    (only those whose provider can honour this request)."""

    model: ModelEntry  # the catalogue entry (an alias resolves to its model's)
    targets: tuple[Target, ...]


@dataclass(slots=True)
class Call:
    trace_id: str
    started: float  # perf_counter, for latencies
    ts: float  # wall clock: the call's time for limits, prices and the trace
    record: KeyRecord | None = None
    raw: bytes = b""
    body: dict[str, Any] | None = None
    stream: bool = False
    route: Route | None = None
    ask: policy.Ask | None = None
    admission: policy.Admission | None = None
    # The deployment serving the call: the model's provider kind while it is being routed
    # (what a refused call records), the first choice once routed, then the one that
    # answered (or the one a cached answer came from). Shown as ``aqta.provider``.
    deployment: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_eur: Decimal = Decimal(0)
    cost_prevented: Decimal = Decimal(0)
    status: TraceStatus = TraceStatus.PASSED
    http_status: int = 200
    error_code: str = ""  # an ErrorCode, "" when answered
    policy: str = ""  # the policy that refused the call
    cached: bool = False
    loop_detected: bool = False
    high_risk: bool = False  # a Healthcare high-risk rule matched (steps.highrisk)
    high_risk_request: tuple[Match, ...] = ()
    high_risk_response: tuple[Match, ...] = ()
    receipt: asyncio.Future[None] | None = None  # the receipt's write (Healthcare)
    disconnected: bool = False
    ttfb_ms: int | None = None
    completion: str | None = None  # the answer's text, kept only with content logging
    response_started: bool = False
    finished: bool = False

    @property
    def model(self) -> str:
        """The model the client asked for (as sent; "" before the body was read)."""
        body = self.body
        return body.get("model", "") if isinstance(body, dict) else ""

    def headers(self) -> Headers:
        trace_id = self.trace_id.encode()
        # OpenAI's SDKs expose x-request-id as ``response._request_id``.
        ids = [(b"x-aqta-trace-id", trace_id), (b"x-request-id", trace_id)]
        admission = self.admission
        if admission is not None:
            limit, remaining, reset = admission.limit, admission.remaining, admission.reset
        elif self.record is not None:  # answered before admission: nothing was counted
            limit = remaining = self.record.rate_limit_per_minute
            reset = 60
        else:  # no key involved (unknown endpoint, bad method, bad key): no limit to show
            return ids
        return [
            *ids,
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(max(remaining, 0)).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]

    def aqta(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            # A JSON number, as documented; the trace keeps the exact Decimal.
            "cost_eur": float(self.cost_eur),
            "provider": self.deployment,
            "status": self.status.value,
            "cached": self.cached,
            "loop_detected": self.loop_detected,
        }


_ids = TraceIds()


def call_new() -> Call:
    return Call(_ids.next(), time.perf_counter(), time.time())


def ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
