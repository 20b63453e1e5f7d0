"""Live gateways keep storing every organisation's traces and usage past records that
cannot be stored, which wait in the dead-letter list instead."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis
from django.db.models import Sum

from gateway.dataplane.buffer import STREAM
from gateway.models import Trace, TraceDeadLetter, UsageCounter
from gateway.tests.conftest import ROOT, run_gateway, wait_for
from gateway.tests.test_traces import trace_record
from gateway.trace_ids import public
from tests.redis_server import redis_server

CALLS = 20
# A provider reporting absurd usage: the trace cannot be stored on any database.
ABSURD_USAGE = "Hi. mock:cache_read_input_tokens=9000000000000000000"


def _chat(url: str, secret: str, model: str, content: str = "Say hello.") -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _calls_of_another_organisation(url: str, secret: str) -> None:
    for i in range(CALLS):
        assert _chat(url, secret, "gpt-4o-mini", f"call {i}").status_code == 200


def _stored(api_key) -> tuple[int, int]:
    """(traces, requests counted in usage) of the key's organisation."""
    org = api_key.organization_id
    usage = UsageCounter.objects.filter(organization_id=org).aggregate(n=Sum("requests"))["n"]
    return Trace.objects.filter(organization_id=org).count(), usage or 0


def _nul_model_call(url: str, secret: str) -> str:
    response = _chat(url, secret, "x\u0000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    return response.headers["x-aqta-trace-id"]


def _assert_stored_with_the_nul_replaced(trace_id: str) -> None:
    trace = wait_for(lambda: Trace.objects.filter(id=trace_id).first())
    assert trace is not None and trace.model == "x\ufffd"


def test_the_in_process_buffer_stores_other_organisations_past_a_poison_call_live(mock, make_key):
    secret_a, _ = make_key()
    secret_b, key_b = make_key()
    with run_gateway(mock, redis_url=None) as live:
        nul = _nul_model_call(live.url, secret_a)
        absurd = _chat(live.url, secret_a, "claude-3-haiku-20240307", ABSURD_USAGE)
        assert absurd.status_code == 200
        _calls_of_another_organisation(live.url, secret_b)

        assert wait_for(lambda: _stored(key_b) == (CALLS, CALLS), timeout=15), _stored(key_b)
        letter = wait_for(
            lambda: (
                TraceDeadLetter.objects.filter(trace_id=absurd.headers["x-aqta-trace-id"])
                .only("source", "error")
                .first()
            )
        )

    assert letter is not None and letter.source == "local"
    assert "outside its column's range" in letter.error
    _assert_stored_with_the_nul_replaced(nul)


def _poison_entries(client: redis.Redis, api_key) -> tuple[bytes, dict]:
    """Put an entry that is not JSON and a record of the wrong type into the stream."""
    unreadable = b"{not json " + uuid.uuid4().hex.encode()
    wrong_type = trace_record(api_key, latency_ms="slow")
    client.xadd(STREAM, {"d": unreadable})
    client.xadd(STREAM, {"d": orjson.dumps(wrong_type)})
    return unreadable, wrong_type


def _parked(unreadable: bytes, wrong_type: dict) -> bool:
    letters = TraceDeadLetter.objects.filter(source="stream")
    return (
        letters.filter(payload=unreadable.decode()).exists()
        and letters.filter(trace_id=public(wrong_type["id"])).exists()
    )


def test_the_stream_stores_other_organisations_past_poison_entries_live(gw, make_key):
    if gw.redis_url is None:
        pytest.skip("no Redis here: the in-process buffer test covers this gateway")
    secret_a, key_a = make_key()
    secret_b, key_b = make_key()
    unreadable, wrong_type = _poison_entries(redis.Redis.from_url(gw.redis_url), key_a)
    nul = _nul_model_call(gw.url, secret_a)

    _calls_of_another_organisation(gw.url, secret_b)

    assert wait_for(lambda: _stored(key_b) == (CALLS, CALLS), timeout=15), _stored(key_b)
    assert wait_for(lambda: _parked(unreadable, wrong_type))
    _assert_stored_with_the_nul_replaced(nul)
    assert not Trace.objects.filter(id=wrong_type["id"]).exists()
    pending = [
        line
        for line in httpx.get(gw.url + "/metrics").text.splitlines()
        if line.startswith("aqta_trace_dead_letters_pending ")
    ]
    assert pending and float(pending[0].split()[1]) >= 2


@pytest.fixture
def own_redis(tmp_path) -> Iterator[str]:
    """A Redis server of this test's own: no other flusher may read the stream it checks."""
    with redis_server(tmp_path) as (_, port):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def flusher_beside(live, log) -> Iterator[subprocess.Popen]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_flusher"],
            cwd=ROOT,
            env=live.environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_run_flusher_parks_poison_counts_it_in_the_shared_metrics_and_alerts_once(
    own_redis, mock, make_key, tmp_path
):
    secret_a, key_a = make_key()
    secret_b, key_b = make_key()
    log = tmp_path / "flusher.log"
    with (
        run_gateway(mock, redis_url=own_redis, AQTA_FLUSH_IN_WORKERS="false") as live,
        flusher_beside(live, log),
    ):
        unreadable, wrong_type = _poison_entries(redis.Redis.from_url(own_redis), key_a)
        nul = _nul_model_call(live.url, secret_a)
        _calls_of_another_organisation(live.url, secret_b)

        assert wait_for(lambda: _stored(key_b) == (CALLS, CALLS), timeout=15), _stored(key_b)
        assert wait_for(lambda: _parked(unreadable, wrong_type))
        # The flusher's counter, read through a server worker's /metrics (one directory).
        metrics = httpx.get(live.url + "/metrics").text

    assert 'aqta_trace_dead_letters_total{source="stream"} 2.0' in metrics
    _assert_stored_with_the_nul_replaced(nul)
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1, log.read_text()
    assert "dead letter" in errors[0] and "aqta_trace_dead_letters_total" in errors[0]
