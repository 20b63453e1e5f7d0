"""Step 4: admission. Every limit in one round trip (``policy``): the key's rate limit,
the loop guard, the organisation's monthly quota and the organisation's and key's EUR
budgets, reserving an estimate of the call's cost that settlement replaces with the real
one. A refusal is answered with its policy's code; nothing is reserved for it."""

from __future__ import annotations

import logging
import math
from decimal import Decimal

from redis.exceptions import RedisError

from aqta import metrics
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane import loopguard, policy
from gateway.dataplane.call import Call
from gateway.dataplane.catalog import Catalog
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps.authenticate import INVALID_KEY
from gateway.models import TraceStatus

logger = logging.getLogger("aqta.gateway")

DEFAULT_COMPLETION_ESTIMATE = 512
POLICY_NAMES = {
    policy.RATE: "rate_limit",
    policy.LOOP: "loop_guard",
    policy.QUOTA: "quota",
    policy.BUDGET_ORG: "budget_guard",
    policy.BUDGET_KEY: "budget_guard",
}
MONTHLY_REFUSALS = {
    policy.QUOTA: (
        ErrorCode.QUOTA_EXCEEDED,
        "Monthly request quota exhausted for this organisation.",
    ),
    policy.BUDGET_ORG: (
        ErrorCode.BUDGET_EXCEEDED,
        "Monthly EUR budget exhausted for this organisation.",
    ),
    policy.BUDGET_KEY: (
        ErrorCode.BUDGET_EXCEEDED,
        "Monthly EUR budget exhausted for this API key.",
    ),
}


async def admit(rt: Runtime, call: Call) -> None:
    call.ask = ask = ask_for(rt.catalog, call)
    try:
        admission = await rt.limiter.admit(ask, call.ts)
    except (RedisError, OSError):
        admission = _unchecked(call, ask)
    call.admission = admission
    if admission.verdict != policy.OK:
        call.ask = None  # nothing was reserved
        raise _refusal(rt.catalog, call, admission)


def ask_for(catalog: Catalog, call: Call) -> policy.Ask:
    record, body = call.record, call.body
    assert record is not None and body is not None
    budgets = record.org_budget_eur is not None or record.key_budget_eur is not None
    return policy.Ask(
        org_id=record.org_id,
        key_id=record.key_id,
        request_id=call.trace_id,
        rate_limit=record.rate_limit_per_minute,
        quota=record.monthly_request_quota,
        budget_org=_units(record.org_budget),
        budget_key=_units(record.key_budget),
        estimate=estimate_units(catalog, call) if budgets else 0,
        fingerprint=loopguard.fingerprint(body["model"], body["messages"], body.get("tools")),
        loop_threshold=record.loop_threshold,
        loop_window=record.loop_window_seconds,
        cycle=loopguard.repeats_a_cycle(body["messages"]),
    )


def estimate_units(catalog: Catalog, call: Call) -> int:
    """Reserved cost of the call, in 1e-8 EUR: the prompt by size, the answer at its cap."""
    body, route = call.body, call.route
    assert body is not None and route is not None
    completion = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = completion or min(
        route.model.max_output_tokens or DEFAULT_COMPLETION_ESTIMATE, DEFAULT_COMPLETION_ESTIMATE
    )
    usage = Usage(
        prompt_tokens=len(call.raw) // 4, completion_tokens=completion * (body.get("n") or 1)
    )
    eur = catalog.cost_eur(route.model, usage, call.ts)
    return math.ceil(eur * policy.EUR_UNITS)


def _unchecked(call: Call, ask: policy.Ask) -> policy.Admission:
    """Redis is unreachable: without a quota or budget the call goes ahead unlimited (and
    says so in the log); with one it is refused, since it could not be counted."""
    metrics.REDIS_ERRORS.inc()
    extra = {"trace_id": call.trace_id}
    if ask.quota is not None or ask.budget_org is not None or ask.budget_key is not None:
        logger.error("redis unavailable: quota/budget cannot be checked; refusing", extra=extra)
        call.ask = None  # nothing was reserved
        raise AqtaError(
            "The gateway cannot check your quota right now; retry shortly.",
            code=ErrorCode.SERVICE_UNAVAILABLE,
            retry_after=1,
        ) from None
    logger.error("redis unavailable: rate limit not enforced for this call", extra=extra)
    return policy.Admission(policy.OK, ask.rate_limit, ask.rate_limit, 60)


def _refusal(catalog: Catalog, call: Call, admission: policy.Admission) -> AqtaError:
    call.status = TraceStatus.BLOCKED
    call.policy = POLICY_NAMES.get(admission.verdict, "")
    metrics.POLICY_REFUSALS.labels(call.policy or "revoked").inc()
    verdict = admission.verdict
    if verdict == policy.REVOKED:
        return INVALID_KEY
    # What the call would have cost (the reservation's estimate): spend the policy avoided.
    call.cost_prevented = Decimal(estimate_units(catalog, call)) / policy.EUR_UNITS
    if verdict == policy.RATE:
        return AqtaError(
            f"Rate limit of {admission.limit} requests per minute reached for this key.",
            code=ErrorCode.RATE_LIMIT_EXCEEDED,
            retry_after=max(admission.reset, 1),
        )
    if verdict == policy.LOOP:
        call.status, call.loop_detected = TraceStatus.SUPPRESSED, True
        wait = max(admission.retry_after, 1)
        return AqtaError(
            "Loop detected: this request repeats what this key just sent "
            f"(policy loop_guard). Retry after {wait} s.",
            code=ErrorCode.LOOP_DETECTED,
            retry_after=wait,
        )
    code, message = MONTHLY_REFUSALS[verdict]
    return AqtaError(message, code=code)


def _units(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount * policy.EUR_UNITS)
