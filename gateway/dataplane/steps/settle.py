"""Step 8: settle and record. The budget reservation is replaced by the real cost (or,
for a call that failed inside the gateway, everything admission took is given back) and
the trace record goes into the buffer: with Redis both in one pipelined round trip. Runs
once per call, whatever happened before."""

from __future__ import annotations

import hashlib
import logging
import math
from decimal import Decimal
from typing import Any

from redis.exceptions import RedisError

from aqta import metrics
from billing.pricing import Usage
from gateway import crypto
from gateway.dataplane import policy
from gateway.dataplane.call import Call, ms_since
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import highrisk
from gateway.models import TraceStatus

logger = logging.getLogger("aqta.gateway")

MAX_SETTLE_UNITS = 2**53  # about 90 million EUR: far above any real call
UNKNOWN_MODEL = "unknown"


async def settle(rt: Runtime, call: Call) -> None:
    if call.record is None or call.finished:
        return
    if call.status == TraceStatus.ERROR:
        call.usage, call.cost_eur = Usage(), Decimal(0)
    record = trace_record(call)
    observe(call, record)
    try:
        await _settle(rt, call, record)
    except (RedisError, OSError):
        metrics.REDIS_ERRORS.inc()
        extra = {"trace_id": call.trace_id}
        logger.error("redis unavailable: trace written from this process", extra=extra)
        rt.buffer.add_local(record)
    call.finished = True


async def _settle(rt: Runtime, call: Call, record: dict[str, Any]) -> None:
    ask = call.ask
    # Absurd usage reported upstream must not overflow Redis's 64-bit counters (the
    # trace itself is parked by the flusher as a record that cannot be stored).
    actual = min(math.ceil(call.cost_eur * policy.EUR_UNITS), MAX_SETTLE_UNITS)
    refund = call.status == TraceStatus.ERROR and ask is not None
    if rt.redis is None:
        if ask is not None:
            if refund:
                await rt.limiter.release(ask, call.ts)
            else:
                await rt.limiter.settle(ask, call.ts, actual)
        rt.buffer.pipeline_add(None, record)
        return
    async with rt.redis.pipeline(transaction=False) as pipe:
        if ask is not None and refund:
            policy.release_in_pipeline(pipe, ask, call.ts)
        elif ask is not None and ask.estimate != actual:
            policy.settle_in_pipeline(pipe, ask, call.ts, actual - ask.estimate)
        rt.buffer.pipeline_add(pipe, record)
        await pipe.execute()


def trace_record(call: Call) -> dict[str, Any]:
    """What the flusher stores as the ``Trace`` (and its content, encrypted)."""
    assert call.record is not None
    record = {
        "id": call.trace_id[len("tr_") :],  # the UUID's hex digits
        "ts": call.ts,
        "org_id": call.record.org_id,
        "key_id": call.record.key_id,
        "model": call.model[:120],
        "provider": call.deployment,
        "status": call.status.value,
        "http_status": call.http_status,
        "error_code": str(call.error_code),
        "policy": call.policy,
        "prompt_tokens": call.usage.prompt_tokens,
        "completion_tokens": call.usage.completion_tokens,
        "cached_tokens": call.usage.cached_tokens,
        "cost_eur": str(call.cost_eur),
        "cost_prevented_eur": str(call.cost_prevented),
        "latency_ms": ms_since(call.started),
        "ttfb_ms": call.ttfb_ms,
        "stream": call.stream,
        "cached": call.cached,
        "loop_detected": call.loop_detected,
        "high_risk": call.high_risk,
        "client_disconnected": call.disconnected,
        "request_sha256": hashlib.sha256(call.raw).hexdigest() if call.raw else "",
    }
    events = []
    if call.loop_detected:
        events.append({"kind": "loop_detected", "data": {"model": record["model"]}})
    if (high_risk := highrisk.event(call)) is not None:
        events.append(high_risk)
    if events:
        record["events"] = events
    if call.record.content_logging and call.raw:
        record["content"] = {
            "request": crypto.encrypt(call.raw.decode(errors="replace")),
            "response": crypto.encrypt(call.completion or ""),
        }
    return record


def observe(call: Call, record: dict[str, Any]) -> None:
    """Prometheus: labelled by the catalogue's model id (an alias counts as its model),
    never by the name the client sent."""
    model = call.route.model.model_id if call.route is not None else UNKNOWN_MODEL
    if call.http_status >= 400 and call.status == TraceStatus.PASSED and call.error_code:
        metrics.ERRORS.labels(str(call.error_code)).inc()
    if call.status == TraceStatus.ERROR:
        metrics.ERRORS.labels("internal_error").inc()
    metrics.REQUESTS.labels(model, record["status"], str(record["http_status"])).inc()
    metrics.LATENCY.labels("true" if call.stream else "false").observe(record["latency_ms"] / 1000)
    if call.usage.prompt_tokens:
        metrics.TOKENS.labels(model, "prompt").inc(call.usage.prompt_tokens)
    if call.usage.completion_tokens:
        metrics.TOKENS.labels(model, "completion").inc(call.usage.completion_tokens)
    if call.cost_eur:
        metrics.COST.labels(model).inc(float(call.cost_eur))
