"""Step 4, admission (gateway/dataplane/steps/admit.py): the key's rate limit, the loop
guard, the organisation's quota and the EUR budgets, embedded and on the tests' Redis.
A refusal carries its policy's code and reserves nothing."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest

from accounts.key_records import KeyRecord, revoked_marker
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane import policy
from gateway.dataplane.call import Call
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import admit, settle
from gateway.models import TraceStatus
from gateway.tests.dataplane.conftest import unreachable_redis
from gateway.tests.dataplane.steps.fakes import catalog, key_record, routed, run, runtime

TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
# An agent calling the same tool with the same arguments, three turns running.
CYCLE = [
    {"role": "user", "content": "Find it"},
    *[
        message
        for _ in range(3)
        for message in (
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "not found"},
        )
    ],
]


def outcomes(
    record: KeyRecord, times: int, redis_url: str | None = None, **fields: Any
) -> list[tuple[Call, AqtaError | None]]:
    """Admit ``times`` identical calls in turn: each call with what refused it, if any."""
    out: list[tuple[Call, AqtaError | None]] = []

    async def scenario() -> None:
        async with runtime(redis_url=redis_url) as rt:
            for _ in range(times):
                out.append(await attempt(rt, routed(rt.catalog, record, **fields)))

    run(scenario)
    return out


async def attempt(rt: Runtime, call: Call) -> tuple[Call, AqtaError | None]:
    try:
        await admit.admit(rt, call)
    except AqtaError as refusal:
        return call, refusal
    return call, None


def assert_refused_by(
    call: Call, error: AqtaError | None, code: ErrorCode, status: int, policy_name: str
) -> AqtaError:
    assert error is not None
    assert (error.code, error.status) == (code, status)
    assert call.policy == policy_name
    assert call.ask is None  # nothing reserved
    return error


def test_an_admitted_call_holds_its_claim_and_shows_its_limit(backend):
    [(call, error)] = outcomes(key_record(rate_limit_per_minute=5), 1, backend)
    assert error is None
    assert call.status == TraceStatus.PASSED and call.policy == ""
    assert call.admission is not None and call.admission.verdict == policy.OK
    assert call.ask is not None and call.ask.request_id == call.trace_id
    headers = dict(call.headers())
    assert headers[b"x-ratelimit-limit"] == b"5"
    assert headers[b"x-ratelimit-remaining"] == b"4"


def test_the_rate_limit_refuses_the_call_after_the_last_slot(backend):
    found = outcomes(key_record(rate_limit_per_minute=2), 3, backend)
    assert [error for _, error in found[:2]] == [None, None]
    call, error = found[2]
    error = assert_refused_by(call, error, ErrorCode.RATE_LIMIT_EXCEEDED, 429, "rate_limit")
    assert call.status == TraceStatus.BLOCKED
    assert error.message == "Rate limit of 2 requests per minute reached for this key."
    assert error.retry_after is not None and 1 <= error.retry_after <= 60
    assert dict(call.headers())[b"x-ratelimit-remaining"] == b"0"


def test_the_monthly_quota_refuses_the_call_after_the_last_request(backend):
    found = outcomes(key_record(monthly_request_quota=1), 2, backend)
    assert found[0][1] is None
    call, error = found[1]
    error = assert_refused_by(call, error, ErrorCode.QUOTA_EXCEEDED, 402, "quota")
    assert call.status == TraceStatus.BLOCKED
    assert error.message == "Monthly request quota exhausted for this organisation."


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"org_budget_eur": "0.0001"}, "Monthly EUR budget exhausted for this organisation."),
        ({"key_budget_eur": "0.0001"}, "Monthly EUR budget exhausted for this API key."),
    ],
    ids=["organisation", "key"],
)
def test_a_budget_smaller_than_the_calls_estimate_refuses_it(backend, budget, message):
    [(call, error)] = outcomes(key_record(**budget), 1, backend)
    error = assert_refused_by(call, error, ErrorCode.BUDGET_EXCEEDED, 402, "budget_guard")
    assert error.message == message
    assert call.status == TraceStatus.BLOCKED


def test_the_estimate_is_the_prompt_by_size_and_the_answer_at_its_cap():
    [(call, error)] = outcomes(key_record(org_budget_eur="10"), 1, max_tokens=100, n=2)
    assert error is None and call.ask is not None
    usage = Usage(prompt_tokens=len(call.raw) // 4, completion_tokens=200)
    assert usage.prompt_tokens > 0
    eur = catalog().cost_eur(catalog().models["gpt-4o-mini"], usage, call.ts)
    assert call.ask.estimate == math.ceil(eur * policy.EUR_UNITS) > 0
    assert call.ask.budget_org == 10 * policy.EUR_UNITS and call.ask.budget_key is None


def test_without_a_model_limit_the_answer_is_estimated_at_512_tokens():
    [(call, _)] = outcomes(key_record(key_budget_eur="1"), 1, model="gpt-4o")
    assert call.ask is not None
    prompt = len(call.raw) // 4
    eur = Decimal(prompt * 1 + 512 * 2) / 1_000_000 * Decimal("0.9")
    assert call.ask.estimate == math.ceil(eur * policy.EUR_UNITS)


def test_without_a_budget_nothing_is_reserved():
    [(call, error)] = outcomes(key_record(), 1)
    assert error is None and call.ask is not None and call.ask.estimate == 0


def test_the_same_request_past_the_loop_threshold_is_suppressed(backend):
    found = outcomes(key_record(loop_threshold=2), 3, backend)
    assert [error for _, error in found[:2]] == [None, None]
    call, error = found[2]
    error = assert_refused_by(call, error, ErrorCode.LOOP_DETECTED, 429, "loop_guard")
    assert call.status == TraceStatus.SUPPRESSED and call.loop_detected
    assert error.retry_after is not None and 1 <= error.retry_after <= 60
    assert error.message.startswith("Loop detected: this request repeats what this key just sent")
    assert call.cost_prevented > 0  # what the call would have cost, at its estimate


def test_a_different_request_is_not_a_repeat(backend):
    record = key_record(loop_threshold=1)
    first = outcomes(record, 1, backend, messages=[{"role": "user", "content": "one"}])
    second = outcomes(record, 1, backend, messages=[{"role": "user", "content": "two"}])
    assert first[0][1] is None and second[0][1] is None


def test_a_conversation_repeating_a_tool_call_cycle_is_suppressed_at_once(backend):
    [(call, error)] = outcomes(key_record(), 1, backend, messages=CYCLE)
    assert_refused_by(call, error, ErrorCode.LOOP_DETECTED, 429, "loop_guard")
    assert call.status == TraceStatus.SUPPRESSED


def test_a_revoked_key_is_refused_by_admission(redis_url):
    record = key_record()
    found: list[tuple[Call, AqtaError | None]] = []

    async def scenario() -> None:
        async with runtime(redis_url=redis_url) as rt:
            assert rt.redis is not None
            await rt.redis.set(revoked_marker(record.org_id, record.key_id), 1, ex=60)
            found.append(await attempt(rt, routed(rt.catalog, record)))

    run(scenario)
    [(call, error)] = found
    error = assert_refused_by(call, error, ErrorCode.INVALID_API_KEY, 401, "")
    assert call.status == TraceStatus.BLOCKED
    assert call.admission is not None and call.admission.verdict == policy.REVOKED


def without_redis(record: KeyRecord) -> tuple[Call, AqtaError | None]:
    found: list[tuple[Call, AqtaError | None]] = []

    async def scenario() -> None:
        client = unreachable_redis()
        async with runtime() as rt:
            rt = dataclasses.replace(rt, limiter=policy.RedisLimiter(client))
            found.append(await attempt(rt, routed(rt.catalog, record)))
        await client.aclose()

    run(scenario)
    return found[0]


def test_redis_unreachable_a_call_without_quota_or_budget_goes_ahead_unlimited():
    call, error = without_redis(key_record(rate_limit_per_minute=7))
    assert error is None
    assert call.admission == policy.Admission(policy.OK, 7, 7, 60)


@pytest.mark.parametrize(
    "limits",
    [{"monthly_request_quota": 10}, {"org_budget_eur": "5"}, {"key_budget_eur": "5"}],
    ids=["quota", "org-budget", "key-budget"],
)
def test_redis_unreachable_a_call_that_must_be_counted_is_refused(limits):
    call, error = without_redis(key_record(**limits))
    assert error is not None
    assert (error.code, error.status, error.retry_after) == (
        ErrorCode.SERVICE_UNAVAILABLE,
        503,
        1,
    )
    assert call.admission is None
    assert call.ask is None  # nothing was reserved: settling must give nothing back


def test_a_call_refused_while_redis_was_down_gives_nothing_back_once_it_is_up(redis_url):
    """Settling a call that still held its unreserved claim took its estimate off the
    organisation's and the key's spend: free budget."""
    record = key_record(org_budget_eur="5", key_budget_eur="5")
    call, error = without_redis(record)
    assert error is not None and error.code == ErrorCode.SERVICE_UNAVAILABLE
    spent: list[tuple[int, int]] = []

    async def scenario() -> None:
        async with runtime(redis_url=redis_url) as rt:
            await settle.settle(rt, call)
            spent.append(await rt.limiter.usage(record.org_id, call.ts))

    run(scenario)
    assert spent == [(0, 0)]
