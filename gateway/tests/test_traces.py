"""Writing buffered trace records: traces, content, events, usage counters, key last use."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from accounts.models import ApiKey
from gateway import crypto
from gateway.models import GatewayEvent, Trace, TraceContent, UsageCounter
from gateway.traces import write_batch

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()
MARCH = date(2025, 3, 1)
REQUEST = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'


@pytest.fixture(autouse=True)
def _keep_the_test_connection(monkeypatch):
    # write_batch drops stale connections because it runs in a worker thread; inside the
    # test's transaction that would close the connection the test is using.
    monkeypatch.setattr("gateway.traces.close_old_connections", lambda: None)


def trace_record(api_key: ApiKey, **changes) -> dict:
    """A record shaped like ``Gateway.trace_record`` builds it: a passed, billed call."""
    record = {
        "id": str(uuid.uuid4()),
        "ts": T0,
        "org_id": str(api_key.organization_id),
        "key_id": str(api_key.pk),
        "model": "gpt-4o-mini",
        "provider": "openai",
        "status": "passed",
        "http_status": 200,
        "error_code": "",
        "policy": "",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cached_tokens": 4,
        "cost_eur": "0.00001722",
        "cost_prevented_eur": "0",
        "latency_ms": 812,
        "ttfb_ms": 240,
        "stream": True,
        "cached": False,
        "loop_detected": False,
        "client_disconnected": False,
        "request_sha256": hashlib.sha256(REQUEST).hexdigest(),
    }
    return {**record, **changes}


def loop_record(api_key: ApiKey, **changes) -> dict:
    """A request the loop guard suppressed, as the gateway records it."""
    return trace_record(
        api_key,
        status="suppressed",
        http_status=429,
        error_code="loop_detected",
        policy="loop_guard",
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        cost_eur="0",
        cost_prevented_eur="0.00031000",
        ttfb_ms=None,
        stream=False,
        loop_detected=True,
        event="loop_detected",
        **changes,
    )


@pytest.fixture
def key(api_key) -> ApiKey:
    return api_key[0]


def test_it_stores_a_trace_with_every_field(db, key):
    record = trace_record(key)

    assert write_batch([record]) == 1

    trace = Trace.objects.get(id=record["id"])
    assert trace.created_at == datetime.fromtimestamp(T0, UTC)
    assert (trace.organization_id, trace.api_key_id) == (key.organization_id, key.pk)
    assert (trace.model, trace.provider, trace.status) == ("gpt-4o-mini", "openai", "passed")
    assert (trace.http_status, trace.error_code, trace.policy) == (200, "", "")
    assert (trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens) == (12, 30, 4)
    assert trace.cost_eur == Decimal("0.00001722")
    assert trace.cost_prevented_eur == Decimal(0)
    assert (trace.latency_ms, trace.ttfb_ms) == (812, 240)
    assert (trace.stream, trace.cached) == (True, False)
    assert (trace.loop_detected, trace.client_disconnected) == (False, False)
    assert trace.request_sha256 == record["request_sha256"]


def test_it_stores_a_refused_call_with_its_error(db, key):
    record = trace_record(
        key, status="blocked", http_status=402, error_code="quota_exceeded", policy="quota"
    )

    write_batch([record])

    trace = Trace.objects.get(id=record["id"])
    assert (trace.status, trace.http_status) == ("blocked", 402)
    assert (trace.error_code, trace.policy) == ("quota_exceeded", "quota")


def test_it_stores_content_only_for_records_that_carry_it(db, key):
    logged = trace_record(
        key,
        content={"request": crypto.encrypt(REQUEST.decode()), "response": crypto.encrypt("Hi!")},
    )
    unlogged = trace_record(key)

    write_batch([logged, unlogged])

    content = TraceContent.objects.get(trace_id=logged["id"])
    assert crypto.decrypt(content.request_encrypted) == REQUEST.decode()
    assert crypto.decrypt(content.response_encrypted) == "Hi!"
    assert not TraceContent.objects.filter(trace_id=unlogged["id"]).exists()


def test_it_stores_content_without_a_response(db, key):
    record = trace_record(key, content={"request": crypto.encrypt(REQUEST.decode())})

    write_batch([record])

    assert TraceContent.objects.get(trace_id=record["id"]).response_encrypted == ""


def test_a_loop_detection_creates_a_gateway_event(db, key):
    record = loop_record(key, ts=T0 + 5)

    write_batch([record, trace_record(key)])

    event = GatewayEvent.objects.get()
    assert (event.kind, event.organization_id) == ("loop_detected", key.organization_id)
    assert str(event.trace_id) == record["id"]
    assert event.data == {"model": "gpt-4o-mini", "cost_prevented_eur": "0.00031000"}
    assert event.created_at == datetime.fromtimestamp(T0 + 5, UTC)
    assert event.delivered_at is None
    assert Trace.objects.get(id=record["id"]).loop_detected


def test_usage_counts_only_passed_calls(db, key):
    batch = [
        trace_record(key, prompt_tokens=10, completion_tokens=20, cost_eur="0.00100000"),
        trace_record(key, prompt_tokens=5, completion_tokens=7, cost_eur="0.00000003"),
        trace_record(key, status="blocked", http_status=429, prompt_tokens=99, cost_eur="1"),
        loop_record(key),
    ]

    assert write_batch(batch) == 4

    counter = UsageCounter.objects.get()
    assert (counter.organization_id, counter.api_key_id, counter.month) == (
        key.organization_id,
        key.pk,
        MARCH,
    )
    assert (counter.requests, counter.prompt_tokens, counter.completion_tokens) == (2, 15, 27)
    assert counter.cost_eur == Decimal("0.00100003")


def test_usage_adds_to_the_month_it_happened_in(db, key):
    april = datetime(2025, 4, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    write_batch([trace_record(key, cost_eur="0.5")])

    write_batch([trace_record(key, cost_eur="0.25"), trace_record(key, ts=april, cost_eur="2")])

    counters = {c.month: c for c in UsageCounter.objects.all()}
    assert set(counters) == {MARCH, date(2025, 4, 1)}
    assert (counters[MARCH].requests, counters[MARCH].cost_eur) == (2, Decimal("0.75"))
    assert (counters[date(2025, 4, 1)].requests, counters[date(2025, 4, 1)].cost_eur) == (
        1,
        Decimal(2),
    )


def test_writing_the_same_batch_twice_stores_and_counts_it_once(db, key):
    batch = [
        trace_record(key, content={"request": crypto.encrypt("{}")}),
        trace_record(key, prompt_tokens=3),
        loop_record(key),
    ]

    assert write_batch(batch) == 3
    assert write_batch(batch) == 0

    assert Trace.objects.count() == 3
    assert TraceContent.objects.count() == 1
    assert GatewayEvent.objects.count() == 1
    counter = UsageCounter.objects.get()
    assert (counter.requests, counter.prompt_tokens) == (2, 15)


def test_a_batch_overlapping_a_stored_one_counts_only_the_new_records(db, key):
    first, second = trace_record(key), trace_record(key)
    write_batch([first])

    assert write_batch([first, second]) == 1

    assert UsageCounter.objects.get().requests == 2


def test_a_record_present_twice_in_a_batch_is_counted_once(db, key):
    record = loop_record(key)
    passed = trace_record(key)

    write_batch([passed, record, passed, record])

    assert Trace.objects.count() == 2
    assert UsageCounter.objects.get().requests == 1
    assert GatewayEvent.objects.count() == 1


def test_a_record_of_a_deleted_organisation_is_dropped_without_losing_the_batch(
    transactional_db, caplog
):
    # Foreign keys are checked when the transaction commits, so this test needs real commits.
    from accounts.services import api_key_create, organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get
    from gateway.tests.conftest import seed_catalogue

    seed_catalogue()
    owner = UserFactory()
    org = organization_create(name="Acme", owner=owner, tier=tier_get(slug="pro"))
    key, _ = api_key_create(organization=org, created_by=owner, name="ci")
    before, orphan, after = (
        trace_record(key),
        trace_record(key, org_id=str(uuid.uuid4()), key_id=None),
        loop_record(key),
    )

    assert write_batch([before, orphan, after]) == 2

    assert set(Trace.objects.values_list("id", flat=True)) == {
        uuid.UUID(before["id"]),
        uuid.UUID(after["id"]),
    }
    assert UsageCounter.objects.get().requests == 1
    assert GatewayEvent.objects.get().trace_id == uuid.UUID(after["id"])
    assert orphan["id"] in caplog.text


def test_it_sets_the_keys_last_use_to_its_latest_record(db, key):
    write_batch([trace_record(key, ts=T0 + 10), trace_record(key, ts=T0 + 30), loop_record(key)])

    key.refresh_from_db()
    assert key.last_used_at == datetime.fromtimestamp(T0 + 30, UTC)


def test_it_never_moves_a_keys_last_use_backwards(db, key):
    write_batch([trace_record(key, ts=T0 + 30)])

    write_batch([trace_record(key, ts=T0 + 10)])

    key.refresh_from_db()
    assert key.last_used_at == datetime.fromtimestamp(T0 + 30, UTC)


def test_a_later_batch_moves_the_keys_last_use_forward(db, key):
    write_batch([trace_record(key, ts=T0)])

    write_batch([trace_record(key, ts=T0 + 60.25)])

    key.refresh_from_db()
    assert key.last_used_at == datetime.fromtimestamp(T0 + 60.25, UTC)


def test_a_record_without_a_key_touches_no_key(db, key):
    record = trace_record(key, key_id=None)

    write_batch([record])

    key.refresh_from_db()
    assert key.last_used_at is None
    assert Trace.objects.get(id=record["id"]).api_key_id is None
    assert UsageCounter.objects.get().api_key_id is None
