"""Step 5: the response cache (opt-in per organisation, or per request with
``X-Aqta-Cache: on``). An exact-match hit on the organisation and the request bytes is
answered without calling upstream; streams are never cached."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.dataplane import http
from gateway.dataplane.call import Call
from gateway.dataplane.runtime import Runtime

ON = (b"on", b"1", b"true")


def wanted(scope: http.Scope, call: Call) -> bool:
    if call.stream or call.record is None:
        return False
    asked = http.header(scope, b"x-aqta-cache")
    if asked is not None:
        return asked.lower() in ON
    return call.record.response_cache


def key(call: Call) -> str:
    assert call.record is not None
    return f"{call.record.org_id}:{hashlib.sha256(call.raw).hexdigest()}"


async def answer(rt: Runtime, send: http.Send, call: Call) -> bool:
    """Answer from the cache if it holds this request; whether it did."""
    hit = await rt.cache.get(key(call))
    if hit is None:
        return False
    call.cached = True
    call.deployment = hit["provider"]
    body = hit["body"]
    body["aqta"] = call.aqta()
    await http.send_json(send, 200, orjson.dumps(body), call.headers())
    return True


async def store(rt: Runtime, call: Call, body: dict[str, Any]) -> None:
    await rt.cache.put(key(call), {"provider": call.deployment, "body": body})
