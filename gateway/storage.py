"""Storing trace and usage records in the database: what the flushers of
``gateway.dataplane.buffer`` write.

Writing a batch is idempotent: traces already stored are skipped, and usage is counted
only for traces inserted by that batch, in the same transaction.

What is stored is cleaned first (NUL characters replaced, text cut to its column), since
some of it comes from clients. A record that still cannot be stored must not hold up the
others: when a batch fails, its records are written one by one, and those that fail on
their own while a known-good trace can be written are parked as dead letters
(``TraceDeadLetter``, in the admin), counted in ``aqta_trace_dead_letters_total`` and
reported in the log once per process. When nothing can be written (the database is down
or refuses writes) nothing is parked: the batch stays in the buffer and is retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    transaction,
)
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import CharField, DecimalField, F, Q, TextField
from django.utils import timezone

from accounts.models import ApiKey
from aqta.metrics import DEAD_LETTERS
from gateway import trace_ids
from gateway.models import (
    DeadLetterSource,
    GatewayEvent,
    Trace,
    TraceContent,
    TraceDeadLetter,
    TraceStatus,
    UsageCounter,
)

logger = logging.getLogger("aqta.gateway.storage")

TRACE_FIELDS = {f.name for f in Trace._meta.concrete_fields} - {"organization", "api_key"}
# The widths of the text columns a record fills (None: unbounded).
TRACE_TEXT = {
    f.name: f.max_length
    for f in Trace._meta.concrete_fields
    if isinstance(f, CharField | TextField) and f.name in TRACE_FIELDS and f.name != "id"
}
# Numbers are held to the portable column ranges: SQLite would accept a larger one and
# then fail every read of it; PostgreSQL refuses it. Either way it is for the dead letters.
TRACE_INTEGERS = {
    f.name: BaseDatabaseOperations.integer_field_ranges[f.get_internal_type()]
    for f in Trace._meta.concrete_fields
    if f.get_internal_type() in BaseDatabaseOperations.integer_field_ranges
    and f.name in TRACE_FIELDS
}
TRACE_DECIMALS = {
    f.name: Decimal(10) ** (f.max_digits - f.decimal_places)
    for f in Trace._meta.concrete_fields
    if isinstance(f, DecimalField)
}
EVENT_KIND_LENGTH = GatewayEvent._meta.get_field("kind").max_length
DEAD_LETTER_ID_LENGTH = TraceDeadLetter._meta.get_field("trace_id").max_length
ERROR_LENGTH = 4000
# PostgreSQL refuses NUL in text and JSON; U+FFFD keeps a visible mark of where it was.
NUL = "\x00"
REPLACEMENT = "\ufffd"


class StorageUnavailable(Exception):
    """Nothing can be stored right now (the database is down or refuses writes).

    The caller keeps the records and retries: parking them would turn an outage into a
    heap of dead letters.
    """


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A buffered entry that is not a trace record at all (e.g. not JSON)."""

    payload: str
    error: str


# --- Cleaning ---------------------------------------------------------------------------------


def _public_id(value: object) -> str:
    """The trace id as users see it (``tr_…``); whatever was there if it is not one."""
    parsed = trace_ids.parse(value)
    return trace_ids.public(parsed) if parsed is not None else str(value or "")


def fit(value: Any, limit: int | None) -> Any:
    """Text as the database takes it: no NUL, no lone surrogate, at most ``limit`` long."""
    if not isinstance(value, str):
        return value
    if NUL in value:
        value = value.replace(NUL, REPLACEMENT)
    if limit is not None and len(value) > limit:
        value = value[:limit]
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate cannot be sent as UTF-8
            value = value.encode(errors="replace").decode()
    return value


def _fit_json(value: Any) -> Any:
    """An event's data as PostgreSQL's jsonb takes it: every text repaired."""
    if isinstance(value, str):
        return fit(value, None)
    if isinstance(value, dict):
        return {fit(str(k), None): _fit_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fit_json(v) for v in value]
    return value


def clean(record: dict) -> dict:
    """A copy of ``record`` whose text fits the columns it is stored in.

    Text is repaired (it may come from clients); a number out of its column's range is
    refused with ValueError, because changing it would falsify what was billed.
    """
    for name, (low, high) in TRACE_INTEGERS.items():
        value = record.get(name)
        if isinstance(value, int) and not low <= value <= high:
            raise ValueError(f"{name} = {value} is outside its column's range")
    for name, bound in TRACE_DECIMALS.items():
        value = record.get(name)
        if value is not None and not abs(Decimal(value)) < bound:
            raise ValueError(f"{name} = {value} is outside its column's range")
    cleaned = dict(record)
    for name, limit in TRACE_TEXT.items():
        if name in cleaned:
            cleaned[name] = fit(cleaned[name], limit)
    if "event" in cleaned:
        cleaned["event"] = fit(cleaned["event"], EVENT_KIND_LENGTH)
    if isinstance(cleaned.get("events"), list):
        cleaned["events"] = [_fit_json(event) for event in cleaned["events"]]
    content = cleaned.get("content")
    if isinstance(content, dict):
        cleaned["content"] = {name: fit(text, None) for name, text in content.items()}
    return cleaned


# --- Writing ----------------------------------------------------------------------------------


def write_batch(
    records: list[dict],
    *,
    source: str = DeadLetterSource.LOCAL,
    unreadable: Iterable[Unreadable] = (),
) -> int:
    """Store traces, content, events, usage and key last-use (sync; off the event loop);
    returns how many traces were inserted.

    Records that cannot be stored while others can, and ``unreadable`` entries, are
    parked as dead letters. Raises StorageUnavailable when nothing can be stored now.
    """
    close_old_connections()
    try:
        stored, failures = _store_isolating(records)
        parked = [(record_text(record), record, describe(error)) for record, error in failures]
        parked += [(entry.payload, None, entry.error) for entry in unreadable]
        if parked:
            _park(parked, source)
        return stored
    finally:
        close_old_connections()


def _store_isolating(records: list) -> tuple[int, list[tuple[Any, Exception]]]:
    """(traces inserted, [(record, error)] of the records that failed on their own).

    The normal case is one batch write; only a failed batch is retried record by record.
    """
    try:
        return _write([clean(r) for r in records]), []
    except Exception as error:
        if not _storage_works():
            raise StorageUnavailable(describe(error)) from error
    stored = 0
    failures: list[tuple[Any, Exception]] = []
    for record in records:
        try:
            stored += _write_alone(record)
        except Exception as error:
            failures.append((record, error))
    # The database may have gone away while the records were tried.
    if failures and not _storage_works():
        raise StorageUnavailable(describe(failures[0][1]))
    return stored, failures


def _write_alone(record: Any) -> int:
    if not isinstance(record, dict):
        raise TypeError(f"a trace record is a JSON object, not {type(record).__name__}")
    try:
        return _write([clean(record)])
    except (OperationalError, InterfaceError):
        # A deadlock, a serialisation failure or a dropped connection: worth one more try.
        close_old_connections()
        return _write([clean(record)])


def _storage_works() -> bool:
    """Whether a known-good trace can be written right now (it is rolled back at once).

    This is what tells a poison record (it fails while this succeeds) from an outage
    (this fails too: a database that is down, read-only, or missing the table).
    """
    probe = Trace(
        id=uuid.uuid4(),
        created_at=timezone.now(),
        organization_id=uuid.uuid4(),  # foreign keys are checked at commit, never reached
        status=TraceStatus.PASSED,
        http_status=200,
    )
    try:
        with transaction.atomic():
            Trace.objects.bulk_create([probe])
            transaction.set_rollback(True)
    except Exception:
        close_old_connections()
        return False
    return True


def _write(records: list[dict]) -> int:
    unique = list({r["id"]: r for r in records}.values())
    ids = [r["id"] for r in unique]
    with transaction.atomic():
        existing = {str(i) for i in Trace.objects.filter(id__in=ids).values_list("id", flat=True)}
        fresh = [r for r in unique if r["id"] not in existing]
        if not fresh:
            return 0
        # No ignore_conflicts: if another flusher stored one of these meanwhile, the whole
        # batch rolls back and is retried record by record, so usage is counted once.
        Trace.objects.bulk_create([_trace(r) for r in fresh])
        TraceContent.objects.bulk_create(
            [
                TraceContent(
                    trace_id=r["id"],
                    # Encrypted before it entered the buffer: plaintext never rests anywhere.
                    request_encrypted=r["content"]["request"],
                    response_encrypted=r["content"].get("response") or "",
                )
                for r in fresh
                if r.get("content")
            ],
            ignore_conflicts=True,
        )
        GatewayEvent.objects.bulk_create(
            [
                GatewayEvent(
                    organization_id=r["org_id"],
                    kind=kind,
                    trace_id=r["id"],
                    data={**data, "cost_prevented_eur": r["cost_prevented_eur"]},
                    created_at=_when(r),
                )
                for r in fresh
                for kind, data in _events(r)
            ]
        )
        _mark_high_risk_receipts(fresh)
        _count_usage(fresh)
        _touch_keys(fresh)
    return len(fresh)


def _events(record: dict) -> list[tuple[str, dict]]:
    """The events a trace record announces: ``events`` (kind and data each), or the one
    ``event`` name of records written before events carried data."""
    events = record.get("events")
    if isinstance(events, list):
        found: list[tuple[str, dict]] = []
        for event in events:
            if isinstance(event, dict) and event.get("kind"):
                data = event.get("data")
                found.append(
                    (str(event["kind"])[:EVENT_KIND_LENGTH], data if isinstance(data, dict) else {})
                )
        return found
    if record.get("event"):
        return [(str(record["event"])[:EVENT_KIND_LENGTH], {"model": record.get("model", "")})]
    return []


def _mark_high_risk_receipts(records: list[dict]) -> None:
    """An answer found high-risk after its receipt was stored: mark the receipt (the one
    change of a receipt's own columns the database allows, false to true)."""
    from healthcare.models import Receipt

    trace_ids = [f"tr_{r['id']}" for r in records if r.get("high_risk")]
    if trace_ids:
        Receipt.objects.filter(trace_id__in=trace_ids, high_risk=False).update(high_risk=True)


def _when(record: dict) -> datetime:
    return datetime.fromtimestamp(record["ts"], UTC)


def _trace(record: dict) -> Trace:
    values = {k: v for k, v in record.items() if k in TRACE_FIELDS}
    return Trace(
        **values,
        created_at=_when(record),
        organization_id=record["org_id"],
        api_key_id=record.get("key_id"),
    )


def _count_usage(records: list[dict]) -> None:
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for r in records:
        if r["status"] != "passed":
            continue  # refused requests consume nothing
        when = _when(r)
        row = totals[(r["org_id"], r.get("key_id"), date(when.year, when.month, 1))]
        row[0] += 1
        row[1] += r["prompt_tokens"]
        row[2] += r["completion_tokens"]
        row[3] += Decimal(r["cost_eur"])
    # Rows are updated in one order by every flusher, so two of them cannot deadlock.
    for org_id, key_id, month in sorted(totals, key=lambda k: (str(k[0]), str(k[1]), k[2])):
        requests, prompt, completion, cost = totals[(org_id, key_id, month)]
        increments = {
            "requests": F("requests") + requests,
            "prompt_tokens": F("prompt_tokens") + prompt,
            "completion_tokens": F("completion_tokens") + completion,
            "cost_eur": F("cost_eur") + cost,
        }
        lookup = {"organization_id": org_id, "api_key_id": key_id, "month": month}
        if UsageCounter.objects.filter(**lookup).update(**increments):
            continue
        try:
            with transaction.atomic():
                UsageCounter.objects.create(
                    **lookup,
                    requests=requests,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cost_eur=cost,
                )
        except IntegrityError:  # another flusher created it meanwhile
            UsageCounter.objects.filter(**lookup).update(**increments)


def _touch_keys(records: list[dict]) -> None:
    latest: dict[str, float] = {}
    for r in records:
        if r.get("key_id"):
            latest[r["key_id"]] = max(latest.get(r["key_id"], 0), r["ts"])
    for key_id in sorted(latest, key=str):
        when = datetime.fromtimestamp(latest[key_id], UTC)
        ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=when), pk=key_id
        ).update(last_used_at=when)


# --- Dead letters ---------------------------------------------------------------------------

_dead_letter_alerted = False
_alert_lock = threading.Lock()


def describe(error: BaseException) -> str:
    text: str = fit(f"{type(error).__name__}: {error}", ERROR_LENGTH)
    return text


def record_text(record: Any) -> str:
    """The record as JSON text; NUL stays escaped (``\\u0000``), which a text column takes."""
    try:
        return orjson.dumps(record).decode()
    except TypeError:  # e.g. a lone surrogate, which orjson refuses and json escapes
        return json.dumps(record, default=str)


def _park(items: list[tuple[str, Any, str]], source: str) -> None:
    """Store (payload, record or None, error) as dead letters; StorageUnavailable if not."""
    now = timezone.now()
    letters = []
    for payload, record, error in items:
        fields = record if isinstance(record, dict) else {}
        letters.append(
            TraceDeadLetter(
                created_at=now,
                last_attempt_at=now,
                source=source,
                trace_id=fit(_public_id(fields.get("id")), DEAD_LETTER_ID_LENGTH),
                organization_id=fit(str(fields.get("org_id") or ""), DEAD_LETTER_ID_LENGTH),
                error=error,
                payload=fit(payload, None),
                payload_sha256=hashlib.sha256(payload.encode(errors="replace")).hexdigest(),
            )
        )
    try:
        with transaction.atomic():
            TraceDeadLetter.objects.bulk_create(letters, ignore_conflicts=True)
    except Exception as error:
        close_old_connections()
        raise StorageUnavailable(f"dead letters could not be written: {error}") from error
    DEAD_LETTERS.labels(source).inc(len(letters))
    _alert(letters[0])


def _alert(letter: TraceDeadLetter) -> None:
    """An ERROR the first time in this process; after that the metric tells the count."""
    global _dead_letter_alerted
    with _alert_lock:
        first, _dead_letter_alerted = not _dead_letter_alerted, True
    if first:
        logger.error(
            "a trace record could not be stored and was parked as a dead letter (trace %s: "
            "%s). Further dead letters are counted in aqta_trace_dead_letters_total, not "
            "logged; the admin lists them under Trace dead letters.",
            letter.trace_id or "?",
            letter.error,
        )
    else:
        logger.debug("trace %s parked as a dead letter: %s", letter.trace_id, letter.error)


def dead_letters_replay(letters: Iterable[TraceDeadLetter]) -> tuple[int, int]:
    """Try parked records again: (stored, still failing).

    A record stored now, or whose trace exists by now, leaves the list; one that still
    fails keeps its row with the new error and one more attempt. Raises
    StorageUnavailable when nothing can be stored at the moment.
    """
    readable: list[tuple[TraceDeadLetter, Any]] = []
    failing: list[tuple[TraceDeadLetter, str]] = []
    for letter in letters:
        try:
            readable.append((letter, orjson.loads(letter.payload)))
        except orjson.JSONDecodeError as error:
            failing.append((letter, describe(error)))
    _, failures = _store_isolating([record for _, record in readable])
    errors = {id(record): describe(error) for record, error in failures}
    done = [letter.pk for letter, record in readable if id(record) not in errors]
    failing += [(letter, errors[id(record)]) for letter, record in readable if id(record) in errors]
    now = timezone.now()
    with transaction.atomic():
        TraceDeadLetter.objects.filter(pk__in=done).delete()
        for letter, reason in failing:
            TraceDeadLetter.objects.filter(pk=letter.pk).update(
                error=reason, attempts=F("attempts") + 1, last_attempt_at=now
            )
    return len(done), len(failing)
