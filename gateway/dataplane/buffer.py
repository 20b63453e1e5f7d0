"""Trace and usage records leave the request path through a buffer.

- With Redis: a stream (``aqta:traces``). Flushers read it in a consumer group (the workers'
  own, or a dedicated ``manage.py run_flusher`` process); entries are acknowledged only
  after they are in PostgreSQL, and entries left pending by a crashed flusher are claimed
  by another one, so nothing is lost.
- Embedded: an in-process list flushed every ``FLUSH_INTERVAL`` seconds and at shutdown
  (a crash loses at most that much).

Both implement :class:`Buffer`. What a flush writes, and how a record that cannot be stored
is parked, is ``gateway.storage``'s business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.models import DeadLetterSource
from gateway.storage import Unreadable, describe, fit, record_text, write_batch

logger = logging.getLogger("aqta.gateway.traces")

STREAM = "aqta:traces"
GROUP = "flushers"
FLUSH_INTERVAL = 1.0
BATCH = 1000
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY = 30  # flusher rounds
STREAM_MAXLEN = 2_000_000
# During an outage the flusher retries every FLUSH_INTERVAL but says so only this often.
FAILURE_LOG_INTERVAL = 60.0

Record: TypeAlias = dict[str, Any]
Fields: TypeAlias = dict[bytes, bytes]
# A stream entry as redis-py reads it: its fields are None once the entry was deleted.
Entry: TypeAlias = tuple[bytes, Fields | None]


@runtime_checkable
class Buffer(Protocol):
    """Where the request path leaves trace records, and the task that stores them."""

    def pipeline_add(self, pipe: Pipeline | None, record: Record) -> None:
        """Add the record to ``pipe``, the Redis pipeline of the call's settlement (None
        without Redis); it is buffered once the pipeline has run."""

    def add_local(self, record: Record) -> None:
        """Keep the record in this process, for its flusher to store: for when Redis is
        unreachable and ``pipeline_add``'s pipeline failed."""

    async def flush_once(self) -> int:
        """Store what waits (up to a batch); returns how many records that was."""

    async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
        """Flush until ``stop`` is set, then once more. ``consume=False``: only what this
        process kept itself (a dedicated flusher process reads the shared buffer)."""

    async def aclose(self) -> None:
        """Close what the buffer opened or was given for itself alone."""


class _FailureLog:
    """Logs a run of failures when it starts and then every FAILURE_LOG_INTERVAL, not on
    every retry, and says when it ended."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.logged = 0.0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - self.logged >= FAILURE_LOG_INTERVAL:
            self.logged = now
            logger.error("%s: %s; retrying", self.what, describe(error))

    def recovered(self) -> None:
        if self.since is not None:
            elapsed = time.monotonic() - self.since
            logger.warning("%s: working again after %.0f s", self.what, elapsed)
            self.since = None
            self.logged = 0.0


class LocalBuffer:
    """Embedded mode: a list, flushed by the worker's flusher task."""

    def __init__(self) -> None:
        self.items: list[Record] = []
        self.failures = _FailureLog("trace flush failed, records kept for the next try")

    def add(self, record: Record) -> None:
        self.items.append(record)

    def pipeline_add(self, pipe: Pipeline | None, record: Record) -> None:
        self.items.append(record)

    def add_local(self, record: Record) -> None:
        """The list is this process's already: the record waits with the others."""
        self.items.append(record)

    async def flush_once(self) -> int:
        if not self.items:
            return 0
        batch, self.items = self.items, []
        try:
            stored = await asyncio.to_thread(write_batch, batch, source=DeadLetterSource.LOCAL)
        except Exception as error:
            self.failures.failed(error)
            self.items[:0] = batch
            return 0
        self.failures.recovered()
        return stored

    async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
        while not stop.is_set():
            await _pause(stop, FLUSH_INTERVAL)
            await self.flush_once()
        await self.flush_once()

    async def aclose(self) -> None:
        """Nothing to close: the list is flushed by ``run`` when it stops."""


class RedisBuffer:
    """Production: a Redis stream read by every worker's flusher in one consumer group."""

    def __init__(self, client: Redis, reader: Redis, stream: str = STREAM) -> None:
        self.client = client
        self.reader = reader  # blocking reads, with a socket timeout above the block time
        self.stream = stream
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.fallback = LocalBuffer()
        # Entries this consumer read but could not store yet: retried before new ones.
        self.holding = False
        self.grouped = False  # the consumer group is known to exist
        self.cycles = 0  # rounds of the flusher that read the stream
        self.failures = _FailureLog("trace flusher")

    def pipeline_add(self, pipe: Pipeline | None, record: Record) -> None:
        if pipe is None:  # no pipeline to add it to: kept here rather than lost
            self.add_local(record)
            return
        pipe.xadd(self.stream, {"d": orjson.dumps(record)}, maxlen=STREAM_MAXLEN, approximate=True)

    def add_local(self, record: Record) -> None:
        """When Redis is down the record is written from this process instead."""
        self.fallback.add(record)

    async def aclose(self) -> None:
        """Closes the reader, the flusher's own client; the shared client is the caller's."""
        await self.reader.aclose()

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except Exception as error:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(error):
                raise

    async def _store(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        records: list[Record] = []
        unreadable: list[Unreadable] = []
        for _, fields in entries:
            if not fields:
                continue  # deleted after it was read: only the acknowledgement is missing
            parsed = _parse(fields)
            if isinstance(parsed, Unreadable):
                unreadable.append(parsed)
            else:
                records.append(parsed)
        try:
            await asyncio.to_thread(
                write_batch, records, source=DeadLetterSource.STREAM, unreadable=unreadable
            )
        except Exception:
            self.holding = True
            raise
        ids = [entry_id for entry_id, _ in entries]
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()

    async def flush_once(self, block_ms: int | None = None) -> int:
        """Store up to BATCH waiting entries; returns how many there were."""
        if self.holding:
            return await self._retry_held()
        reply = await self.reader.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=BATCH, block=block_ms
        )
        entries = _entries(reply)
        await self._store(entries)
        return len(entries)

    async def _retry_held(self) -> int:
        """This consumer's pending entries (id 0 reads them), before anything new."""
        reply = await self.client.xreadgroup(GROUP, self.consumer, {self.stream: "0"}, count=BATCH)
        entries = _entries(reply)
        await self._store(entries)
        if len(entries) < BATCH:
            self.holding = False
        return len(entries)

    async def claim_abandoned(self) -> None:
        _, entries, *_ = await self.client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=BATCH
        )
        await self._store([e for e in entries if e and e[1]])

    async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
        if not consume:
            await self.fallback.run(stop)
            return
        self.grouped = False
        self.cycles = 0
        while not stop.is_set():
            try:
                stored = await self._cycle()
            except Exception as error:
                if _group_lost(error):  # the stream was deleted (e.g. Redis flushed)
                    self.grouped = self.holding = False
                    continue
                self.failures.failed(error)
                await _pause(stop, FLUSH_INTERVAL)
            else:
                self.failures.recovered()
                if stored < BATCH:
                    # Batch up: a write per trace would cost more than the calls it records.
                    await _pause(stop, FLUSH_INTERVAL)
            await self.fallback.flush_once()
        await self._final_flush()

    async def _cycle(self) -> int:
        """One round of the flusher: what waits in the stream, and every CLAIM_EVERY rounds
        (the first one included) what a dead flusher left pending. Returns how many
        entries were read from the stream."""
        if not self.grouped:
            await self.ensure_group()
            self.grouped = True
        stored = await self.flush_once(block_ms=int(FLUSH_INTERVAL * 1000))
        self.cycles += 1
        if self.cycles % CLAIM_EVERY == 1:
            await self.claim_abandoned()
        return stored

    async def _final_flush(self) -> None:
        try:
            await self.flush_once()
        except Exception:
            logger.exception("trace flusher: final flush failed; entries stay in the stream")
        await self.fallback.flush_once()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply on one stream: ``[[stream, entries]]``, or None
    when nothing came (redis-py types the reply loosely, for RESP3 too)."""
    return [entry for _, batch in reply or [] for entry in batch]


def _group_lost(error: Exception) -> bool:
    return "NOGROUP" in str(error)


def _parse(fields: Fields) -> Record | Unreadable:
    """A stream entry's record, or why it is not one."""
    data = fields.get(b"d")
    if data is None:
        text = {_bytes_text(k): _bytes_text(v) for k, v in fields.items()}
        return Unreadable(record_text(text), "the entry has no 'd' field")
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return Unreadable(_bytes_text(data), describe(error))
    if not isinstance(record, dict):
        return Unreadable(_bytes_text(data), "the entry is not a JSON object")
    return record


def _bytes_text(value: bytes) -> str:
    text: str = fit(value.decode(errors="replace"), None)
    return text
