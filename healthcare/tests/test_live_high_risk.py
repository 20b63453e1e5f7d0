"""High-risk rules on real /v1 calls (a live gateway before the mock provider): a request
match flags the trace, the receipt and an event; a blocking rule refuses the call with its
own receipt; an answer match flags what was already stored."""

from __future__ import annotations

import json

import httpx

from gateway.models import GatewayEvent, Trace
from gateway.tests.conftest import wait_for
from healthcare.highrisk import EVENT_KIND
from healthcare.models import Receipt
from healthcare.rules import high_risk_rule_create


def _chat(url: str, secret: str, text: str, **extra) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _trace(response: httpx.Response) -> Trace:
    trace_id = response.headers["x-request-id"]
    assert wait_for(lambda: Trace.objects.filter(id=trace_id[3:]).exists())
    return Trace.objects.get(id=trace_id[3:])


def test_a_triage_question_is_flagged_by_the_default_rules(live_gateway, make_key, mock):
    secret, _ = make_key(tier="healthcare")  # the default rules come with the tier

    flagged = _chat(live_gateway.url, secret, "I have crushing chest pain, what should I do?")
    plain = _chat(live_gateway.url, secret, "Summarise this meeting note about the budget.")

    assert flagged.status_code == plain.status_code == 200
    assert _trace(flagged).high_risk and not _trace(plain).high_risk
    receipt = Receipt.objects.get(trace_id=flagged.headers["x-request-id"])
    assert receipt.high_risk and receipt.outcome == "ALLOWED"
    assert "high_risk_guard" in json.loads(receipt.document)["policy_applied"]
    assert not Receipt.objects.get(trace_id=plain.headers["x-request-id"]).high_risk
    event = GatewayEvent.objects.get(kind=EVENT_KIND, trace_id=_trace(flagged).id)
    assert event.data["blocked"] is False
    assert [r["where"] for r in event.data["rules"]] == ["request"]
    assert "crushing" not in json.dumps(event.data).lower()  # never the text itself


def test_a_blocking_rule_refuses_the_call_with_a_blocked_receipt(live_gateway, make_key, mock):
    secret, api_key = make_key(tier="healthcare")
    high_risk_rule_create(
        organization=api_key.organization,
        name="No opioid dosing",
        category="dosage",
        pattern="oxycodone|fentanyl",
        scope="request",
        action="block",
    )

    response = _chat(live_gateway.url, secret, "How much fentanyl for a 70 kg adult?")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "high_risk_blocked"
    assert "No opioid dosing" in response.json()["error"]["message"]
    trace = _trace(response)
    assert (trace.status, trace.policy, trace.high_risk) == ("blocked", "high_risk_guard", True)
    receipt = Receipt.objects.get(trace_id=response.headers["x-request-id"])
    document = json.loads(receipt.document)
    assert document["outcome"] == "BLOCKED" and receipt.high_risk
    assert "high_risk_guard" in document["policy_applied"]
    assert "rate_limit" not in document["policy_applied"]  # refused before admission
    assert httpx.get(mock.url + "/_mock/stats").json()["chat_requests"] == 0


def test_an_answer_match_flags_the_stored_receipt(live_gateway, make_key, mock):
    secret, api_key = make_key(tier="healthcare")
    high_risk_rule_create(
        organization=api_key.organization,
        name="Mock answers",
        category="other",
        pattern="mock reply",
        scope="response",
    )

    for stream in (False, True):
        response = _chat(live_gateway.url, secret, "Tell me something.", stream=stream)
        assert response.status_code == 200
        trace = _trace(response)
        assert trace.high_risk
        receipts = Receipt.objects.filter(trace_id=response.headers["x-request-id"])
        assert wait_for(lambda receipts=receipts: receipts.get().high_risk)
        event = GatewayEvent.objects.get(kind=EVENT_KIND, trace_id=trace.id)
        assert [r["where"] for r in event.data["rules"]] == ["response"]
