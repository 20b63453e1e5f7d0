"""Trace and usage records leave the request path through a buffer.

- With Redis: a stream (``aqta:traces``). Every worker runs a flusher in a consumer
  group; entries are acknowledged only after they are in PostgreSQL, and entries left
  pending by a crashed worker are claimed by another one, so nothing is lost.
- Embedded: an in-process list flushed every ``FLUSH_INTERVAL`` seconds and at shutdown
  (a crash loses at most that much).

Writing a batch is idempotent: traces already stored are skipped, and usage is counted
only for traces inserted by that batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, Q

from accounts.models import ApiKey
from gateway.models import GatewayEvent, Trace, TraceContent, UsageCounter

logger = logging.getLogger("aqta.gateway.traces")

STREAM = "aqta:traces"
GROUP = "flushers"
FLUSH_INTERVAL = 1.0
BATCH = 1000
CLAIM_IDLE_MS = 30_000
STREAM_MAXLEN = 2_000_000

TRACE_FIELDS = {f.name for f in Trace._meta.concrete_fields} - {"organization", "api_key"}


def write_batch(records: list[dict]) -> int:
    """Store traces, content, events, usage and key last-use (sync; off the event loop).

    A record that cannot be stored (its organisation was deleted meanwhile) is dropped
    with a log line instead of blocking the whole batch forever.
    """
    close_old_connections()
    try:
        try:
            return _write(records)
        except IntegrityError:
            stored = 0
            for record in records:
                try:
                    stored += _write([record])
                except IntegrityError:
                    logger.warning(
                        "dropping trace %s: its organisation or key is gone", record["id"]
                    )
            return stored
    finally:
        close_old_connections()


def _write(records: list[dict]) -> int:
    unique = list({r["id"]: r for r in records}.values())
    ids = [r["id"] for r in unique]
    existing = {str(i) for i in Trace.objects.filter(id__in=ids).values_list("id", flat=True)}
    fresh = [r for r in unique if r["id"] not in existing]
    if not fresh:
        return 0
    with transaction.atomic():
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
                    kind=r["event"],
                    trace_id=r["id"],
                    data={"model": r["model"], "cost_prevented_eur": r["cost_prevented_eur"]},
                    created_at=_when(r),
                )
                for r in fresh
                if r.get("event")
            ]
        )
        _count_usage(fresh)
    _touch_keys(fresh)
    return len(fresh)


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
    for (org_id, key_id, month), (requests, prompt, completion, cost) in totals.items():
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
    for key_id, ts in latest.items():
        when = datetime.fromtimestamp(ts, UTC)
        ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=when), pk=key_id
        ).update(last_used_at=when)


class LocalBuffer:
    """Embedded mode: a list, flushed by the worker's flusher task."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, record: dict) -> None:
        self.items.append(record)

    def pipeline_add(self, pipe, record: dict) -> None:
        self.items.append(record)

    async def flush_once(self) -> int:
        if not self.items:
            return 0
        batch, self.items = self.items, []
        try:
            return await asyncio.to_thread(write_batch, batch)
        except Exception:
            logger.exception("trace flush failed; %d records kept for the next try", len(batch))
            self.items[:0] = batch
            return 0

    async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL)
            except TimeoutError:
                pass
            await self.flush_once()
        await self.flush_once()


class RedisBuffer:
    """Production: a Redis stream read by every worker's flusher in one consumer group."""

    def __init__(self, client, reader) -> None:
        self.client = client
        self.reader = reader  # blocking reads, with a socket timeout above the block time
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.fallback = LocalBuffer()

    def pipeline_add(self, pipe, record: dict) -> None:
        pipe.xadd(STREAM, {"d": orjson.dumps(record)}, maxlen=STREAM_MAXLEN, approximate=True)

    def add_local(self, record: dict) -> None:
        """When Redis is down the record is written from this process instead."""
        self.fallback.add(record)

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except Exception as error:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(error):
                raise

    async def _store(self, entries) -> None:
        if not entries:
            return
        records = [orjson.loads(fields[b"d"]) for _, fields in entries]
        await asyncio.to_thread(write_batch, records)
        ids = [entry_id for entry_id, _ in entries]
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)
            await pipe.execute()

    async def flush_once(self, block_ms: int | None = None) -> int:
        """Store up to BATCH waiting entries; returns how many there were."""
        reply = await self.reader.xreadgroup(
            GROUP, self.consumer, {STREAM: ">"}, count=BATCH, block=block_ms
        )
        count = 0
        for _, entries in reply or []:
            await self._store(entries)
            count += len(entries)
        return count

    async def claim_abandoned(self) -> None:
        _, entries, *_ = await self.client.xautoclaim(
            STREAM, GROUP, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=BATCH
        )
        await self._store([e for e in entries if e and e[1]])

    async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
        if not consume:
            await self.fallback.run(stop)
            return
        grouped = False
        cycles = 0
        while not stop.is_set():
            try:
                if not grouped:
                    await self.ensure_group()
                    grouped = True
                stored = await self.flush_once(block_ms=int(FLUSH_INTERVAL * 1000))
                cycles += 1
                if cycles % 30 == 1:
                    await self.claim_abandoned()
                if stored < BATCH:
                    # Batch up: a write per trace would cost more than the calls it records.
                    try:
                        await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL)
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if "NOGROUP" in str(error):  # the stream was deleted (e.g. Redis flushed)
                    grouped = False
                    continue
                logger.error("trace flusher: %s; retrying", error)
                await asyncio.sleep(FLUSH_INTERVAL)
            await self.fallback.flush_once()
        try:
            await self.flush_once()
        except Exception:
            logger.exception("trace flusher: final flush failed; entries stay in the stream")
        await self.fallback.flush_once()
