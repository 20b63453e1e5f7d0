"""The trace buffers' common interface (gateway/dataplane/buffer.py): both implement
:class:`Buffer`, and a record kept in-process while Redis is unreachable is stored.

What a flush writes is gateway/tests/test_traces.py's subject; here records only need to
arrive (keys are committed: the buffers write from a worker thread).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from gateway.dataplane.buffer import Buffer, LocalBuffer, RedisBuffer
from gateway.models import Trace
from gateway.tests.dataplane.conftest import unreachable_redis
from gateway.tests.test_traces import trace_record

PROTOCOL_METHODS = ("pipeline_add", "add_local", "flush_once", "run", "aclose")


def buffers_for_mypy(local: LocalBuffer, shared: RedisBuffer) -> list[Buffer]:
    """mypy checks these assignments structurally (``mypy gateway/tests/dataplane``)."""
    return [local, shared]


def _buffers() -> list[Buffer]:
    client = Redis.from_url("redis://127.0.0.1:1/0")  # never connected: no command is sent
    return [LocalBuffer(), RedisBuffer(client, client)]


def test_the_protocol_has_the_methods_app_py_calls():
    members = {name for name, _ in inspect.getmembers(Buffer, inspect.isfunction) if name[0] != "_"}
    assert members == set(PROTOCOL_METHODS)


@pytest.mark.parametrize("buffer", _buffers(), ids=["local", "redis"])
def test_both_buffers_implement_the_protocol_with_its_signatures(buffer):
    assert isinstance(buffer, Buffer)
    for name in PROTOCOL_METHODS:
        wanted = getattr(Buffer, name)
        method = getattr(type(buffer), name)
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(wanted), name
        given = inspect.signature(method).parameters
        for parameter in inspect.signature(wanted).parameters.values():
            assert parameter.name in given, (name, parameter.name)
            assert given[parameter.name].kind == parameter.kind, (name, parameter.name)
            assert given[parameter.name].default == parameter.default, (name, parameter.name)
        extra = [p for p in given if p not in inspect.signature(wanted).parameters]
        assert all(given[p].default is not inspect.Parameter.empty for p in extra), name


def test_an_object_without_add_local_is_not_a_buffer():
    class Partial:
        def pipeline_add(self, pipe, record) -> None: ...
        async def flush_once(self) -> int:
            return 0

        async def run(self, stop, consume=True) -> None: ...
        async def aclose(self) -> None: ...

    assert not isinstance(Partial(), Buffer)


# --- records kept in this process -----------------------------------------------------------


def _stored(record: dict) -> bool:
    from django.db import close_old_connections

    try:
        return Trace.objects.filter(id=record["id"]).exists()
    finally:
        close_old_connections()


@pytest.fixture
def committed_key(make_key):
    return make_key()[1]


def test_the_local_buffer_keeps_a_record_added_on_the_error_path_and_stores_it(committed_key):
    """app.py's error path (Redis unreachable) calls add_local whichever buffer it has."""
    record, other = trace_record(committed_key), trace_record(committed_key)
    buffer = LocalBuffer()
    buffer.pipeline_add(None, other)
    buffer.add_local(record)
    assert buffer.items == [other, record]

    assert asyncio.run(buffer.flush_once()) == 2

    assert buffer.items == []
    assert _stored(record) and _stored(other)


def test_the_local_buffer_stores_what_it_holds_when_it_stops(committed_key):
    record = trace_record(committed_key)

    async def scenario() -> None:
        buffer = LocalBuffer()
        stop = asyncio.Event()
        stop.set()
        buffer.add_local(record)
        await buffer.run(stop, consume=False)
        await buffer.aclose()

    asyncio.run(scenario())
    assert _stored(record)


@pytest.mark.parametrize("consume", [True, False], ids=["flushing-worker", "dedicated-flusher"])
def test_with_redis_unreachable_a_worker_stores_the_records_it_kept(committed_key, consume):
    record = trace_record(committed_key)

    async def scenario() -> None:
        client, reader = unreachable_redis(), unreachable_redis()
        buffer = RedisBuffer(client, reader, stream=f"aqta:test-traces:{uuid.uuid4().hex}")
        stop = asyncio.Event()
        task = asyncio.create_task(buffer.run(stop, consume=consume))
        buffer.add_local(record)
        async with asyncio.timeout(15):
            while not await asyncio.to_thread(_stored, record):
                await asyncio.sleep(0.1)
        assert not task.done()  # still retrying the stream, not crashed
        stop.set()
        await asyncio.wait_for(task, 10)
        await buffer.aclose()
        await client.aclose()

    asyncio.run(scenario())
    assert _stored(record)


def test_without_a_pipeline_the_redis_buffer_keeps_the_record_in_process():
    buffer = _buffers()[1]
    assert isinstance(buffer, RedisBuffer)
    record = {"id": uuid.uuid4().hex}
    buffer.pipeline_add(None, record)
    assert buffer.fallback.items == [record]


# --- with Redis ----------------------------------------------------------------------------------


def test_a_record_added_to_the_call_pipeline_reaches_the_stream(redis_url):
    async def scenario() -> list[Any]:
        client = Redis.from_url(redis_url)
        buffer = RedisBuffer(client, client, stream=f"aqta:test-traces:{uuid.uuid4().hex}")
        try:
            async with client.pipeline(transaction=False) as pipe:
                buffer.pipeline_add(pipe, {"id": "abc"})
                await pipe.execute()
            return list(await client.xrange(buffer.stream) or [])
        finally:
            await client.delete(buffer.stream)
            await client.aclose()

    entries = asyncio.run(scenario())
    assert [fields for _, fields in entries] == [{b"d": b'{"id":"abc"}'}]


def test_aclose_closes_the_reader_and_leaves_the_shared_client_open(redis_url):
    name = f"aqta-test-reader-{uuid.uuid4().hex}"

    async def connected(client: Redis) -> bool:
        return any(c.get("name") == name for c in await client.client_list())

    async def scenario() -> tuple[bool, bool, bool]:
        client = Redis.from_url(redis_url)
        reader = Redis.from_url(redis_url, client_name=name)
        try:
            buffer = RedisBuffer(client, reader)
            await reader.ping()
            before = await connected(client)
            await buffer.aclose()
            async with asyncio.timeout(5):
                while await connected(client):
                    await asyncio.sleep(0.05)
            return before, await connected(client), await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == (True, False, True)


def test_the_flusher_loop_stores_the_stream_and_recovers_when_its_group_is_gone(
    committed_key, redis_url, monkeypatch
):
    """A flushed Redis takes the consumer group with the stream (NOGROUP): the loop creates
    it again and goes on storing."""
    monkeypatch.setattr("gateway.dataplane.buffer.FLUSH_INTERVAL", 0.1)
    first, second = trace_record(committed_key), trace_record(committed_key)

    async def until_stored(record: dict) -> None:
        async with asyncio.timeout(15):
            while not await asyncio.to_thread(_stored, record):
                await asyncio.sleep(0.05)

    async def scenario() -> int:
        client = Redis.from_url(redis_url)
        reader = Redis.from_url(redis_url, socket_timeout=5)
        buffer = RedisBuffer(client, reader, stream=f"aqta:test-traces:{uuid.uuid4().hex}")
        stop = asyncio.Event()
        task = asyncio.create_task(buffer.run(stop))
        try:
            await client.xadd(buffer.stream, {"d": orjson.dumps(first)})
            await until_stored(first)
            await client.delete(buffer.stream)
            await client.xadd(buffer.stream, {"d": orjson.dumps(second)})
            await until_stored(second)
            stop.set()
            await asyncio.wait_for(task, 10)
            return await client.xlen(buffer.stream)  # acknowledged entries are deleted
        finally:
            stop.set()
            await client.delete(buffer.stream)
            await buffer.aclose()
            await client.aclose()

    assert asyncio.run(scenario()) == 0
    assert _stored(first) and _stored(second)
