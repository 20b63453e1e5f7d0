"""Counterfactual probe runs: every variant sent through the gateway as the organisation's
own traffic, classified, and analysed (docs/bias.md).

A run gets an API key of its own (``bias probes <run>``, limited to the run's model, with
the budget cap as its monthly budget), so its calls pass the whole /v1 pipeline: they are
authenticated, rate-limited, counted against the quota, priced and billed, traced, and for
Healthcare organisations receipted, and they can be told apart by that key. The key is
revoked and its secret erased when the run ends; the secret is kept encrypted
(``AQTA_ENCRYPTION_KEYS``) only while the run may need it and is never shown.

Each variant is one :class:`ProbeCall` row, marked ``sent`` before it is sent and stored
with its answer as it arrives, so a worker killed mid-run loses at most the calls it had
in flight. Those are sent again by the next delivery, but only ``AQTA_PROBE_RESEND_AFTER_SECONDS``
after they were sent, and each request asks for the response cache (``X-Aqta-Cache: on``)
with a body unique to the call: a call the gateway had already answered is then answered
from the cache, at no cost and with no second upstream call, and one the dying worker cut
off was cancelled by the gateway (recorded as 499, nothing billed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services import api_key_create, api_key_revoke
from compliance.bias import analysis
from compliance.bias.probes import probe_variants
from compliance.jobs import Lease, job_finish, job_start, progress_set
from compliance.models import BiasMethod, BiasRun, JobStatus, ProbeCall, ProbeCallStatus
from compliance.services import audit_event_record
from gateway import crypto

logger = logging.getLogger("aqta.compliance")

ACTOR = "bias detection"
EXCERPT_CHARS = 2000
# Network errors and 5xx answers are retried this many times per call before it fails.
SEND_ATTEMPTS = 4
# Rate-limit and loop-guard refusals are waited out (Retry-After, capped) this many times.
WAIT_ATTEMPTS = 30
RETRY_AFTER_CAP = 60.0
STOP_CODES = {"budget_exceeded", "quota_exceeded"}
WAIT_CODES = {"rate_limit_exceeded", "loop_detected"}


def probe_run_create(
    *,
    organization: Organization,
    actor: User | None,
    actor_label: str,
    model: str,
    definition: dict[str, Any],
    probe_set_name: str,
    probe_set: Any = None,
    repetitions: int,
    budget_cap_eur: Decimal | None,
    concurrency: int,
) -> BiasRun:
    """Store a queued run with its calls and its key; the caller enqueues it on commit."""
    variants = sorted(
        probe_variants(definition, repetitions), key=lambda v: (v.repetition, v.index)
    )
    with transaction.atomic():
        run = BiasRun.objects.create(
            organization=organization,
            method=BiasMethod.PROBE,
            model=model,
            probe_set=probe_set,
            probe_set_name=probe_set_name,
            definition=definition,
            repetitions=repetitions,
            concurrency=concurrency,
            budget_cap_eur=budget_cap_eur,
            calls_total=len(variants),
            created_by=actor,
            step="Queued",
        )
        api_key, secret = api_key_create(
            organization=organization,
            created_by=actor,
            name=f"bias probes {str(run.pk)[:8]}",
            allowed_models=[model],
            monthly_budget_eur=budget_cap_eur,
            actor_label=actor_label,
        )
        run.api_key = api_key
        run.key_secret_encrypted = crypto.encrypt(secret)
        run.save(update_fields=["api_key", "key_secret_encrypted"])
        ProbeCall.objects.bulk_create(
            ProbeCall(
                run=run,
                index=order,
                case_id=v.case_id,
                attribute=v.attribute,
                group=v.group,
                repetition=v.repetition,
            )
            for order, v in enumerate(variants)
        )
        audit_event_record(
            action="bias_run.started",
            organization=organization,
            actor=actor,
            actor_label=actor_label,
            target=str(run.pk),
            data={
                "method": run.method,
                "model": model,
                "probe_set": probe_set_name,
                "calls": len(variants),
                "budget_cap_eur": str(budget_cap_eur) if budget_cap_eur is not None else None,
            },
        )
    return run


@dataclass(frozen=True, slots=True)
class Answer:
    """What one call got: the final HTTP answer after waiting out rate limits."""

    http_status: int
    code: str = ""
    text: str = ""
    cost_eur: Decimal = Decimal(0)
    trace_id: str = ""
    cached: bool = False

    @property
    def status(self) -> str:
        if self.http_status == 200:
            return ProbeCallStatus.ANSWERED
        if self.http_status in (402, 403, 429):
            return ProbeCallStatus.REFUSED
        return ProbeCallStatus.FAILED


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return ""
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(RETRY_AFTER_CAP, max(0.0, float(response.headers.get("retry-after", default))))
    except ValueError:
        return default


def _answer(response: httpx.Response) -> Answer:
    trace_id = response.headers.get("x-aqta-trace-id", "")
    if response.status_code != 200:
        return Answer(response.status_code, _error_code(response), trace_id=trace_id)
    try:
        body = response.json()
        message = body["choices"][0]["message"]
        text = message.get("content") or ""
        aqta = body.get("aqta") or {}
        cost = Decimal(str(aqta.get("cost_eur", 0)))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, InvalidOperation):
        return Answer(502, "invalid_answer", trace_id=trace_id)
    cached = bool((body.get("aqta") or {}).get("cached"))
    return Answer(200, text=str(text), cost_eur=cost, trace_id=trace_id, cached=cached)


def call_send(client: httpx.Client, body: dict[str, Any]) -> Answer:
    """POST one probe, waiting out rate limits and retrying transient failures."""
    failures = waits = 0
    while True:
        try:
            response = client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as error:
            failures += 1
            if failures >= SEND_ATTEMPTS:
                return Answer(503, f"gateway_unreachable: {type(error).__name__}")
            time.sleep(0.5 * 2**failures)
            continue
        code = _error_code(response) if response.status_code != 200 else ""
        if response.status_code == 429 and code in WAIT_CODES and waits < WAIT_ATTEMPTS:
            waits += 1
            time.sleep(_retry_after(response, 1.0))
            continue
        if response.status_code >= 500 and failures + 1 < SEND_ATTEMPTS:
            failures += 1
            time.sleep(_retry_after(response, 0.5 * 2**failures))
            continue
        return _answer(response)


def _request(run: BiasRun, call: ProbeCall, messages: list[dict[str, Any]]) -> dict[str, Any]:
    # `user` makes every call's body (so its cache entry) its own: repetitions are separate
    # samples, while sending one call again finds its first answer in the cache.
    return {"model": run.model, "messages": messages, "user": f"aqta-probe:{run.pk}:{call.index}"}


def _due(run: BiasRun, now: Any) -> Any:
    resend_before = now - timedelta(seconds=settings.AQTA_PROBE_RESEND_AFTER_SECONDS)
    return run.calls.filter(
        Q(status=ProbeCallStatus.PENDING)
        | Q(status=ProbeCallStatus.SENT, sent_at__lt=resend_before)
    )


def _batches(run: BiasRun, lease: Lease) -> Iterator[list[ProbeCall]]:
    """Calls to send, in order; waits for calls another delivery sent until they are due."""
    size = max(1, run.concurrency)  # marked sent = in flight
    while True:
        lease.check()
        now = timezone.now()
        batch = list(_due(run, now).order_by("index")[:size])
        if batch:
            yield batch
            continue
        waiting = (
            run.calls.filter(status=ProbeCallStatus.SENT).order_by("sent_at").first()
        )  # sent by a delivery that died: its answer may still come from the cache
        if waiting is None:
            return
        assert waiting.sent_at is not None
        due_at = waiting.sent_at + timedelta(seconds=settings.AQTA_PROBE_RESEND_AFTER_SECONDS)
        time.sleep(min(5.0, max(0.05, (due_at - now).total_seconds() + 0.05)))


def _store(call: ProbeCall, answer: Answer, run: BiasRun) -> None:
    from compliance.bias.probes import classify

    call.status = answer.status
    call.http_status = answer.http_status
    call.error_code = answer.code[:40]
    call.trace_id = answer.trace_id[:64]
    call.cached = answer.cached
    call.cost_eur = answer.cost_eur
    call.answered_at = timezone.now()
    if answer.status == ProbeCallStatus.ANSWERED:
        call.outcomes = classify(run.definition, call.case_id, answer.text)
        call.answer_excerpt = answer.text[:EXCERPT_CHARS]
    call.save(
        update_fields=[
            "status",
            "http_status",
            "error_code",
            "trace_id",
            "cached",
            "cost_eur",
            "answered_at",
            "outcomes",
            "answer_excerpt",
        ]
    )


def _counts_refresh(run: BiasRun) -> None:
    totals = run.calls.aggregate(
        done=Count("pk", filter=~Q(status__in=[ProbeCallStatus.PENDING, ProbeCallStatus.SENT])),
        failed=Count("pk", filter=Q(status__in=[ProbeCallStatus.FAILED, ProbeCallStatus.REFUSED])),
        spent=Sum("cost_eur"),
    )
    run.calls_done, run.calls_failed = totals["done"], totals["failed"]
    run.spent_eur = totals["spent"] or Decimal(0)
    BiasRun.objects.filter(pk=run.pk).update(
        calls_done=run.calls_done, calls_failed=run.calls_failed, spent_eur=run.spent_eur
    )


def _send_all(run: BiasRun, lease: Lease, secret: str) -> str:
    """Send every due call; the reason the run stopped early, or ''."""
    variants = {
        (v.case_id, v.attribute, v.group, v.repetition): v
        for v in probe_variants(run.definition, run.repetitions)
    }
    headers = {"Authorization": f"Bearer {secret}", "X-Aqta-Cache": "on"}
    timeout = httpx.Timeout(settings.AQTA_UPSTREAM_READ_TIMEOUT + 30, connect=10)
    stopped = ""
    with (
        httpx.Client(
            base_url=settings.AQTA_GATEWAY_URL, headers=headers, timeout=timeout
        ) as client,
        ThreadPoolExecutor(max_workers=max(1, run.concurrency)) as pool,
    ):
        for batch in _batches(run, lease):
            now = timezone.now()
            for call in batch:
                call.sends += 1
                call.sent_at = now
                call.status = ProbeCallStatus.SENT
            ProbeCall.objects.bulk_update(batch, ["sends", "sent_at", "status"])
            futures = {
                pool.submit(
                    call_send,
                    client,
                    _request(
                        run,
                        call,
                        variants[
                            (call.case_id, call.attribute, call.group, call.repetition)
                        ].messages,
                    ),
                ): call
                for call in batch
            }
            for future in as_completed(futures):
                answer = future.result()
                _store(futures[future], answer, run)
                if answer.code in STOP_CODES and not stopped:
                    stopped = (
                        "The budget cap was reached"
                        if answer.code == "budget_exceeded"
                        else "The organisation's monthly quota was reached"
                    )
            _counts_refresh(run)
            if run.budget_cap_eur is not None and run.spent_eur >= run.budget_cap_eur:
                # The key's budget is monthly: a run that crosses into a new month would
                # otherwise get a fresh one.
                stopped = stopped or "The budget cap was reached"
            progress_set(
                run,
                progress=int(90 * run.calls_done / max(1, run.calls_total)),
                step=f"Sent {run.calls_done} of {run.calls_total} probes",
            )
            if stopped:
                run.calls.filter(status=ProbeCallStatus.PENDING).update(
                    status=ProbeCallStatus.SKIPPED
                )
                break
    return stopped


def probe_run_execute(run: BiasRun, lease: Lease) -> None:
    """Send what is left of the run, analyse it, finish it (idempotent)."""
    job_start(run)
    stopped = ""
    if run.key_secret_encrypted:
        stopped = _send_all(run, lease, crypto.decrypt(run.key_secret_encrypted))
    lease.check()
    _counts_refresh(run)
    progress_set(run, progress=95, step="Analysing the answers")
    calls = list(run.calls.filter(status=ProbeCallStatus.ANSWERED))
    findings = analysis.probe_findings(run.definition, calls)
    run_close(run, findings=findings, stopped=stopped)


def run_close(run: BiasRun, *, findings: list[dict[str, Any]], stopped: str = "") -> None:
    """Store the findings, finish the run once, retire its key."""
    summary = analysis.findings_summary(findings)
    with transaction.atomic():
        BiasRun.objects.filter(pk=run.pk).update(
            findings=findings, summary=summary, stopped_reason=stopped[:200]
        )
        run.findings, run.summary, run.stopped_reason = findings, summary, stopped[:200]
        step = stopped or "Completed"
        if job_finish(run, status=JobStatus.COMPLETED, step=step):
            audit_event_record(
                action="bias_run.completed",
                organization=run.organization,
                actor_label=ACTOR,
                target=str(run.pk),
                data={"method": run.method, **summary, "calls": run.calls_done},
            )
    key_retire(run)


def key_retire(run: BiasRun) -> None:
    """Revoke the run's key and erase its secret (idempotent)."""
    if run.api_key_id is not None:
        api_key_revoke(api_key=run.api_key, actor_label=ACTOR)  # type: ignore[arg-type]
    if run.key_secret_encrypted:
        BiasRun.objects.filter(pk=run.pk).update(key_secret_encrypted="")
        run.key_secret_encrypted = ""


def run_fail(run: BiasRun, error: str) -> None:
    """A run that cannot go on: record why and retire its key."""
    if job_finish(run, status=JobStatus.FAILED, step="Failed", error=error[:2000]):
        audit_event_record(
            action="bias_run.failed",
            organization=run.organization,
            actor_label=ACTOR,
            target=str(run.pk),
            data={"error": error[:500]},
        )
    key_retire(run)
