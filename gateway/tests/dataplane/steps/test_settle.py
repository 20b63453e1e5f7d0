"""Step 8, settle and record (gateway/dataplane/steps/settle.py): the budget reservation
replaced by the real cost, or everything admission took given back for a call that failed
inside the gateway; the trace record into the buffer. Embedded and on the tests' Redis."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from decimal import Decimal
from typing import Any

from accounts.key_records import KeyRecord
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway import crypto
from gateway.dataplane import policy
from gateway.dataplane.buffer import RedisBuffer
from gateway.dataplane.call import Call, call_new
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import admit, settle
from gateway.models import TraceStatus
from gateway.tests.dataplane.conftest import unreachable_redis
from gateway.tests.dataplane.steps.fakes import key_record, routed, run, runtime, traces

COST = Decimal("0.000018")


async def admitted(rt: Runtime, record: KeyRecord, **fields: Any) -> Call:
    call = routed(rt.catalog, record, **fields)
    await admit.admit(rt, call)
    return call


async def admitted_or_refused_then_settled(rt: Runtime, record: KeyRecord) -> Call:
    """A routed call through admission (a refusal answered as the pipeline answers it),
    then settled."""
    call = routed(rt.catalog, record)
    try:
        await admit.admit(rt, call)
    except AqtaError as refusal:
        call.http_status, call.error_code = refusal.status, refusal.code
    await settle.settle(rt, call)
    return call


def answered(call: Call) -> None:
    """What a successful answer leaves on the call."""
    call.usage, call.cost_eur, call.ttfb_ms = Usage(10, 5), COST, 12


async def used(rt: Runtime, record: KeyRecord, call: Call) -> tuple[int, int, int]:
    """(requests, organisation spend, rate-limit slots taken) of ``record``'s key."""
    requests, spend = await rt.limiter.usage(record.org_id, call.ts)
    rate_key = f"aqta:rl:{{{record.org_id}}}:{record.key_id}"
    if rt.redis is not None:
        slots = await rt.redis.zcard(rate_key)
    else:
        assert isinstance(rt.limiter, policy.LocalLimiter)
        slots = len(rt.limiter.logs.get(rate_key, ()))
    return requests, spend, slots


def test_an_answered_call_is_recorded_and_billed_its_real_cost(backend):
    record = key_record(org_budget_eur="5")
    out: dict[str, Any] = {}

    async def scenario() -> None:
        async with runtime(redis_url=backend) as rt:
            call = await admitted(rt, record)
            assert call.ask is not None and call.ask.estimate > math.ceil(COST * policy.EUR_UNITS)
            answered(call)
            await settle.settle(rt, call)
            out.update(call=call, used=await used(rt, record, call), traces=await traces(rt))

    run(scenario)
    call: Call = out["call"]
    assert out["used"] == (1, 1800, 1)  # the estimate replaced by 0.000018 EUR
    [trace] = out["traces"]
    assert trace["id"] == call.trace_id.removeprefix("tr_")
    assert {k: trace[k] for k in ("org_id", "key_id", "model", "provider")} == {
        "org_id": record.org_id,
        "key_id": record.key_id,
        "model": "gpt-4o-mini",
        "provider": "openai",
    }
    assert (trace["status"], trace["http_status"], trace["error_code"], trace["policy"]) == (
        "passed",
        200,
        "",
        "",
    )
    assert (trace["prompt_tokens"], trace["completion_tokens"], trace["cost_eur"]) == (
        10,
        5,
        "0.000018",
    )
    assert trace["ttfb_ms"] == 12 and trace["latency_ms"] >= 0
    assert trace["request_sha256"] == hashlib.sha256(call.raw).hexdigest()
    assert (trace["stream"], trace["cached"], trace["loop_detected"]) == (False, False, False)
    assert "content" not in trace and "events" not in trace
    assert call.finished


def test_a_call_that_failed_inside_the_gateway_gives_everything_back(backend):
    record = key_record(org_budget_eur="5", rate_limit_per_minute=3)
    out: dict[str, Any] = {}

    async def scenario() -> None:
        async with runtime(redis_url=backend) as rt:
            call = await admitted(rt, record)
            out["before"] = await used(rt, record, call)
            answered(call)  # usage seen before the bug: still not billed
            call.status, call.http_status, call.error_code = (
                TraceStatus.ERROR,
                500,
                ErrorCode.INTERNAL_ERROR,
            )
            await settle.settle(rt, call)
            out.update(after=await used(rt, record, call), traces=await traces(rt))

    run(scenario)
    assert out["before"][0] == 1 and out["before"][1] > 0 and out["before"][2] == 1
    assert out["after"] == (0, 0, 0)
    [trace] = out["traces"]
    assert (trace["status"], trace["http_status"], trace["error_code"]) == (
        "error",
        500,
        "internal_error",
    )
    assert (trace["cost_eur"], trace["prompt_tokens"], trace["completion_tokens"]) == ("0", 0, 0)


def test_a_refused_call_is_recorded_with_its_policy_and_costs_nothing(backend):
    record = key_record(rate_limit_per_minute=1, org_budget_eur="5")
    out: dict[str, Any] = {}

    async def scenario() -> None:
        async with runtime(redis_url=backend) as rt:
            first = await admitted(rt, record)
            answered(first)
            await settle.settle(rt, first)
            call = await admitted_or_refused_then_settled(rt, record)
            out.update(used=await used(rt, record, call), traces=await traces(rt))

    run(scenario)
    assert out["used"] == (1, 1800, 1)  # the first call's only
    refused = out["traces"][1]
    assert (
        refused["status"],
        refused["policy"],
        refused["http_status"],
        refused["error_code"],
    ) == (
        "blocked",
        "rate_limit",
        429,
        "rate_limit_exceeded",
    )
    assert refused["cost_eur"] == "0"


def test_a_suppressed_loop_is_recorded_as_a_loop_event():
    record = key_record(loop_threshold=1)
    records: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with runtime() as rt:
            for _ in range(2):
                await admitted_or_refused_then_settled(rt, record)
            records.extend(await traces(rt))

    run(scenario)
    loop = records[1]
    assert (loop["status"], loop["events"][0]["kind"], loop["loop_detected"], loop["policy"]) == (
        "suppressed",
        "loop_detected",
        True,
        "loop_guard",
    )
    assert Decimal(loop["cost_prevented_eur"]) > 0
    assert "events" not in records[0]


def test_with_content_logging_the_request_and_answer_are_stored_encrypted():
    record = key_record(content_logging=True)
    records: list[dict[str, Any]] = []
    raw: list[bytes] = []

    async def scenario() -> None:
        async with runtime() as rt:
            call = await admitted(rt, record)
            answered(call)
            call.completion = "Hi there"
            raw.append(call.raw)
            await settle.settle(rt, call)
            records.extend(await traces(rt))

    run(scenario)
    content = records[0]["content"]
    assert raw[0].decode() not in content["request"]
    assert crypto.decrypt(content["request"]) == raw[0].decode()
    assert crypto.decrypt(content["response"]) == "Hi there"


def test_a_call_without_a_key_is_not_recorded_and_a_call_is_recorded_once():
    counts: list[int] = []

    async def scenario() -> None:
        async with runtime() as rt:
            await settle.settle(rt, call_new())  # the client left before sending its body
            counts.append(len(await traces(rt)))
            call = await admitted(rt, key_record())
            await settle.settle(rt, call)
            await settle.settle(rt, call)
            counts.append(len(await traces(rt)))

    run(scenario)
    assert counts == [0, 1]


def test_redis_unreachable_the_trace_is_kept_in_this_process():
    record = key_record()
    out: dict[str, Any] = {}

    async def scenario() -> None:
        client = unreachable_redis()
        async with runtime() as rt:
            call = await admitted(rt, record)
            answered(call)
            buffer = RedisBuffer(client, client)
            down = dataclasses.replace(rt, redis=client, buffer=buffer)
            await settle.settle(down, call)
            out.update(call=call, kept=list(buffer.fallback.items))
        await client.aclose()

    run(scenario)
    [trace] = out["kept"]
    assert trace["id"] == out["call"].trace_id.removeprefix("tr_")
    assert trace["status"] == "passed" and trace["cost_eur"] == "0.000018"
    assert out["call"].finished
