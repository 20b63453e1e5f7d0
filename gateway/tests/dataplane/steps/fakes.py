"""Fakes of the data plane's runtime for the steps' unit tests: a catalogue built by hand
(no database), key records, ASGI scopes, a recorder of what a step sends, and a runtime of
in-process parts (``Runtime.local``), optionally on the tests' own Redis.

Nothing of ours is replaced: each test runs the real step on real parts; only the outside
world is made up (the catalogue's rows, the key's record, the provider: see ``provider``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from redis.asyncio import Redis

from accounts import keys as key_secrets
from accounts.key_records import KeyRecord, digest_for
from billing.models import ModelPrice
from gateway.dataplane import http, policy
from gateway.dataplane.buffer import LocalBuffer, RedisBuffer
from gateway.dataplane.call import Call, call_new
from gateway.dataplane.catalog import Catalog, Deployment, Endpoint, ModelEntry, PricePeriod
from gateway.dataplane.responsecache import ResponseCache
from gateway.dataplane.runtime import Config, Runtime
from gateway.dataplane.steps import route
from gateway.dataplane.steps.parse import parse

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
NOWHERE = "http://127.0.0.1:9"  # discard port: nothing answers (tests that call use a server)
USD_EUR = Decimal("0.9")
# USD per million tokens: 1 in, 2 out (so 10 prompt + 5 completion tokens = 0.000018 EUR).
PRICE = ModelPrice(
    input_usd_per_mtok=Decimal(1),
    output_usd_per_mtok=Decimal(2),
    valid_from=datetime(2020, 1, 1, tzinfo=UTC),
)
ALWAYS = (PricePeriod(0.0, None, PRICE),)
CONFIG = Config(
    max_request_bytes=64 * 1024,
    upstream_retries=0,  # a failure is final at once: no backoff sleeps
    breaker_open_seconds=30,
    catalog_refresh_seconds=3600.0,
    flush_in_workers=False,
)
MESSAGES = [{"role": "user", "content": "Hello"}]


def endpoint(provider: str, base_url: str) -> Endpoint:
    return Endpoint(
        name=f"ep-{provider}", provider=provider, base_url=base_url, api_key=UPSTREAM_KEY
    )


def deployment(
    name: str, provider: str, base_url: str, upstream: str, limit: int | None
) -> Deployment:
    return Deployment(name, provider, endpoint(provider, base_url), upstream, limit)


def model(
    model_id: str,
    provider: str,
    deployments: tuple[Deployment, ...],
    *,
    cost_effective: bool = True,
    max_output_tokens: int | None = None,
    prices: tuple[PricePeriod, ...] = ALWAYS,
) -> ModelEntry:
    return ModelEntry(
        model_id=model_id,
        provider=provider,
        cost_effective=cost_effective,
        upstream_model_id=model_id,
        max_output_tokens=max_output_tokens,
        endpoint=deployments[0].endpoint if deployments else None,
        prices=prices,
        deployments=deployments,
    )


def catalog(
    openai_url: str = NOWHERE, anthropic_url: str = NOWHERE, *, rate: bool = True
) -> Catalog:
    """The catalogue the tests route by:

    - ``gpt-4o-mini``: OpenAI, cost-effective, at most 16384 output tokens; ``mini`` is
      its alias;
    - ``claude-sonnet``: Anthropic, not cost-effective (a tier with every model only);
    - ``gpt-4o``: two OpenAI deployments (``primary``, then ``secondary``);
    - ``claude-or-gpt``: Anthropic first, OpenAI as the fallback;
    - ``unpriced`` (no price), ``undeployed`` (no deployment), ``exotic`` (a provider
      the gateway has no adapter for).
    """
    openai = deployment("openai", "openai", openai_url + "/v1", "gpt-4o-mini-2024", 16384)
    anthropic = deployment("anthropic", "anthropic", anthropic_url, "claude-sonnet-4-5", 8192)
    primary = deployment("primary", "openai", openai_url + "/v1", "gpt-4o-a", None)
    secondary = deployment("secondary", "openai", openai_url + "/v1", "gpt-4o-b", None)
    mini = model("gpt-4o-mini", "openai", (openai,), max_output_tokens=16384)
    models = {
        "gpt-4o-mini": mini,
        "mini": mini,
        "claude-sonnet": model(
            "claude-sonnet", "anthropic", (anthropic,), cost_effective=False, max_output_tokens=8192
        ),
        "gpt-4o": model("gpt-4o", "openai", (primary, secondary)),
        "claude-or-gpt": model("claude-or-gpt", "anthropic", (anthropic, openai)),
        "unpriced": model("unpriced", "openai", (openai,), prices=()),
        "undeployed": model("undeployed", "openai", ()),
        "exotic": model("exotic", "cohere", (deployment("cohere", "cohere", NOWHERE, "c", None),)),
    }
    rates = ((0.0, None, USD_EUR),) if rate else ()
    return Catalog(models=models, rates=rates)


_orgs: set[str] = set()  # organisations whose Redis keys a runtime deletes when it ends


def key_record(**overrides: Any) -> KeyRecord:
    """A key of its own organisation (fresh ids: no two tests share limits)."""
    fields: dict[str, Any] = {
        "key_id": str(uuid.uuid4()),
        "org_id": str(uuid.uuid4()),
        "tier": "pro",
        "rate_limit_per_minute": 100,
        "monthly_request_quota": None,
        "org_budget_eur": None,
        "key_budget_eur": None,
        "all_models": True,
        "allowed_models": (),
        "content_logging": False,
        "response_cache": False,
        "loop_threshold": 10,
        "loop_window_seconds": 60,
        "expires_at": None,
    }
    record = KeyRecord(**{**fields, **overrides})
    _orgs.add(record.org_id)
    return record


def secret() -> str:
    return key_secrets.generate()


def digest(token: str) -> str:
    found = digest_for(token)
    assert found is not None
    return found


def scope(token: str | None = None, **headers: str) -> dict[str, Any]:
    """An ASGI HTTP scope; ``x_aqta_cache="on"`` becomes the header ``x-aqta-cache: on``."""
    pairs = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    if token is not None:
        pairs.append((b"authorization", f"Bearer {token}".encode()))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": pairs}


@dataclass
class Sent:
    """Records the ASGI messages a step sends."""

    messages: list[http.Message] = field(default_factory=list)

    async def __call__(self, message: http.Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.messages
        status = starts[0]["status"]
        assert isinstance(status, int), starts[0]
        return status

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> list[bytes]:
        """A stream's events, in order, without their ``data: `` prefix."""
        return [e.removeprefix(b"data: ") for e in self.body.split(b"\n\n") if e]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **fields}


def routed(catalog_: Catalog, record: KeyRecord, **fields: Any) -> Call:
    """A call as the pipeline has it after steps 1-3 (authenticated, parsed, routed)."""
    call = call_new()
    call.record = record
    _orgs.add(record.org_id)
    call.raw = orjson.dumps(body(**fields))
    call.body = parse({"headers": []}, call.raw)
    call.stream = bool(call.body.get("stream"))
    model = route.model_of(catalog_, call.body)
    call.route = route.route(catalog_, record, model, call.body, call.ts)
    call.deployment = call.route.targets[0].deployment.name
    return call


def with_redis(rt: Runtime, client: Redis) -> Runtime:
    """The runtime as ``Runtime.start`` builds it with Redis, for the limiter, the response
    cache and the trace buffer (on a stream of the test's own). The breaker stays in
    process: its Redis keys are not per organisation, so tests sharing a Redis would meet."""
    return replace(
        rt,
        redis=client,
        limiter=policy.RedisLimiter(client),
        cache=ResponseCache(client, rt.cache.ttl),
        buffer=RedisBuffer(client, client, stream=f"aqta:test-traces:{uuid.uuid4().hex}"),
    )


async def traces(rt: Runtime) -> list[dict[str, Any]]:
    """The trace records settled so far: in the stream, then those kept in process."""
    buffer = rt.buffer
    if isinstance(buffer, LocalBuffer):
        return list(buffer.items)
    assert isinstance(buffer, RedisBuffer)
    entries = await buffer.client.xrange(buffer.stream) if rt.redis is not None else []
    records = []
    for _, fields in entries or []:
        assert fields is not None  # XRANGE lists live entries only
        records.append(orjson.loads(fields[b"d"]))
    return records + buffer.fallback.items


@asynccontextmanager
async def runtime(
    catalog_: Catalog | None = None, redis_url: str | None = None
) -> AsyncIterator[Runtime]:
    rt = Runtime.local(catalog_ or catalog(), CONFIG)
    client = Redis.from_url(redis_url) if redis_url else None
    if client is not None:
        rt = with_redis(rt, client)
    try:
        yield rt
    finally:
        await rt.session.close()
        if client is not None:
            assert isinstance(rt.buffer, RedisBuffer)
            await client.delete(rt.buffer.stream)
            await _forget(client)
            await client.aclose()


async def _forget(client: Redis) -> None:
    """Delete what the tests' organisations left in Redis (limits, loop counters, markers)."""
    while _orgs:
        org_id = _orgs.pop()
        found = [k async for k in client.scan_iter(match=f"aqta:*{{{org_id}}}*", count=1000)]
        if found:
            await client.delete(*found)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())
