"""Calls to providers (gateway/dataplane/upstream.py) against a real local HTTP server
that fails on purpose: refused connections, dropped connections, 429 with Retry-After,
5xx then 200, an answer that comes too late.

The server counts the attempts it receives. Waits between attempts are recorded (what
``backoff`` chose) and skipped, so no test sleeps through a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import upstream
from gateway.dataplane.providers.base import UpstreamRequest
from gateway.dataplane.upstream import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    RETRYABLE,
    backoff,
    open_response,
    provider_error,
    provider_timeout,
    session_create,
)
from gateway.tests.dataplane.conftest import free_port

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}'


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    body: bytes = b'{"ok":true}'


@dataclass
class Upstream:
    """Answers the n-th POST with the n-th reply (the last one repeats)."""

    replies: list[Reply]
    attempts: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)
    received: list[tuple[bytes, str | None]] = field(default_factory=list)
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)  # ends delayed replies

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        self.received.append((await request.read(), request.headers.get("Authorization")))
        reply = self.replies[min(self.attempts, len(self.replies)) - 1]
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hang_up.wait(), reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)


@contextlib.asynccontextmanager
async def serving(server: Upstream) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1/chat/completions"
    finally:
        server.hang_up.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hanging_up(drops: int | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that reads each request and closes the connection without answering; after
    ``drops`` connections (if given) it answers 200 instead. Counts the connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        if drops is not None and len(connections) > drops:
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", connections
    finally:
        server.close()
        await server.wait_closed()


ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
    b"Connection: close\r\n\r\n"
    b'{"id":"3"}'
)


def request_to(url: str) -> UpstreamRequest:
    return UpstreamRequest(
        url=url,
        headers={"Authorization": "Bearer upstream-key", "Content-Type": "application/json"},
        body=BODY,
    )


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The wait ``backoff`` chose before each retry; the retry then goes at once."""
    chosen: list[float] = []

    def recording_backoff(attempt: int, retry_after: str | None = None) -> float:
        chosen.append(backoff(attempt, retry_after))
        return 0.0

    monkeypatch.setattr(upstream, "backoff", recording_backoff)
    return chosen


Call = Callable[[aiohttp.ClientSession], Awaitable[None]]


def with_session(call: Call, *, read_timeout: float = 5.0, pool: int = 4) -> None:
    async def main() -> None:
        session = session_create(connect_timeout=2.0, read_timeout=read_timeout, pool=pool)
        try:
            await asyncio.wait_for(call(session), 10)  # a call stuck on the pool fails
        finally:
            await session.close()

    asyncio.run(main())


async def _status_and_body(response: aiohttp.ClientResponse) -> tuple[int, bytes]:
    try:
        return response.status, await response.read()
    finally:
        response.release()


# --- answers ---------------------------------------------------------------------------------


def test_a_200_is_returned_after_one_attempt_with_the_request_as_built(waits):
    server = Upstream([Reply(200, body=b'{"id":"1"}')])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert await _status_and_body(response) == (200, b'{"id":"1"}')

    with_session(call)
    assert server.attempts == 1 and waits == []
    assert server.received == [(BODY, "Bearer upstream-key")]


def test_a_503_then_a_200_is_answered_by_the_retry(waits):
    server = Upstream([Reply(503), Reply(200, body=b'{"id":"2"}')])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert await _status_and_body(response) == (200, b'{"id":"2"}')

    with_session(call)
    assert server.attempts == 2
    assert len(waits) == 1 and 0 <= waits[0] <= BACKOFF_BASE
    assert server.received == [(BODY, "Bearer upstream-key")] * 2


@pytest.mark.parametrize("status", sorted(RETRYABLE))
def test_every_retryable_status_is_retried(waits, status):
    server = Upstream([Reply(status), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=1)
            assert (await _status_and_body(response))[0] == 200

    with_session(call)
    assert server.attempts == 2


def test_a_failing_status_after_the_last_retry_is_handed_to_the_caller(waits):
    server = Upstream([Reply(503, body=b'{"error":"overloaded"}')])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert await _status_and_body(response) == (503, b'{"error":"overloaded"}')

    with_session(call)
    assert server.attempts == 3
    # Jittered and growing: attempt n waits up to BACKOFF_BASE * 2**n.
    assert len(waits) == 2
    assert 0 <= waits[0] <= BACKOFF_BASE and 0 <= waits[1] <= 2 * BACKOFF_BASE


def test_without_retries_a_failing_status_is_answered_after_one_attempt(waits):
    server = Upstream([Reply(503), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=0)
            assert (await _status_and_body(response))[0] == 503

    with_session(call)
    assert server.attempts == 1 and waits == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_status_that_retrying_cannot_change_is_not_retried(waits, status):
    server = Upstream([Reply(status), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert (await _status_and_body(response))[0] == status

    with_session(call)
    assert server.attempts == 1 and waits == []


# --- Retry-After -----------------------------------------------------------------------------


def test_a_429_waits_as_long_as_retry_after_says(waits):
    server = Upstream([Reply(429, {"Retry-After": "3"}), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert (await _status_and_body(response))[0] == 200

    with_session(call)
    assert server.attempts == 2 and waits == [3.0]


def test_a_long_retry_after_is_capped(waits):
    server = Upstream([Reply(503, {"Retry-After": "120"}), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert (await _status_and_body(response))[0] == 200

    with_session(call)
    assert server.attempts == 2 and waits == [RETRY_AFTER_CAP]


def test_a_retry_after_on_the_last_attempt_is_not_waited_for(waits):
    server = Upstream([Reply(429, {"Retry-After": "5"})])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=1)
            assert response.headers["Retry-After"] == "5"
            assert (await _status_and_body(response))[0] == 429

    with_session(call)
    assert server.attempts == 2 and waits == [5.0]


def test_the_backoff_is_jittered_and_capped():
    for attempt in range(8):
        bound = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        delays = [backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2 and len(set(delays)) > 100  # spread, not fixed


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("2", 2.0), ("1.5", 1.5), ("10", 10.0), ("11", 10.0), ("86400", 10.0)],
)
def test_a_retry_after_in_seconds_is_honoured_up_to_the_cap(header, expected):
    assert backoff(0, header) == expected
    assert backoff(5, header) == expected  # whatever the attempt


@pytest.mark.parametrize("header", ["soon", "", "1e", "Wed, 32 Foo 2025"])
def test_an_unreadable_retry_after_falls_back_to_the_jittered_backoff(header):
    assert all(0 <= backoff(1, header) <= 2 * BACKOFF_BASE for _ in range(50))


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


def test_a_retry_after_date_is_honoured_up_to_the_cap():
    # HTTP dates have whole seconds: "in 5 s" is between 4 and 5 s away.
    assert 3.0 < backoff(0, _http_date(5)) <= 5.0
    assert backoff(0, _http_date(-60)) == 0.0  # passed already: at once
    assert backoff(0, _http_date(3600)) == RETRY_AFTER_CAP
    assert 3.0 < backoff(0, _http_date(5).replace("GMT", "-0000")) <= 5.0  # no zone: GMT


def test_a_429_with_a_retry_after_date_waits_until_then(waits):
    server = Upstream([Reply(429, {"Retry-After": _http_date(4)}), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert (await _status_and_body(response))[0] == 200

    with_session(call)
    assert server.attempts == 2 and len(waits) == 1 and 2.0 < waits[0] <= 4.0


@pytest.mark.parametrize(("header", "expected"), [("-5", 0.0), ("inf", RETRY_AFTER_CAP)])
def test_a_retry_after_out_of_range_is_brought_into_it(header, expected):
    assert backoff(0, header) == expected


@pytest.mark.parametrize("header", ["nan", "NaN", "-nan"])
def test_a_retry_after_that_is_not_a_number_falls_back_to_the_jittered_backoff(header):
    assert all(0 <= backoff(1, header) <= 2 * BACKOFF_BASE for _ in range(50))


def test_a_retry_after_of_nan_does_not_hang_the_call():
    """float() reads 'nan', and asyncio.sleep(nan) never returns."""
    server = Upstream([Reply(503, {"Retry-After": "nan"}), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await asyncio.wait_for(
                open_response(session, request_to(url), provider="openai", retries=1), 5
            )
            assert (await _status_and_body(response))[0] == 200

    with_session(call)
    assert server.attempts == 2


# --- connections and timeouts --------------------------------------------------------------------


def test_a_refused_connection_is_retried_then_a_502_provider_error(waits):
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"

    async def call(session: aiohttp.ClientSession) -> None:
        with pytest.raises(AqtaError) as raised:
            await open_response(session, request_to(url), provider="openai", retries=2)
        error = raised.value
        assert (error.status, error.code) == (502, ErrorCode.PROVIDER_ERROR)
        assert "openai could not be reached" in error.message
        assert error.body()["error"]["type"] == "api_error"

    with_session(call)
    assert len(waits) == 2  # three attempts


@contextlib.contextmanager
def not_accepting() -> Iterator[str]:
    """A port whose accept queue is full: Linux drops further SYNs, so connecting hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs")
def test_a_connect_timeout_is_retried_then_a_502_provider_error(waits):
    """Nothing reached the provider: a connect error like a refusal, retried and then
    answered as 'could not be reached', not as the 504 of a provider that took too long."""

    async def call(session: aiohttp.ClientSession) -> None:
        with not_accepting() as url, pytest.raises(AqtaError) as raised:
            await open_response(session, request_to(url), provider="openai", retries=1)
        assert (raised.value.status, raised.value.code) == (502, ErrorCode.PROVIDER_ERROR)
        assert raised.value.message.endswith("openai could not be reached: connection timed out")

    async def main() -> None:
        session = session_create(connect_timeout=0.2, read_timeout=5.0, pool=4)
        try:
            await asyncio.wait_for(call(session), 10)
        finally:
            await session.close()

    asyncio.run(main())
    assert len(waits) == 1


def test_a_connection_dropped_before_the_answer_is_retried_then_a_502(waits):
    async def call(session: aiohttp.ClientSession) -> None:
        async with hanging_up() as (url, connections):
            with pytest.raises(AqtaError) as raised:
                await open_response(session, request_to(url), provider="openai", retries=2)
        assert raised.value.code == ErrorCode.PROVIDER_ERROR
        assert raised.value.message.endswith("ServerDisconnectedError")
        assert len(connections) == 3

    with_session(call)
    assert len(waits) == 2


def test_a_dropped_connection_then_an_answer_is_the_answer(waits):
    async def call(session: aiohttp.ClientSession) -> None:
        async with hanging_up(drops=1) as (url, connections):
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert await _status_and_body(response) == (200, b'{"id":"3"}')
        assert len(connections) == 2

    with_session(call)
    assert len(waits) == 1


def test_an_answer_slower_than_the_read_timeout_is_a_504_and_not_retried(waits):
    server = Upstream([Reply(200, delay=30)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            with pytest.raises(AqtaError) as raised:
                await open_response(session, request_to(url), provider="openai", retries=2)
        error = raised.value
        assert (error.status, error.code) == (504, ErrorCode.PROVIDER_TIMEOUT)
        assert error.message == "Upstream provider openai did not answer in time."

    with_session(call, read_timeout=0.3)
    assert server.attempts == 1 and waits == []


def test_calls_reuse_the_pooled_connection():
    server = Upstream([Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            for _ in range(3):
                response = await open_response(
                    session, request_to(url), provider="openai", retries=0
                )
                await _status_and_body(response)

    with_session(call)
    assert server.attempts == 3 and len(server.peers) == 1


def test_a_retried_status_frees_its_connection_for_the_retry(waits):
    """The failed answer's body is left unread (too large to arrive with its headers): its
    connection must be given up, or with a pool of one the retry waits for it for ever."""
    server = Upstream([Reply(503, body=b"x" * 4_000_000), Reply(200)])

    async def call(session: aiohttp.ClientSession) -> None:
        async with serving(server) as url:
            response = await open_response(session, request_to(url), provider="openai", retries=2)
            assert (await _status_and_body(response))[0] == 200

    with_session(call, pool=1)
    assert server.attempts == 2


# --- errors ---------------------------------------------------------------------------------


def test_provider_errors_name_the_provider_and_what_it_answered():
    answered = provider_error("anthropic", "overloaded", 529)
    assert (answered.status, answered.code) == (502, ErrorCode.PROVIDER_ERROR)
    assert answered.message == "Upstream provider error: anthropic answered 529: overloaded"
    unreachable = provider_error("anthropic", "ClientConnectorError")
    assert "anthropic could not be reached: ClientConnectorError" in unreachable.message
    timeout = provider_timeout("gemini")
    assert (timeout.status, timeout.code) == (504, ErrorCode.PROVIDER_TIMEOUT)
    assert timeout.body()["error"]["code"] == "provider_timeout"
