"""The mock provider server: an aiohttp application and a threaded harness for tests.

One server speaks four protocols (``protocols/``): OpenAI Chat Completions under ``/v1``,
Anthropic Messages (``/v1/messages``), Gemini (``/v1beta/models/{model}:generateContent``) and
Perplexity under ``/perplexity``. Every chat request of any protocol goes through the same
pipeline (:func:`_chat`), consumes the next script step and counts in ``/_mock/stats``.

Serve the application with ``handler_cancellation=True`` (as :class:`MockServer` and
``python -m gateway.mock_provider`` do): aiohttp then cancels a handler whose client went away,
which is how the mock notices a disconnect while it sleeps. Without it a disconnect is still
noticed when the delay ends or the next stream write fails.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson
from aiohttp import web

from . import wire
from .config import MockConfig
from .faults import Fault, FaultError, fault_from_step, fault_from_text
from .protocols import ANTHROPIC, GEMINI, OPENAI, PERPLEXITY
from .protocols.base import Call, Protocol, StreamPlan
from .protocols.gemini import gemini_method_error
from .state import MockState

__all__ = ["CONFIG_KEY", "STATE_KEY", "MockServer", "create_app"]

CONFIG_KEY = web.AppKey("mock_config", MockConfig)
STATE_KEY = web.AppKey("mock_state", MockState)
# Prompts of long-context tests are big; the aiohttp default of 1 MiB is too small.
MAX_BODY_BYTES = 64 * 1024 * 1024
PERPLEXITY_PREFIX = "/perplexity"
T = TypeVar("T")


def create_app(config: MockConfig | None = None) -> web.Application:
    """The mock's routes, with fresh state."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[CONFIG_KEY] = config or MockConfig()
    app[STATE_KEY] = MockState()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models_list)
    app.router.add_get("/v1/models/{model}", model_detail)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/v1beta/models/{target}", gemini_generate)
    app.router.add_post("/v1/models/{target}", gemini_generate)
    app.router.add_post(f"{PERPLEXITY_PREFIX}/chat/completions", perplexity_chat)
    app.router.add_get("/_mock/stats", mock_stats)
    app.router.add_post("/_mock/reset", mock_reset)
    app.router.add_get("/_mock/script", script_list)
    app.router.add_post("/_mock/script", script_add)
    app.router.add_delete("/_mock/script", script_clear)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


# --- chat requests of every protocol -------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, OPENAI)


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    return await _handle(request, ANTHROPIC)


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    """``models/{model}:generateContent`` and ``:streamGenerateContent`` (other methods: 404)."""
    if (unknown := gemini_method_error(request)) is not None:
        return unknown
    return await _handle(request, GEMINI)


async def perplexity_chat(request: web.Request) -> web.StreamResponse:
    return await _handle(request, PERPLEXITY)


async def _handle(request: web.Request, protocol: Protocol) -> web.StreamResponse:
    started = time.monotonic()
    state = request.app[STATE_KEY]
    state.count_request(protocol.name)
    fault = state.next_fault()  # every chat request consumes a step, even one rejected below
    try:
        return await _chat(request, protocol, fault, started)
    except asyncio.CancelledError:
        state.note_disconnect()
        raise


async def _chat(
    request: web.Request, protocol: Protocol, fault: Fault, started: float
) -> web.StreamResponse:
    config, state = request.app[CONFIG_KEY], request.app[STATE_KEY]
    if (denied := protocol.auth_error(request, config, started)) is not None:
        return denied
    body = await _json_object(request)
    if body is None:
        return protocol.invalid_json(request, started)
    state.record_request(body, request.headers, path=request.path_qs, protocol=protocol.name)
    try:
        fault = fault.merged(fault_from_text(protocol.directive_text(body)))
    except FaultError as exc:
        return protocol.bad_request(request, str(exc), started)

    if fault.reset:
        return _drop_connection(request, reset=True)
    delay_ms = config.latency_ms + (fault.delay_ms or 0)
    if delay_ms > 0 and not await _client_waited(request, delay_ms):
        return web.Response()
    return await _reply(Call(request, body, fault, started, config, state), protocol)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The request body if it is a JSON object, else None."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


async def _reply(call: Call, protocol: Protocol) -> web.StreamResponse:
    """What a readable request gets: an injected error, a refusal, a stream or an answer."""
    if call.fault.status is not None:
        return protocol.injected_error(call)
    if (problem := protocol.request_error(call)) is not None:
        return problem
    if protocol.wants_stream(call):
        return await _stream(call, protocol.stream(call))
    if call.fault.cut_after_chunks is not None:
        return _drop_connection(call.request, reset=False)
    return protocol.answer(call)


async def _stream(call: Call, plan: StreamPlan) -> web.StreamResponse:
    request, state, fault = call.request, call.state, call.fault
    response = web.StreamResponse(headers=plan.headers)
    await response.prepare(request)
    state.streams_started += 1
    try:
        await _send_frames(response, plan, fault, call.chunk_delay)
        if fault.cut_after_chunks is not None:
            return _drop_connection(request, reset=False, response=response)
        await response.write_eof()
    except ConnectionResetError:
        state.note_disconnect()
        return response
    if fault.error_event_after_chunks is None:
        state.streams_completed += 1
    return response


async def _send_frames(
    response: web.StreamResponse, plan: StreamPlan, fault: Fault, chunk_delay: float
) -> None:
    """Write the frames the fault lets through, then the plan's ending or error event if due.

    Unpaced streams go out in one write: it keeps the mock cheap, and the client still parses
    separate SSE events.
    """
    limit = fault.cut_after_chunks
    if limit is None:
        limit = fault.error_event_after_chunks
    sent = plan.frames if limit is None else plan.frames[:limit]
    if fault.cut_after_chunks is not None:
        ending = b""
    elif fault.error_event_after_chunks is not None:
        ending = (plan.separator if sent else b"") + plan.error_event
    else:
        ending = plan.ending
    if chunk_delay <= 0:
        await response.write(plan.head + plan.separator.join(sent) + ending)
        return
    if plan.head:
        await response.write(plan.head)
    for index, frame in enumerate(sent):
        if index in plan.paced:
            await asyncio.sleep(chunk_delay)
        await response.write(plan.separator + frame if index else frame)
    if ending:
        await response.write(ending)


async def _client_waited(request: web.Request, delay_ms: float) -> bool:
    """Sleep ``delay_ms``; False (and counted) if the client hung up meanwhile."""
    await asyncio.sleep(delay_ms / 1000)
    transport = request.transport
    if transport is None or transport.is_closing():
        request.app[STATE_KEY].note_disconnect()
        return False
    return True


def _drop_connection(
    request: web.Request, *, reset: bool, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the client's connection: an RST (``reset``) or a plain close after flushing.

    aiohttp then fails to write the returned response and drops it quietly.
    """
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST instead of FIN, a connect-level failure.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    return response if response is not None else web.Response()


def _json(
    status: int, payload: Any, started: float, headers: Mapping[str, str] | None = None
) -> web.Response:
    return OPENAI.json_response(status, payload, started, headers)


# --- models and 404 ------------------------------------------------------------------------------


async def models_list(request: web.Request) -> web.Response:
    started = time.monotonic()
    if (denied := OPENAI.auth_error(request, request.app[CONFIG_KEY], started)) is not None:
        return denied
    models = request.app[STATE_KEY].models
    data = [_model(name, created) for name, created in models.items()]
    return _json(200, {"object": "list", "data": data}, started)


async def model_detail(request: web.Request) -> web.Response:
    started = time.monotonic()
    if (denied := OPENAI.auth_error(request, request.app[CONFIG_KEY], started)) is not None:
        return denied
    name = request.match_info["model"]
    created = request.app[STATE_KEY].models.get(name)
    if created is None:
        return _json(404, wire.status_error(404, model=name), started)
    return _json(200, _model(name, created), started)


def _model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "system"}


async def not_found(request: web.Request) -> web.Response:
    message = f"Invalid URL ({request.method} {request.path})"
    return _json(404, wire.invalid_request(message), time.monotonic())


# --- control API ---------------------------------------------------------------------------------


async def mock_stats(request: web.Request) -> web.Response:
    return _control(request.app[STATE_KEY].stats())


async def mock_reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.reset()
    return _control(state.stats())


async def script_list(request: web.Request) -> web.Response:
    return _control({"steps": [fault.as_dict() for fault in request.app[STATE_KEY].script]})


async def script_add(request: web.Request) -> web.Response:
    """Queue steps: ``{"steps": [{"status": 500}, {"delay_ms": 3000}, ...]}``."""
    try:
        payload = orjson.loads(await request.read())
        steps = payload["steps"]
        if not isinstance(steps, list):
            raise FaultError("'steps' must be an array of step objects.")
        faults = [fault_from_step(step) for step in steps]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return _control(wire.invalid_request('Expected {"steps": [...]}.'), status=400)
    except FaultError as exc:
        return _control(wire.invalid_request(str(exc)), status=400)
    state = request.app[STATE_KEY]
    state.queue(faults)
    return _control({"queued": len(faults), "pending": len(state.script)})


async def script_clear(request: web.Request) -> web.Response:
    request.app[STATE_KEY].script.clear()
    return _control({"pending": 0})


def _control(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=wire.JSON_TYPE)


# --- threaded harness ----------------------------------------------------------------------------


class MockServer:
    """Runs the mock on 127.0.0.1 in a background thread with its own event loop.

    ::

        with MockServer(MockConfig(chunks=5)) as mock:
            client = openai.OpenAI(base_url=mock.base_url, api_key="x")
            claude = anthropic.Anthropic(base_url=mock.anthropic_base_url, api_key="x")
            mock.script({"status": 503})
            ...
            assert mock.stats()["chat_requests"] == 1
    """

    def __init__(
        self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or MockConfig()
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        """Root URL, where the control API lives (``/_mock/...``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What an Anthropic client takes as ``base_url`` (it adds ``/v1/messages``)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """What a Gemini client takes as base URL (it adds ``/v1beta/models/...``)."""
        return self.url

    @property
    def perplexity_base_url(self) -> str:
        """What a Perplexity client takes as ``base_url`` (it adds ``/chat/completions``)."""
        return self.url + PERPLEXITY_PREFIX

    def start(self) -> Self:
        """Bind (an ephemeral port unless one was given) and serve until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("MockServer already started")
        self._thread = threading.Thread(target=self._serve, name="mock-provider", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving; requests in flight are cut off."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def script(self, *steps: Mapping[str, Any]) -> None:
        """Queue fault steps, like ``POST /_mock/script``."""
        faults = [fault_from_step(step) for step in steps]
        self._on_loop(lambda: self.app[STATE_KEY].queue(faults))

    def clear_script(self) -> None:
        self._on_loop(self.app[STATE_KEY].script.clear)

    def stats(self) -> dict[str, Any]:
        """The ``GET /_mock/stats`` counters."""
        return self._on_loop(self.app[STATE_KEY].stats)

    def reset(self) -> None:
        """Zero the counters and clear the script, like ``POST /_mock/reset``."""
        self._on_loop(self.app[STATE_KEY].reset)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop: the state is only ever touched from there."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("MockServer is not running")

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    def _serve(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1
        )
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): less CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
