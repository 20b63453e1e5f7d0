"""Passive monitoring: the bias metrics over a period of real, logged traffic (docs/bias.md).

Only organisations that log content can be monitored: the prompts are read (decrypted)
to find demographic terms (the probe set's ``terms`` per group; a trace naming two
groups of one attribute is left out of that attribute), and the answers are classified
with the set's outcome rules. Groups are compared unpaired (chi-square, or Fisher's exact
for small 2x2 tables). The run's own probe traffic is excluded. At most
``AQTA_BIAS_PASSIVE_MAX_TRACES`` traces are read, newest first; the run says when it hit
that limit.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from aqta.errors import AqtaError, ErrorCode
from compliance.bias import analysis
from compliance.bias.probes import classify, demographic_groups, outcome_meta
from compliance.jobs import Lease, job_start, progress_set
from compliance.models import BiasMethod, BiasRun
from compliance.services import audit_event_record
from gateway import crypto
from gateway.models import TraceContent

CHUNK = 500


def passive_run_create(
    *,
    organization: Organization,
    actor: User | None,
    actor_label: str,
    start: date,
    end: date,
    definition: dict[str, Any],
    probe_set_name: str,
    probe_set: Any = None,
) -> BiasRun:
    if not organization.content_logging:
        raise AqtaError(
            "Passive monitoring reads the prompts and answers of logged traffic; content "
            "logging is off for this organisation.",
            code=ErrorCode.INVALID_VALUE,
            param="method",
        )
    with transaction.atomic():
        run = BiasRun.objects.create(
            organization=organization,
            method=BiasMethod.PASSIVE,
            probe_set=probe_set,
            probe_set_name=probe_set_name,
            definition=definition,
            period_start=start,
            period_end=end,
            created_by=actor,
            step="Queued",
        )
        audit_event_record(
            action="bias_run.started",
            organization=organization,
            actor=actor,
            actor_label=actor_label,
            target=str(run.pk),
            data={"method": run.method, "period": [start.isoformat(), end.isoformat()]},
        )
    return run


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    utc = timezone.get_current_timezone() if settings.USE_TZ else None
    first = datetime.combine(start, time.min, tzinfo=utc)
    return first, datetime.combine(end + timedelta(days=1), time.min, tzinfo=utc)


def _prompt_text(raw: str) -> str:
    """The user turns of a logged request (the whole text if it is not a chat body)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return raw
    parts = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
    return "\n".join(parts)


def _traces(run: BiasRun) -> Any:
    start, end = _bounds(run.period_start, run.period_end)  # type: ignore[arg-type]
    probe_keys = BiasRun.objects.filter(
        organization=run.organization, api_key__isnull=False
    ).values_list("api_key", flat=True)
    return (
        TraceContent.objects.filter(
            trace__organization=run.organization,
            trace__created_at__gte=start,
            trace__created_at__lt=end,
            trace__http_status=200,
        )
        .exclude(trace__api_key__in=probe_keys)
        .order_by("-trace__created_at")
    )


def _answer_text(logged: str) -> str:
    """A logged answer: a JSON call's ``choices`` array, or a stream's text."""
    if not logged.startswith("["):
        return logged
    try:
        choices = orjson.loads(logged)
    except orjson.JSONDecodeError:
        return logged
    texts = [
        choice["message"]["content"]
        for choice in choices
        if isinstance(choice, dict)
        and isinstance(choice.get("message"), dict)
        and isinstance(choice["message"].get("content"), str)
    ]
    return "\n".join(texts[:1])  # the first choice, as a probe reads it


def _read(content: TraceContent) -> tuple[str, str] | None:
    """(the prompt's user text, the answer) of a logged call; None if it cannot be read."""
    try:
        prompt = _prompt_text(crypto.decrypt(content.request_encrypted))
        logged = crypto.decrypt(content.response_encrypted) if content.response_encrypted else ""
    except ValueError:
        return None
    return prompt, _answer_text(logged)


def _count(
    counts: Any, groups: dict[str, str], values: dict[str, Any], outcomes: list[str]
) -> None:
    for attribute, group in groups.items():
        for outcome in outcomes:
            value = values.get(outcome)
            if value is not None:
                cell = counts[attribute][outcome][group]
                cell[0] += int(bool(value))
                cell[1] += 1


def passive_run_execute(run: BiasRun, lease: Lease) -> None:
    """Read the period's logged traffic, count outcomes per group, compare (idempotent:
    the whole analysis is recomputed by a second delivery)."""
    job_start(run)
    definition = run.definition
    binary = [o for o, info in outcome_meta(definition).items() if info.get("kind") == "binary"]
    everything = {
        **definition,
        "cases": [{"id": "passive-monitoring", "prompt": "{Patient}", "outcomes": binary}],
    }
    limit = settings.AQTA_BIAS_PASSIVE_MAX_TRACES
    contents = _traces(run)
    total = min(contents.count(), limit)
    # attribute -> outcome -> group -> [successes, n]
    counts: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0, 0]))
    )
    scanned = matched = unreadable = 0
    for content in contents.iterator(chunk_size=CHUNK):
        if scanned >= limit:
            break
        scanned += 1
        read = _read(content)
        if read is None:
            unreadable += 1
        elif groups := demographic_groups(definition, read[0]):
            matched += 1
            _count(counts, groups, classify(everything, "passive-monitoring", read[1]), binary)
        if scanned % CHUNK == 0:
            lease.check()
            progress_set(
                run,
                progress=int(90 * scanned / max(1, total)),
                step=f"Read {scanned} of {total} logged calls",
            )
    progress_set(run, progress=95, step="Comparing groups")
    tables = {
        attribute: {
            outcome: {group: (cell[0], cell[1]) for group, cell in by_group.items()}
            for outcome, by_group in outcomes.items()
        }
        for attribute, outcomes in counts.items()
    }
    findings = analysis.unpaired_findings(definition, tables)
    BiasRun.objects.filter(pk=run.pk).update(calls_total=scanned, calls_done=matched)
    run.calls_total, run.calls_done = scanned, matched
    note = ""
    if scanned >= limit and contents.count() > limit:
        note = f"Read the newest {limit} logged calls of the period (AQTA_BIAS_PASSIVE_MAX_TRACES)"
    if unreadable:
        note = (note + "; " if note else "") + f"{unreadable} logged calls could not be decrypted"
    from compliance.bias.runner import run_close

    run_close(run, findings=findings, stopped=note)
