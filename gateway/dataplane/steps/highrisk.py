"""Healthcare high-risk rules on the /v1 path (docs/high-risk.md): the request is scanned
before admission (a blocking rule refuses the call, as policy ``high_risk_guard``), the
answer once it is known (a match only flags: the provider was already called). A match
marks the trace and the receipt as high-risk and leaves a ``high_risk_detected`` event.
The text is read in memory only; it is stored only with content logging."""

from __future__ import annotations

from typing import Any

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.call import Call
from gateway.models import TraceStatus
from healthcare import highrisk

POLICY = "high_risk_guard"


def request(call: Call) -> None:
    """Scan the request; raise the refusal when a blocking rule matches."""
    record = call.record
    if record is None or not record.high_risk_rules:
        return
    matches = highrisk.scan(record.high_risk_rules, highrisk.request_text(call.body), "request")
    if not matches:
        return
    call.high_risk, call.high_risk_request = True, matches
    if highrisk.blocks(matches):
        blocking = next(m for m in matches if m.action == highrisk.BLOCK)
        call.status, call.policy = TraceStatus.BLOCKED, POLICY
        raise AqtaError(
            f"This request was blocked by the organisation's high-risk rule "
            f"{blocking.name!r} ({blocking.category}).",
            code=ErrorCode.HIGH_RISK_BLOCKED,
        )


def response(call: Call, answer: object) -> None:
    """Scan an answer (a completion, or a stream's text): flags only."""
    record = call.record
    if record is None or not record.high_risk_rules:
        return
    text = answer if isinstance(answer, str) else highrisk.response_text(answer)
    matches = highrisk.scan(record.high_risk_rules, text, "response")
    if matches:
        call.high_risk, call.high_risk_response = True, matches


def wanted(call: Call) -> bool:
    """Whether the answer's text must be kept for :func:`response`."""
    return call.record is not None and bool(call.record.high_risk_rules)


def event(call: Call) -> dict[str, Any] | None:
    """The ``high_risk_detected`` event of the call, if any rule matched."""
    if not call.high_risk:
        return None
    data = highrisk.event_data(call.high_risk_request, call.high_risk_response)
    return {"kind": highrisk.EVENT_KIND, "data": {"model": call.model, **data}}
