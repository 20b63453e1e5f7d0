"""A /v1 call's way through the gateway, step by step (each step is a module of ``steps``):

    authenticate → parse → route → (high-risk rules) → admit → (attest) → cache
    → call upstream → answer → settle

Whatever happens, the call ends in ``settle``: refused calls are recorded with the policy
that refused them, a client that leaves mid-way is still billed for what it used, and a
bug of ours is an OpenAI-shaped 500 naming the trace that gives back everything admission
took. The one database access on this path is a Healthcare call's receipt (``steps.attest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from django.core.exceptions import ImproperlyConfigured

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http
from gateway.dataplane.call import Call, call_new
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import (
    admit,
    answer,
    attest,
    cache,
    call_upstream,
    highrisk,
    route,
    settle,
)
from gateway.dataplane.steps.authenticate import authenticate, authenticate_unrevoked
from gateway.dataplane.steps.parse import parse
from gateway.models import TraceStatus
from healthcare import keyring

logger = logging.getLogger("aqta.gateway")


async def chat(rt: Runtime, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
    """``POST /v1/chat/completions``."""
    call = call_new()
    try:
        if await _admitted(rt, scope, receive, send, call):
            attest.begin(rt, call)  # Healthcare: written while the provider is asked
            async with _watching(receive, call):
                await _answer(rt, scope, attest.gated(send, call), call)
    except Exception:
        await _internal_error(attest.gated(send, call), call)
    finally:  # also when shutting down cancels the call: it is still recorded
        with contextlib.suppress(Exception):
            await settle.settle(rt, call)


async def _admitted(
    rt: Runtime, scope: http.Scope, receive: http.Receive, send: http.Send, call: Call
) -> bool:
    """Steps 1-4; False when the call was refused (and answered)."""
    try:
        call.raw = await http.read_body(receive, rt.config.max_request_bytes)
        call.record = await authenticate(rt.keys, scope)
        call.body = parse(scope, call.raw)
        call.stream = bool(call.body.get("stream"))
        model = route.model_of(rt.catalog, call.body)
        # A call refused from here on (model not allowed, no provider, a parameter the
        # provider cannot honour) is still traced with the provider of the model it asked for.
        call.deployment = model.provider
        call.route = route.route(rt.catalog, call.record, model, call.body, call.ts)
        call.deployment = call.route.targets[0].deployment.name
        highrisk.request(call)
        await admit.admit(rt, call)
    except AqtaError as refusal:
        if call.admission is None:
            call.status = TraceStatus.BLOCKED
        attest.begin(rt, call)
        await answer.error(attest.gated(send, call), call, refusal)
        return False
    except ConnectionResetError:  # the client left while sending the body
        call.record = None  # nothing to record: it never asked for anything
        return False
    return True


async def _answer(rt: Runtime, scope: http.Scope, send: http.Send, call: Call) -> None:
    """Steps 5-7, with the catalogue the call was routed by."""
    catalog = rt.catalog
    try:
        use_cache = cache.wanted(scope, call)
        if use_cache and await cache.answer(rt, send, call):
            return
        opened = await call_upstream.call_upstream(rt, call)
        if call.stream:
            await answer.stream(catalog, send, call, opened)
            return
        body = await answer.completion(catalog, send, call, opened)
        if use_cache:
            await cache.store(rt, call, body)
    except AqtaError as failure:
        await answer.error(send, call, failure)


@contextlib.asynccontextmanager
async def _watching(receive: http.Receive, call: Call) -> AsyncIterator[None]:
    """The client leaving cancels the work in hand (also before the first byte); the call
    is still recorded and billed for what it used. Shutting down is not a client leaving."""
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.create_task(_watch_disconnect(receive, task, call))
    try:
        yield
    except asyncio.CancelledError:
        if not call.disconnected:
            raise
        task.uncancel()
        call.http_status, call.error_code = 499, ErrorCode.CLIENT_DISCONNECTED
    finally:
        watcher.cancel()


async def _watch_disconnect(receive: http.Receive, task: asyncio.Task[None], call: Call) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            call.disconnected = True
            task.cancel()
            return


async def _internal_error(send: http.Send, call: Call) -> None:
    """A bug of ours, wherever it is: the client gets an OpenAI-shaped 500 naming the
    trace, and the call is recorded as an error that consumed nothing."""
    logger.exception("unexpected error", extra={"trace_id": call.trace_id})
    call.status, call.policy = TraceStatus.ERROR, ""
    failure = internal_error(call)
    with contextlib.suppress(Exception):
        if call.response_started:  # mid-stream: end it with an error event
            body = b"data: " + orjson.dumps(failure.body()) + b"\n\n"
            await send({"type": "http.response.body", "body": body})
        else:
            await answer.error(send, call, failure)
    call.http_status, call.error_code = 500, failure.code


def internal_error(call: Call) -> AqtaError:
    return AqtaError(
        f"The gateway could not handle this request (trace {call.trace_id}); "
        "it was not counted against your limits.",
        code=ErrorCode.INTERNAL_ERROR,
    )


async def models(rt: Runtime, scope: http.Scope, send: http.Send, model_id: str | None) -> None:
    """``GET /v1/models`` and ``GET /v1/models/{id}``: what this key may call."""
    call = call_new()
    try:
        call.record = await authenticate_unrevoked(rt.keys, scope)
        listed = _listed(rt, call)
        body = listed if model_id is None else _one(listed, model_id)
        await http.send_json(send, 200, orjson.dumps(body), call.headers())
    except AqtaError as refusal:
        await answer.error(send, call, refusal)
    except Exception:
        logger.exception("unexpected error", extra={"trace_id": call.trace_id})
        with contextlib.suppress(Exception):
            await answer.error(send, call, internal_error(call))


async def public_key(send: http.Send) -> None:
    """``GET /v1/attestation/public-key``: the receipt issuer's key and its earlier ones,
    with their validity windows (public: anyone may verify a receipt)."""
    call = call_new()
    try:
        body = await asyncio.to_thread(keyring.published_now)
    except ImproperlyConfigured:
        logger.error("no receipt signing key is configured")
        await answer.error(send, call, attest.UNAVAILABLE)
        return
    except Exception:
        logger.exception("unexpected error", extra={"trace_id": call.trace_id})
        await answer.error(send, call, internal_error(call))
        return
    headers = [*call.headers(), (b"cache-control", b"public, max-age=60")]
    await http.send_json(send, 200, orjson.dumps(body), headers)


def _listed(rt: Runtime, call: Call) -> dict[str, object]:
    assert call.record is not None
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": m.provider,
            "provider": m.provider,
        }
        for name, m in sorted(rt.catalog.models.items())
        if route.allowed(call.record, m, name) and route.servable(m)
    ]
    return {"object": "list", "data": data}


def _one(listed: dict[str, object], model_id: str) -> object:
    data = listed["data"]
    assert isinstance(data, list)
    found = next((m for m in data if m["id"] == model_id), None)
    if found is None:
        raise route.model_not_found(model_id)
    return found
