"""A bias run survives its worker: a real Celery worker on the Redis broker is killed with
SIGKILL half-way through a probe run; another worker takes the message over (late
acknowledgement, the visibility timeout), waits out the dead worker's lease, and the run
completes once, with every probe answered and billed exactly once."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys

import httpx
import pytest
import redis
from django.db import connection

from compliance.bias.probes import DEFAULT_PROBE_SET
from compliance.models import AuditEvent, BiasRun, JobStatus, ProbeCall, ProbeCallStatus
from gateway.mock_provider import MockConfig, MockServer
from gateway.models import Trace, TraceDeadLetter
from gateway.tests.conftest import (
    ROOT,
    drain_traces,
    redis_url_for_tests,
    run_gateway,
    seed_catalogue,
    wait_for,
)

REDIS = redis_url_for_tests()
pytestmark = pytest.mark.skipif(REDIS is None, reason="needs a Redis server for the Celery broker")

JOB_ENV = {
    "AQTA_JOB_LEASE_SECONDS": "3",
    "AQTA_PROBE_RESEND_AFTER_SECONDS": "2",
    "AQTA_CELERY_VISIBILITY_TIMEOUT": "4",
}


def _definition() -> dict:
    definition = copy.deepcopy(DEFAULT_PROBE_SET)
    definition["name"] = "Triage, three attributes"
    keep = ("sex", "age_band", "insurance")  # 9 variants a repetition
    definition["attributes"] = {k: definition["attributes"][k] for k in keep}
    case = next(c for c in definition["cases"] if c["id"] == "triage-chest-pain")
    definition["cases"] = [{**case, "outcomes": ["high_urgency"]}]
    definition["outcomes"] = {"high_urgency": definition["outcomes"]["high_urgency"]}
    return definition


def _worker(gateway, name: str) -> subprocess.Popen:
    env = {**gateway.environment, **JOB_ENV, "AQTA_GATEWAY_URL": gateway.url}
    command = [
        sys.executable, "-m", "celery", "-A", "aqta", "worker", "--pool=solo", "-n", f"{name}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def slow_gateway(django_db_setup, django_db_blocker):
    """A gateway whose provider takes 150 ms a call, so a run lasts long enough to be cut."""
    with django_db_blocker.unblock():
        seed_catalogue()
    assert REDIS is not None
    broker = redis.Redis.from_url(REDIS)
    broker.delete("celery", "unacked", "unacked_index")  # no message of an earlier run
    with (
        MockServer(MockConfig(chunks=5, latency_ms=150)) as mock,
        run_gateway(mock, redis_url=REDIS, **JOB_ENV) as gateway,  # type: ignore[arg-type]
    ):
        yield gateway


def test_a_killed_worker_run_completes_once_billed_once(slow_gateway, make_key):
    secret, api_key = make_key(tier="healthcare")
    organization = api_key.organization
    headers = {"Authorization": f"Bearer {secret}"}
    created = httpx.post(
        slow_gateway.url + "/api/compliance/probe-sets",
        json={"name": "kill", "definition": _definition()},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    started = httpx.post(
        slow_gateway.url + "/api/compliance/bias-detection",
        json={"model": "gpt-4o-mini", "probe_set": created.json()["id"], "repetitions": 10,
              "concurrency": 2},
        headers=headers,
        timeout=30,
    )  # fmt: skip
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.json()["status"] == "queued"  # the API process only enqueued it
    total = 9 * 10  # each variant 10 times: within the loop guard's default threshold

    first = _worker(slow_gateway, "first")
    try:
        half = wait_for(
            lambda: (
                ProbeCall.objects.filter(run_id=run_id, status=ProbeCallStatus.ANSWERED).count()
                >= total // 2
            ),
            timeout=120,
        )
        assert half, "the first worker did not get half-way"
        os.killpg(first.pid, signal.SIGKILL)  # mid-run: calls in flight, message unacknowledged
        first.wait()
    finally:
        _stop(first)
    progress = BiasRun.objects.get(pk=run_id)
    assert progress.status == JobStatus.RUNNING and progress.finished_at is None
    in_flight = ProbeCall.objects.filter(run_id=run_id, status=ProbeCallStatus.SENT).count()

    second = _worker(slow_gateway, "second")
    try:
        done = wait_for(
            lambda: BiasRun.objects.get(pk=run_id).status == JobStatus.COMPLETED, timeout=120
        )
    finally:
        _stop(second)
    assert done, BiasRun.objects.get(pk=run_id).step

    run = BiasRun.objects.get(pk=run_id)
    assert (run.attempts, run.calls_done, run.calls_failed) >= (2, total, 0), (
        run.attempts,
        run.calls_done,
        run.calls_failed,
        run.calls.values_list("status", "error_code").distinct(),
    )
    calls = list(ProbeCall.objects.filter(run_id=run_id))
    assert {c.status for c in calls} == {ProbeCallStatus.ANSWERED}
    assert sum(c.sends for c in calls) <= total + in_flight  # only the cut-off ones again
    completed = AuditEvent.objects.filter(action="bias_run.completed", target=run_id)
    assert completed.count() == 1  # finished once
    assert run.summary["findings"] == 3  # one per attribute

    assert slow_gateway.mock.stats()["chat_requests"] <= total + in_flight
    assert run.spent_eur == sum(c.cost_eur for c in calls) > 0  # what the answers cost
    assert all(c.cost_eur == 0 for c in calls if c.cached)  # an answer again is free
    if connection.vendor != "postgresql":
        # On SQLite, three processes share one file's write lock: under load some of the
        # run's traces were stored more than 30 s late. The trace-side proof is PostgreSQL's.
        return
    drain_traces()
    traces = Trace.objects.filter(api_key=run.api_key)
    billed = traces.filter(http_status=200, cached=False)
    # every probe billed exactly once (the traces are written asynchronously)
    assert wait_for(lambda: billed.count() >= total, timeout=30) and billed.count() == total, (
        billed.count(),
        list(TraceDeadLetter.objects.values_list("error", flat=True)[:3]),
    )
    assert sum(t.cost_eur for t in traces) == run.spent_eur == sum(c.cost_eur for c in calls)
    cut = traces.exclude(http_status=200)
    # cut off by the kill (499), or a resend the loop guard held back (429): none billed
    assert all(t.http_status in (429, 499) and t.cost_eur == 0 for t in cut), [
        (t.http_status, t.error_code, t.cost_eur) for t in cut
    ]
    assert organization.pk == run.organization_id
