"""Healthcare receipts on the /v1 path: once the gateway has decided (forwarded, refused
by a policy, suppressed by the loop guard), a signed receipt of that decision is written,
and the client's answer waits for it (docs/receipts.md §6).

The write of a forwarded call runs while the provider is being asked, so it costs the
client nothing unless the database is slower than the provider. The answer's first byte
goes out only once the receipt is stored; if it cannot be stored the client gets 503
``receipts_unavailable`` instead (and the call is recorded as an error that consumed
nothing, like every failure of ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime

import orjson
from django.core.exceptions import ImproperlyConfigured

from aqta import metrics
from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http
from gateway.dataplane.call import Call
from gateway.dataplane.runtime import Runtime
from gateway.models import TraceStatus
from healthcare.receipts import Outcome, receipt_issue, request_hash
from healthcare.store import ReceiptValues, receipt_values

logger = logging.getLogger("aqta.receipts")

UNKNOWN_MODEL = "unknown"
OUTCOMES: dict[TraceStatus, Outcome] = {
    TraceStatus.PASSED: "ALLOWED",
    TraceStatus.BLOCKED: "BLOCKED",
    TraceStatus.SUPPRESSED: "SUPPRESSED",
}
UNAVAILABLE = AqtaError(
    "The gateway cannot record the receipt of this call right now; retry shortly. "
    "Nothing was counted against your limits.",
    code=ErrorCode.RECEIPTS_UNAVAILABLE,
    retry_after=1,
)


def wanted(call: Call) -> bool:
    return call.record is not None and call.record.receipts


def policies(call: Call) -> list[str]:
    """The policies the gateway evaluated for this call, in the order it did."""
    record = call.record
    assert record is not None
    evaluated = ["request_validation"]
    if call.body is None:
        return evaluated
    evaluated.append("model_access")
    if record.high_risk_rules and call.route is not None:
        evaluated.append("high_risk_guard")
    if call.admission is None:
        return evaluated
    evaluated += ["rate_limit", "loop_guard"]
    if record.monthly_request_quota is not None:
        evaluated.append("quota")
    if record.org_budget_eur is not None or record.key_budget_eur is not None:
        evaluated.append("budget_guard")
    return evaluated


def _values(call: Call, outcome: Outcome) -> ReceiptValues:
    record = call.record
    assert record is not None
    try:
        digest = request_hash(call.body) if call.body is not None else request_hash(call.raw)
    except ValueError:  # not JSON: the raw bytes' hash (docs/receipts.md §3)
        digest = hashlib.sha256(call.raw).hexdigest()
    receipt = receipt_issue(
        trace_id=call.trace_id,
        org_id=record.org_id,
        request_hash=digest,
        model=call.model[:512] or UNKNOWN_MODEL,
        outcome=outcome,
        policy_applied=policies(call),
        cost_prevented_eur=call.cost_prevented if outcome != "ALLOWED" else 0,
        timestamp=datetime.fromtimestamp(call.ts, UTC),
    )
    return receipt_values(receipt, api_key_id=record.key_id, high_risk=call.high_risk)


def begin(rt: Runtime, call: Call) -> None:
    """Start writing the receipt of the decision just taken (nothing for other tiers, or
    for a call that failed inside the gateway before any decision)."""
    if not wanted(call) or call.receipt is not None:
        return
    outcome = OUTCOMES.get(call.status)
    if outcome is None:
        return
    try:
        values = _values(call, outcome)
    except ImproperlyConfigured:  # no signing key: the call cannot have its receipt
        logger.error("no receipt signing key is configured", extra={"trace_id": call.trace_id})
        metrics.RECEIPT_WRITE_ERRORS.inc()
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(ImproperlyConfigured("no receipt signing key"))
        call.receipt = failed
        return
    call.receipt = asyncio.create_task(_write(rt, values))


async def _write(rt: Runtime, values: ReceiptValues) -> None:
    try:
        await rt.receipts.write(values)
    except Exception:
        metrics.RECEIPT_WRITE_ERRORS.inc()
        logger.exception("receipt not stored", extra={"trace_id": values.trace_id})
        raise


def gated(send: http.Send, call: Call) -> http.Send:
    """``send`` that holds the response back until the call's receipt is stored, and
    answers 503 instead when it could not be."""
    if not wanted(call):
        return send
    refused = False

    async def gate(message: http.Message) -> None:
        nonlocal refused
        if refused:
            return
        if message["type"] == "http.response.start" and call.receipt is not None:
            try:
                await asyncio.shield(call.receipt)
            except Exception:
                refused = True
                await _unavailable(send, call)
                return
        await send(message)

    return gate


async def _unavailable(send: http.Send, call: Call) -> None:
    call.status, call.policy = TraceStatus.ERROR, ""
    call.http_status, call.error_code = UNAVAILABLE.status, UNAVAILABLE.code
    headers = [*call.headers(), *http.error_headers(UNAVAILABLE)]
    with contextlib.suppress(Exception):
        await http.send_json(send, UNAVAILABLE.status, orjson.dumps(UNAVAILABLE.body()), headers)
