"""Step 7: the answer. A JSON completion is read whole, translated, priced and sent with
the ``aqta`` object; a stream is translated chunk by chunk as it arrives, its finish chunk
held back by :class:`StreamTail` until the usage is known, so the ``aqta`` object on it
carries the final cost. Errors go out in the one error envelope."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from aqta import metrics
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane import http
from gateway.dataplane.call import Call, ms_since
from gateway.dataplane.catalog import Catalog
from gateway.dataplane.providers.base import StreamState, openai_usage
from gateway.dataplane.steps import highrisk
from gateway.dataplane.steps.call_upstream import Opened
from gateway.dataplane.stream_tail import StreamTail
from gateway.dataplane.upstream import provider_error, provider_timeout

logger = logging.getLogger("aqta.gateway")
READ_FAILURES = (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError)


async def error(
    send: http.Send, call: Call, failure: AqtaError, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    call.http_status, call.error_code = failure.status, failure.code
    body = failure.body()
    if call.record is not None:
        body["aqta"] = call.aqta()
    headers = [*call.headers(), *http.error_headers(failure), *extra]
    await http.send_json(send, failure.status, orjson.dumps(body), headers)


async def completion(
    catalog: Catalog, send: http.Send, call: Call, opened: Opened
) -> dict[str, Any]:
    """Send a JSON completion; returns the body sent (without ``aqta``) for the cache."""
    response, adapter = opened.response, opened.target.adapter
    try:
        raw = await response.read()
    except (aiohttp.SocketTimeoutError, TimeoutError):
        raise provider_timeout(call.deployment) from None
    except aiohttp.ClientError as failure:
        raise provider_error(call.deployment, type(failure).__name__) from None
    finally:
        response.release()
    call.ttfb_ms = ms_since(call.started)
    try:
        body, call.usage = adapter.parse_response(raw, call.model)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise provider_error(call.deployment, "unreadable answer", 200) from None
    price(catalog, call)
    highrisk.response(call, body)
    if call.record is not None and call.record.content_logging:
        call.completion = orjson.dumps(body.get("choices")).decode()
    sent = {**body, "aqta": call.aqta()}
    await http.send_json(send, 200, orjson.dumps(sent), call.headers())
    return body


async def stream(catalog: Catalog, send: http.Send, call: Call, opened: Opened) -> None:
    """Relay a stream; a cut or an upstream error event ends it with an error event,
    never a fake ``[DONE]``."""
    assert call.body is not None and call.record is not None
    options = call.body.get("stream_options") or {}
    state = StreamState(
        include_usage=bool(options.get("include_usage")),
        model=call.model,
        keep_text=call.record.content_logging or highrisk.wanted(call),
    )
    tail = StreamTail(state.include_usage)
    headers = [http.SSE, http.NO_CACHE, *call.headers()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    call.response_started = True
    try:
        await _relay(send, call, opened, state, tail)
    finally:
        opened.response.release()
        _stream_usage(catalog, call, state)
    if state.done:
        end = tail.close(call.aqta(), _envelope(call, state), openai_usage(call.usage))
        await send({"type": "http.response.body", "body": end})
        return
    call.http_status, call.error_code = 502, ErrorCode.PROVIDER_ERROR
    metrics.UPSTREAM_ERRORS.labels(call.deployment, "stream").inc()
    cut = provider_error(call.deployment, "the stream ended before it was complete")
    event = state.error or b"data: " + orjson.dumps(cut.body()) + b"\n\n"
    await send({"type": "http.response.body", "body": tail.cut() + event})


async def _relay(
    send: http.Send, call: Call, opened: Opened, state: StreamState, tail: StreamTail
) -> None:
    adapter = opened.target.adapter
    try:
        async for data in opened.response.content.iter_any():
            await _forward(send, call, state, tail, adapter.translate_stream(data, state))
            if state.done or state.error:
                return
        await _forward(send, call, state, tail, adapter.finish_stream(state))  # body ended
    except READ_FAILURES as failure:
        extra = {"trace_id": call.trace_id}
        logger.warning("upstream stream from %s broke: %s", call.deployment, failure, extra=extra)


async def _forward(
    send: http.Send, call: Call, state: StreamState, tail: StreamTail, events: list[bytes]
) -> None:
    if not events:
        return
    if state.keep_text:
        state.completion_text.extend(delta_text(events))
    events = tail.feed(events)
    if not events:
        return
    if call.ttfb_ms is None:
        call.ttfb_ms = ms_since(call.started)
    await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})


def _envelope(call: Call, state: StreamState) -> dict[str, Any]:
    """The fields every chunk repeats, for the chunks the gateway itself writes."""
    first = state.first or {}
    return {
        "id": first.get("id", "chatcmpl-" + call.trace_id[len("tr_") :]),
        "object": "chat.completion.chunk",
        "created": first.get("created", int(call.ts)),
        "model": first.get("model", call.model),
    }


def _stream_usage(catalog: Catalog, call: Call, state: StreamState) -> None:
    if state.usage is not None:
        call.usage = state.usage
    else:  # cut short: bill what was seen (about one token per content chunk)
        call.usage = Usage(
            prompt_tokens=len(call.raw) // 4, completion_tokens=max(state.chunks - 1, 0)
        )
    price(catalog, call)
    if state.keep_text:
        text = "".join(state.completion_text)
        highrisk.response(call, text)
        if call.record is not None and call.record.content_logging:
            call.completion = text


def price(catalog: Catalog, call: Call) -> None:
    """EUR cost of the usage; a per-request search fee defaults to the requested size."""
    assert call.route is not None and call.body is not None
    usage = call.usage
    if usage.search_context_size is None:
        options = call.body.get("web_search_options")
        size = options.get("search_context_size") if isinstance(options, dict) else None
        if size in ("low", "medium", "high"):
            call.usage = usage = dataclasses.replace(usage, search_context_size=size)
    call.cost_eur = catalog.cost_eur(call.route.model, usage, call.ts)


def delta_text(events: list[bytes]) -> list[str]:
    """Streamed text, for content logging (only when the organisation turned it on)."""
    texts = []
    for event in events:
        try:
            chunk = orjson.loads(event[len(b"data: ") :])
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                texts.append(content)
    return texts
