"""Writing buffered trace records: traces, content, events, usage counters, key last use."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest
import redis.asyncio
from django.db import close_old_connections, connection
from prometheus_client import REGISTRY

from accounts.models import ApiKey
from gateway import crypto
from gateway import storage as traces
from gateway.dataplane.buffer import GROUP, LocalBuffer, RedisBuffer
from gateway.models import (
    GatewayEvent,
    Trace,
    TraceContent,
    TraceDeadLetter,
    UsageCounter,
)
from gateway.storage import StorageUnavailable, write_batch
from gateway.tests.conftest import MakeKey, redis_url_for_tests
from gateway.trace_ids import public

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()
MARCH = date(2025, 3, 1)
REQUEST = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'


@pytest.fixture(autouse=True)
def _keep_the_test_connection(monkeypatch):
    # write_batch drops stale connections because it runs in a worker thread; inside the
    # test's transaction that would close the connection the test is using. The buffers'
    # worker threads keep doing it, or their connections would outlive the test database.
    def close_unless_the_tests_own() -> None:
        if threading.current_thread() is not threading.main_thread():
            close_old_connections()

    monkeypatch.setattr("gateway.storage.close_old_connections", close_unless_the_tests_own)


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
def key(api_key: tuple[ApiKey, str]) -> ApiKey:
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


def test_a_record_of_a_deleted_organisation_is_parked_without_losing_the_batch(transactional_db):
    # Foreign keys are checked when the transaction commits, so this test needs real commits.
    from accounts.services import api_key_create, organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get
    from gateway.tests.conftest import seed_catalogue

    seed_catalogue()
    owner = UserFactory.create()
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
    letter = TraceDeadLetter.objects.get()
    assert (letter.trace_id, letter.organization_id) == (public(orphan["id"]), orphan["org_id"])
    assert orjson.loads(letter.payload) == orphan


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


# --- What cannot be stored -------------------------------------------------------------------

# A value of the wrong type: refused on every database, and not something cleaning can repair.
POISON = {"latency_ms": "slow"}


def dead_letters_counted(source: str) -> float:
    return REGISTRY.get_sample_value("aqta_trace_dead_letters_total", {"source": source}) or 0.0


@pytest.fixture
def fresh_alert(monkeypatch):
    """This process has not alerted about dead letters yet."""
    monkeypatch.setattr(traces, "_dead_letter_alerted", False)


def test_a_nul_in_any_text_field_is_replaced_and_the_record_is_stored(db, key):
    # PostgreSQL refuses NUL in text and JSON columns; the model name comes from the client.
    record = {
        **loop_record(key),
        "model": "x\u0000y",
        "provider": "open\u0000ai",
        "error_code": "loop\u0000detected",
        "policy": "loop\u0000guard",
        "request_sha256": "ab\u0000cd",
        "content": {"request": "req\u0000uest", "response": "\u0000"},
    }

    assert write_batch([record]) == 1

    trace = Trace.objects.get(id=record["id"])
    assert (trace.model, trace.provider) == ("x\ufffdy", "open\ufffdai")
    assert (trace.error_code, trace.policy) == ("loop\ufffddetected", "loop\ufffdguard")
    assert trace.request_sha256 == "ab\ufffdcd"
    content = TraceContent.objects.get(trace_id=record["id"])
    assert (content.request_encrypted, content.response_encrypted) == ("req\ufffduest", "\ufffd")
    assert GatewayEvent.objects.get().data["model"] == "x\ufffdy"
    assert not TraceDeadLetter.objects.exists()


def test_text_longer_than_its_column_is_cut_to_fit(db, key):
    record = {
        **loop_record(key),
        "model": "m" * 500,
        "provider": "p" * 100,
        "error_code": "e" * 100,
        "policy": "q" * 100,
        "request_sha256": "f" * 100,
        "event": "k" * 100,
    }

    assert write_batch([record]) == 1

    trace = Trace.objects.get(id=record["id"])
    assert trace.model == "m" * 120 and trace.provider == "p" * 40
    assert trace.error_code == "e" * 40 and trace.policy == "q" * 30
    assert trace.request_sha256 == "f" * 64
    event = GatewayEvent.objects.get()
    assert event.kind == "k" * 40 and event.data["model"] == "m" * 120


def test_a_number_too_large_for_its_column_is_parked_on_every_database(db, key, fresh_alert):
    # A provider reporting absurd usage: PostgreSQL refuses the row, SQLite would store a
    # cost that no read could turn back into a Decimal.
    tokens = trace_record(key, prompt_tokens=9_000_000_000_000_000_016)
    cost = trace_record(key, cost_eur="234900000000.00002523")
    fine = trace_record(key)

    assert write_batch([tokens, cost, fine]) == 1

    assert list(Trace.objects.values_list("id", flat=True)) == [uuid.UUID(fine["id"])]
    errors = dict(TraceDeadLetter.objects.values_list("trace_id", "error"))
    assert set(errors) == {public(tokens["id"]), public(cost["id"])}
    assert "prompt_tokens" in errors[public(tokens["id"])]
    assert "cost_eur" in errors[public(cost["id"])]
    assert UsageCounter.objects.get().requests == 1


def test_a_poison_record_is_parked_with_its_error_and_the_rest_is_stored(db, key, fresh_alert):
    first = trace_record(key, prompt_tokens=10, cost_eur="0.001")
    poison = trace_record(key, **POISON)
    last = trace_record(key, prompt_tokens=5, cost_eur="0.002")

    assert write_batch([first, poison, last]) == 2

    assert set(Trace.objects.values_list("id", flat=True)) == {
        uuid.UUID(first["id"]),
        uuid.UUID(last["id"]),
    }
    counter = UsageCounter.objects.get()  # counted once per stored trace, never the poison
    assert (counter.requests, counter.prompt_tokens) == (2, 15)
    assert counter.cost_eur == Decimal("0.003")
    letter = TraceDeadLetter.objects.get()
    assert letter.source == "local" and letter.attempts == 1
    assert (letter.trace_id, letter.organization_id) == (public(poison["id"]), poison["org_id"])
    assert "latency_ms" in letter.error and "slow" in letter.error
    assert orjson.loads(letter.payload) == poison


def test_a_batch_holding_only_a_poison_record_parks_it(db, key, fresh_alert):
    poison = trace_record(key, **POISON)

    assert write_batch([poison]) == 0

    assert not Trace.objects.exists()
    assert TraceDeadLetter.objects.get().trace_id == public(poison["id"])


def test_parking_alerts_the_log_once_per_process_and_counts_every_record(
    db, key, fresh_alert, caplog
):
    before = dead_letters_counted("local")

    with caplog.at_level(logging.INFO, logger="aqta.gateway.storage"):
        write_batch([trace_record(key, **POISON), trace_record(key)])
        write_batch([trace_record(key, **POISON), trace_record(key, **POISON)])

    assert TraceDeadLetter.objects.count() == 3
    assert dead_letters_counted("local") - before == 3
    alerts = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(alerts) == 1
    assert alerts[0].levelno == logging.ERROR
    assert "aqta_trace_dead_letters_total" in alerts[0].getMessage()


def test_the_same_record_parked_twice_is_one_dead_letter(db, key, fresh_alert):
    poison = trace_record(key, **POISON)

    write_batch([poison])
    write_batch([poison])

    assert TraceDeadLetter.objects.count() == 1


@contextlib.contextmanager
def refusing_writes():
    """The database answers but refuses every write, as a standby does after a failover."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SET SESSION default_transaction_read_only = on")
        else:
            cursor.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if vendor == "postgresql":
                cursor.execute("SET SESSION default_transaction_read_only = off")
            else:
                cursor.execute("PRAGMA query_only = OFF")


def test_when_the_database_refuses_writes_nothing_is_parked_and_the_batch_can_be_retried(
    committed_key, fresh_alert
):
    key = committed_key
    batch = [trace_record(key), trace_record(key, **POISON), loop_record(key)]

    with refusing_writes(), pytest.raises(StorageUnavailable):
        write_batch(batch)

    assert not TraceDeadLetter.objects.exists() and not Trace.objects.exists()
    assert write_batch(batch) == 2
    assert TraceDeadLetter.objects.get().trace_id == public(batch[1]["id"])
    assert UsageCounter.objects.get().requests == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def database_unreachable():
    """New connections (every thread's) fail as if the database server were down."""
    settings_dict = connection.settings_dict  # the dict every thread's connection shares
    saved = dict(settings_dict)
    if connection.vendor == "postgresql":
        # Nothing listens on that port; without the pool the refusal is immediate.
        settings_dict.update(
            HOST="127.0.0.1",
            PORT=str(_free_port()),
            OPTIONS={k: v for k, v in saved["OPTIONS"].items() if k != "pool"},
        )
    else:
        settings_dict["NAME"] = "/nonexistent-directory/aqta.sqlite3"
    try:
        yield
    finally:
        settings_dict.clear()
        settings_dict.update(saved)


@pytest.fixture
def committed_key(make_key: MakeKey) -> ApiKey:
    """A key whose organisation other threads' connections see (the buffers write from one)."""
    return make_key()[1]


def test_the_local_buffer_parks_a_poison_record_and_stores_the_rest(committed_key, fresh_alert):
    buffer = LocalBuffer()
    good = [trace_record(committed_key) for _ in range(3)]
    poison = trace_record(committed_key, **POISON)
    for record in (good[0], poison, *good[1:]):
        buffer.add(record)

    assert asyncio.run(buffer.flush_once()) == 3

    assert buffer.items == []
    assert Trace.objects.count() == 3 and UsageCounter.objects.get().requests == 3
    letter = TraceDeadLetter.objects.get()
    assert (letter.trace_id, letter.source) == (public(poison["id"]), "local")


def test_the_local_buffer_keeps_every_record_while_the_database_is_unreachable(
    committed_key, fresh_alert
):
    buffer = LocalBuffer()
    records = [trace_record(committed_key), trace_record(committed_key, **POISON)]
    for record in records:
        buffer.add(record)

    with database_unreachable():
        assert asyncio.run(buffer.flush_once()) == 0
        assert len(buffer.items) == 2

    assert not TraceDeadLetter.objects.exists()
    assert asyncio.run(buffer.flush_once()) == 1
    assert buffer.items == [] and Trace.objects.count() == 1
    assert TraceDeadLetter.objects.get().trace_id == public(records[1]["id"])


@pytest.fixture
def stream_url() -> str:
    url = redis_url_for_tests()
    if url is None:
        pytest.skip("needs a reachable Redis: the stream lives there")
    return url


async def _with_stream_buffer(url: str, run):
    """A RedisBuffer on a stream of the test's own (a live gateway may share this Redis)."""
    client = redis.asyncio.Redis.from_url(url)
    reader = redis.asyncio.Redis.from_url(url, socket_timeout=5)
    buffer = RedisBuffer(client, reader, stream=f"aqta:test-traces:{uuid.uuid4().hex}")
    try:
        await buffer.ensure_group()
        return await run(buffer, client)
    finally:
        await client.delete(buffer.stream)
        await client.aclose()
        await reader.aclose()


def test_the_stream_parks_unreadable_entries_and_stores_the_rest(
    committed_key, stream_url, fresh_alert
):
    good = trace_record(committed_key)
    poison = trace_record(committed_key, **POISON)

    async def scenario(buffer, client):
        await client.xadd(buffer.stream, {"d": orjson.dumps(good)})
        await client.xadd(buffer.stream, {"d": b"{not json"})
        await client.xadd(buffer.stream, {"d": orjson.dumps(poison)})
        await client.xadd(buffer.stream, {"other": b"field"})
        await client.xadd(buffer.stream, {"d": b"[1, 2]"})
        read = await buffer.flush_once()
        pending = await client.xpending(buffer.stream, GROUP)
        return read, await client.xlen(buffer.stream), pending["pending"]

    read, left, pending = asyncio.run(_with_stream_buffer(stream_url, scenario))

    assert (read, left, pending) == (5, 0, 0)
    assert list(Trace.objects.values_list("id", flat=True)) == [uuid.UUID(good["id"])]
    letters = TraceDeadLetter.objects.order_by("created_at", "pk")
    assert [letter.source for letter in letters] == ["stream"] * 4
    assert {letter.trace_id for letter in letters} == {"", public(poison["id"])}
    assert any(letter.payload == "{not json" for letter in letters)


def _dead_letters_exist() -> bool:
    try:
        return TraceDeadLetter.objects.exists()
    finally:
        connection.close()  # this thread's connection: the pool gets it back


def test_the_stream_keeps_entries_while_the_database_is_unreachable_and_stores_them_after(
    committed_key, stream_url, fresh_alert
):
    records = [trace_record(committed_key), trace_record(committed_key), loop_record(committed_key)]

    async def scenario(buffer, client):
        for record in records:
            await client.xadd(buffer.stream, {"d": orjson.dumps(record)})
        with database_unreachable():
            with pytest.raises(StorageUnavailable):
                await buffer.flush_once()
            assert await client.xlen(buffer.stream) == 3
        assert not await asyncio.to_thread(_dead_letters_exist)
        # The same flusher retries what it holds as soon as the database answers again.
        stored = await buffer.flush_once()
        return stored, await client.xlen(buffer.stream)

    stored, left = asyncio.run(_with_stream_buffer(stream_url, scenario))

    assert (stored, left) == (3, 0)
    assert Trace.objects.count() == 3 and UsageCounter.objects.get().requests == 2
    assert not TraceDeadLetter.objects.exists()


def test_replaying_a_dead_letter_stores_it_once_its_cause_is_gone(committed_key, fresh_alert):
    from accounts.models import Organization

    missing = uuid.uuid4()
    record = trace_record(committed_key, org_id=str(missing), key_id=None, cost_eur="0.5")
    write_batch([record])
    letter = TraceDeadLetter.objects.get()
    # E.g. the organisation is restored from a backup.
    Organization.objects.create(
        id=missing, name="Restored", slug="restored", tier=committed_key.organization.tier
    )

    assert traces.dead_letters_replay(TraceDeadLetter.objects.all()) == (1, 0)
    assert traces.dead_letters_replay(TraceDeadLetter.objects.all()) == (0, 0)

    assert Trace.objects.get().id == uuid.UUID(record["id"])
    assert not TraceDeadLetter.objects.filter(pk=letter.pk).exists()
    counter = UsageCounter.objects.get(organization_id=missing)
    assert (counter.requests, counter.cost_eur) == (1, Decimal("0.5"))


def test_replaying_a_dead_letter_that_still_fails_keeps_it_with_the_new_error(db, key, fresh_alert):
    write_batch([trace_record(key, **POISON)])
    before = TraceDeadLetter.objects.get()

    assert traces.dead_letters_replay(TraceDeadLetter.objects.all()) == (0, 1)

    after = TraceDeadLetter.objects.get()
    assert after.attempts == 2 and after.last_attempt_at >= before.last_attempt_at
    assert "latency_ms" in after.error
