"""The /v1 data plane: an ASGI app, routed from ``aqta/asgi.py``.

Per call: authenticate the key (cached record), validate, one Redis round trip for every
admission policy, optionally the response cache, the provider call (pooled aiohttp,
retries before the first byte), the answer (JSON or SSE passed through), then budget
settlement and the trace record in one pipeline. No database access on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import orjson
from django.conf import settings
from redis.exceptions import RedisError

from accounts.key_records import KeyRecord, digest_for
from aqta import metrics
from aqta import redis as aqta_redis
from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway import crypto
from gateway.dataplane import http, loopguard, policy, validation
from gateway.dataplane.breaker import Breaker
from gateway.dataplane.buffer import LocalBuffer, RedisBuffer
from gateway.dataplane.catalog import Catalog, Deployment, ModelEntry, catalog_load
from gateway.dataplane.keycache import KeyCache
from gateway.dataplane.providers import adapter_for
from gateway.dataplane.providers.base import Provider, StreamState, openai_usage
from gateway.dataplane.responsecache import ResponseCache
from gateway.dataplane.stream_tail import StreamTail
from gateway.dataplane.upstream import (
    open_response,
    provider_error,
    provider_timeout,
    session_create,
)
from gateway.trace_ids import TraceIds

logger = logging.getLogger("aqta.gateway")

INVALID_KEY = AqtaError("Invalid API key provided.", code=ErrorCode.INVALID_API_KEY)
DEFAULT_COMPLETION_ESTIMATE = 512
MAX_SETTLE_UNITS = 2**53  # about 90 million EUR: far above any real call
VERDICT_ERRORS = {
    policy.QUOTA: (
        ErrorCode.QUOTA_EXCEEDED,
        "Monthly request quota exhausted for this organisation.",
    ),
    policy.BUDGET_ORG: (
        ErrorCode.BUDGET_EXCEEDED,
        "Monthly EUR budget exhausted for this organisation.",
    ),
    policy.BUDGET_KEY: (
        ErrorCode.BUDGET_EXCEEDED,
        "Monthly EUR budget exhausted for this API key.",
    ),
}
POLICY_NAMES = {
    policy.RATE: "rate_limit",
    policy.LOOP: "loop_guard",
    policy.QUOTA: "quota",
    policy.BUDGET_ORG: "budget_guard",
    policy.BUDGET_KEY: "budget_guard",
}


@dataclass(slots=True)
class Call:
    """One /v1 request on its way through the gateway."""

    trace_id: str
    started: float
    ts: float
    record: KeyRecord | None = None
    body: dict | None = None
    raw: bytes = b""
    model: ModelEntry | None = None
    ask: policy.Ask | None = None
    admission: policy.Admission | None = None
    stream: bool = False
    usage: Usage = field(default_factory=Usage)
    cost_eur: Decimal = Decimal(0)
    status: str = "passed"
    http_status: int = 200
    error_code: str = ""  # an ErrorCode, or "" for none
    policy: str = ""
    cached: bool = False
    loop_detected: bool = False
    disconnected: bool = False
    ttfb_ms: int | None = None
    provider: str = ""
    completion: str | None = None
    cost_prevented: Decimal = Decimal(0)
    deployments: list[Deployment] = field(default_factory=list)
    deployment: Deployment | None = None
    response_started: bool = False
    finished: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        trace_id = self.trace_id.encode()
        # OpenAI's SDKs expose x-request-id as ``response._request_id``.
        ids = [(b"x-aqta-trace-id", trace_id), (b"x-request-id", trace_id)]
        admission = self.admission
        if admission is not None:
            limit, remaining, reset = admission.limit, admission.remaining, admission.reset
        elif self.record is not None:  # answered before admission: nothing was counted
            limit = remaining = self.record.rate_limit_per_minute
            reset = 60
        else:  # no key involved (unknown endpoint, bad method, bad key): no limit to show
            return ids
        return [
            *ids,
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(max(remaining, 0)).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]

    def aqta(self) -> dict:
        return {
            "trace_id": self.trace_id,
            # A JSON number, as documented; the trace keeps the exact Decimal.
            "cost_eur": float(self.cost_eur),
            "provider": self.provider,
            "status": self.status,
            "cached": self.cached,
            "loop_detected": self.loop_detected,
        }


_ids = TraceIds()


def _new_call() -> Call:
    return Call(_ids.next(), time.perf_counter(), time.time())


class Gateway:
    def __init__(self) -> None:
        self.started = False
        self.start_lock = asyncio.Lock()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.catalog: Catalog | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def startup(self) -> None:
        async with self.start_lock:
            if self.started:
                return
            self.session = session_create(
                connect_timeout=settings.AQTA_UPSTREAM_CONNECT_TIMEOUT,
                read_timeout=settings.AQTA_UPSTREAM_READ_TIMEOUT,
                pool=settings.AQTA_UPSTREAM_POOL_SIZE,
            )
            self.redis = aqta_redis.async_client() if aqta_redis.enabled() else None
            if self.redis is not None:
                self.limiter = policy.RedisLimiter(self.redis)
                # The flusher blocks on the stream for a second: it needs its own client.
                self.buffer = RedisBuffer(self.redis, aqta_redis.async_client(socket_timeout=5))
            else:
                self.limiter = policy.LocalLimiter()
                self.buffer = LocalBuffer()
            self.keys = KeyCache(self.redis)
            self.breaker = Breaker(self.redis)
            self.cache = ResponseCache(self.redis, settings.AQTA_CACHE_TTL_SECONDS)
            self.catalog = await asyncio.to_thread(catalog_load)
            validation.warm()
            self.stop.clear()
            # With a dedicated flusher process (`manage.py run_flusher`) the workers only
            # write what they had to keep locally while Redis was down.
            consume = self.redis is None or settings.AQTA_FLUSH_IN_WORKERS
            self.tasks = [
                asyncio.create_task(self.buffer.run(self.stop, consume=consume)),
                asyncio.create_task(self._refresh_catalog()),
                asyncio.create_task(self.breaker.run(self.stop, self._deployment_names)),
            ]
            self.started = True

    async def shutdown(self) -> None:
        if not self.started:
            return
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        if self.redis is not None:
            await self.redis.aclose()
            await self.buffer.reader.aclose()
        self.started = False

    def _deployment_names(self) -> list[str]:
        names = {d.name for m in self.catalog.models.values() for d in m.deployments}
        return sorted(names)

    async def _refresh_catalog(self) -> None:
        interval = settings.AQTA_CATALOG_REFRESH_SECONDS
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), interval)
            except TimeoutError:
                try:
                    self.catalog = await asyncio.to_thread(catalog_load)
                except Exception:
                    logger.exception("catalogue refresh failed; keeping the previous one")

    # --- routing -----------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if not self.started:
            await self.startup()
        path = scope["path"]
        method = scope["method"]
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method == "POST":
                return await self.chat(scope, receive, send)
            allow = b"POST"
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            if method == "GET":
                return await self.models(scope, send, path[len("/v1/models/") :] or None)
            allow = b"GET"
        else:
            return await self.reply_error(
                send,
                _new_call(),
                AqtaError(f"Unknown endpoint {path}.", code=ErrorCode.NOT_FOUND),
            )
        return await self.reply_error(
            send,
            _new_call(),
            AqtaError(f"{method} is not allowed here.", code=ErrorCode.METHOD_NOT_ALLOWED),
            extra=((b"allow", allow),),
        )

    # --- common steps ------------------------------------------------------------------

    async def authenticate(self, scope) -> KeyRecord:
        token = http.bearer(scope)
        digest = digest_for(token) if token else None
        record = await self.keys.get(digest) if digest else None
        if record is None or (record.expires_at is not None and record.expires_at <= time.time()):
            raise INVALID_KEY
        return record

    def allowed(self, record: KeyRecord, model: ModelEntry, name: str) -> bool:
        """Tier and key allow-list; an alias is allowed by its own name or its model's."""
        if not record.all_models and not model.cost_effective:
            return False
        allowed = record.allowed_models
        return not allowed or model.model_id in allowed or name in allowed

    async def reply_error(
        self, send, call: Call, error: AqtaError, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        call.http_status = error.status
        call.error_code = error.code
        body = error.body()
        if call.record is not None:
            body["aqta"] = call.aqta()
        headers = [*call.headers(), *http.error_headers(error), *extra]
        await http.send_json(send, error.status, orjson.dumps(body), headers)

    # --- GET /v1/models ------------------------------------------------------------------

    async def models(self, scope, send, model_id: str | None) -> None:
        call = _new_call()
        try:
            await self._models(scope, send, model_id, call)
        except Exception:
            logger.exception("unexpected error", extra={"trace_id": call.trace_id})
            with contextlib.suppress(Exception):
                await self.reply_error(send, call, _internal_error(call))

    async def _models(self, scope, send, model_id: str | None, call: Call) -> None:
        try:
            call.record = await self.authenticate(scope)
            if self.redis is not None and await self.keys.revoked(call.record):
                raise INVALID_KEY
            data = [
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": m.provider,
                    "provider": m.provider,
                }
                for name, m in sorted(self.catalog.models.items())
                if self.allowed(call.record, m, name)
                and any(adapter_for(d.provider) for d in m.deployments)
            ]
            if model_id is None:
                body = {"object": "list", "data": data}
            else:
                body = next((m for m in data if m["id"] == model_id), None)
                if body is None:
                    raise AqtaError(
                        f"The model `{model_id}` does not exist or you do not have access to it.",
                        code=ErrorCode.MODEL_NOT_FOUND,
                        param="model",
                    )
        except AqtaError as error:
            return await self.reply_error(send, call, error)
        await http.send_json(send, 200, orjson.dumps(body), call.headers())

    # --- POST /v1/chat/completions ---------------------------------------------------------

    async def chat(self, scope, receive, send) -> None:
        call = _new_call()
        try:
            await self._chat(scope, receive, send, call)
        except Exception:
            # A bug of ours, wherever it is: the client gets an OpenAI-shaped 500 naming
            # the trace, and the call is recorded as an error that consumed nothing.
            logger.exception("unexpected error", extra={"trace_id": call.trace_id})
            call.status, call.policy = "error", ""
            error = _internal_error(call)
            with contextlib.suppress(Exception):
                if call.response_started:  # mid-stream: end it with an error event
                    body = b"data: " + orjson.dumps(error.body()) + b"\n\n"
                    await send({"type": "http.response.body", "body": body})
                else:
                    await self.reply_error(send, call, error)
            call.http_status, call.error_code = 500, error.code
            if not call.finished:
                with contextlib.suppress(Exception):
                    await self.finish(call)

    async def _chat(self, scope, receive, send, call: Call) -> None:
        try:
            call.raw = await http.read_body(receive, settings.AQTA_MAX_REQUEST_BYTES)
            call.record = await self.authenticate(scope)
            call.body = self.parse(scope, call.raw)
            call.stream = bool(call.body.get("stream"))
            call.model = self.route(call)
            await self.admit(call)
        except AqtaError as error:
            if call.admission is None:
                call.status = "blocked"
            await self.reply_error(send, call, error)
            return await self.finish(call)
        except ConnectionResetError:
            return
        use_cache = self.cache_wanted(scope, call)
        task = asyncio.current_task()
        watcher = asyncio.create_task(_watch_disconnect(receive, task, call))
        try:
            if use_cache and await self.answer_from_cache(send, call):
                pass
            elif call.stream:
                await self.proxy_stream(send, call)
            else:
                await self.proxy_json(send, call, use_cache)
        except AqtaError as error:
            await self.reply_error(send, call, error)
        except asyncio.CancelledError:
            if not call.disconnected:  # shutting down: still recorded
                await self.finish(call)
                raise
            task.uncancel()  # the client left; the call is still recorded and billed
            call.http_status, call.error_code = 499, ErrorCode.CLIENT_DISCONNECTED
        finally:
            watcher.cancel()
        await self.finish(call)

    def parse(self, scope, raw: bytes) -> dict:
        content_type = http.header(scope, b"content-type")
        if content_type is not None and not content_type.startswith(b"application/json"):
            raise AqtaError(
                "Content-Type must be application/json.", code=ErrorCode.INVALID_REQUEST, param=None
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise AqtaError(f"Malformed JSON body: {error}.", code=ErrorCode.INVALID_JSON) from None
        return validation.chat_request(body)

    def route(self, call: Call) -> ModelEntry:
        model_id = call.body["model"]
        model = self.catalog.models.get(model_id)
        if model is None:
            raise AqtaError(
                f"The model `{model_id}` does not exist or you do not have access to it.",
                code=ErrorCode.MODEL_NOT_FOUND,
                param="model",
            )
        call.provider = model.provider
        if not self.allowed(call.record, model, model_id):
            raise AqtaError(
                f"Your plan or key does not allow `{model_id}`.",
                code=ErrorCode.MODEL_NOT_ALLOWED,
                param="model",
            )
        _output_limit_check(call.body, model)
        candidates = [d for d in model.deployments if adapter_for(d.provider) is not None]
        if not candidates:
            raise AqtaError(
                f"No provider is configured to serve `{model_id}`.",
                code=ErrorCode.PROVIDER_NOT_CONFIGURED,
                param="model",
            )
        # The first deployment's provider decides what is refused; a fallback that could
        # not honour the request is left out rather than answering differently.
        adapter_for(candidates[0].provider).check_request(call.body)
        call.deployments = [candidates[0]]
        for deployment in candidates[1:]:
            try:
                adapter_for(deployment.provider).check_request(call.body)
            except AqtaError:
                continue
            call.deployments.append(deployment)
        call.provider = candidates[0].name
        return model

    def estimate_units(self, call: Call) -> int:
        """Reserved cost of the call, in 1e-8 EUR: the prompt by size, the answer at its cap."""
        body = call.body
        completion = body.get("max_completion_tokens") or body.get("max_tokens")
        completion = completion or min(
            call.model.max_output_tokens or DEFAULT_COMPLETION_ESTIMATE, DEFAULT_COMPLETION_ESTIMATE
        )
        usage = Usage(
            prompt_tokens=len(call.raw) // 4, completion_tokens=completion * (body.get("n") or 1)
        )
        eur = self.catalog.cost_eur(call.model, usage, call.ts)
        return math.ceil(eur * policy.EUR_UNITS)

    async def admit(self, call: Call) -> None:
        record, body = call.record, call.body
        budgets = record.org_budget_eur is not None or record.key_budget_eur is not None
        call.ask = ask = policy.Ask(
            org_id=record.org_id,
            key_id=record.key_id,
            request_id=call.trace_id,
            rate_limit=record.rate_limit_per_minute,
            quota=record.monthly_request_quota,
            budget_org=_units(record.org_budget),
            budget_key=_units(record.key_budget),
            estimate=self.estimate_units(call) if budgets else 0,
            fingerprint=loopguard.fingerprint(body["model"], body["messages"], body.get("tools")),
            loop_threshold=record.loop_threshold,
            loop_window=record.loop_window_seconds,
            cycle=loopguard.repeats_a_cycle(body["messages"]),
        )
        try:
            admission = await self.limiter.admit(ask, call.ts)
        except (RedisError, OSError):
            metrics.REDIS_ERRORS.inc()
            if ask.quota is not None or budgets:
                logger.error(
                    "redis unavailable: quota/budget cannot be checked; refusing",
                    extra={"trace_id": call.trace_id},
                )
                raise AqtaError(
                    "The gateway cannot check your quota right now; retry shortly.",
                    code=ErrorCode.SERVICE_UNAVAILABLE,
                    retry_after=1,
                ) from None
            logger.error(
                "redis unavailable: rate limit not enforced for this call",
                extra={"trace_id": call.trace_id},
            )
            admission = policy.Admission(policy.OK, ask.rate_limit, ask.rate_limit, 60)
        call.admission = admission
        if admission.verdict == policy.OK:
            return
        call.ask = None  # nothing was reserved
        call.status = "blocked"
        call.policy = POLICY_NAMES.get(admission.verdict, "")
        metrics.POLICY_REFUSALS.labels(call.policy or "revoked").inc()
        if admission.verdict == policy.REVOKED:
            call.status, call.policy = "blocked", ""
            raise INVALID_KEY
        if admission.verdict == policy.RATE:
            raise AqtaError(
                f"Rate limit of {admission.limit} requests per minute reached for this key.",
                code=ErrorCode.RATE_LIMIT_EXCEEDED,
                retry_after=max(admission.reset, 1),
            )
        if admission.verdict == policy.LOOP:
            call.status, call.loop_detected = "suppressed", True
            call.cost_prevented = Decimal(self.estimate_units(call)) / policy.EUR_UNITS
            raise AqtaError(
                "Loop detected: this request repeats what this key just sent "
                f"(policy loop_guard). Retry after {max(admission.retry_after, 1)} s.",
                code=ErrorCode.LOOP_DETECTED,
                retry_after=max(admission.retry_after, 1),
            )
        code, message = VERDICT_ERRORS[admission.verdict]
        raise AqtaError(message, code=code)

    # --- response cache ------------------------------------------------------------------

    def cache_wanted(self, scope, call: Call) -> bool:
        if call.stream:
            return False
        asked = http.header(scope, b"x-aqta-cache")
        if asked is not None:
            return asked.lower() in (b"on", b"1", b"true")
        return call.record.response_cache

    def cache_key(self, call: Call) -> str:
        return f"{call.record.org_id}:{hashlib.sha256(call.raw).hexdigest()}"

    async def answer_from_cache(self, send, call: Call) -> bool:
        hit = await self.cache.get(self.cache_key(call))
        if hit is None:
            return False
        call.cached = True
        call.provider = hit["provider"]
        body = hit["body"]
        body["aqta"] = call.aqta()
        await http.send_json(send, 200, orjson.dumps(body), call.headers())
        return True

    # --- upstream ------------------------------------------------------------------------

    async def _open(self, call: Call) -> tuple[aiohttp.ClientResponse, Provider]:
        """The first deployment that answers 200, trying the model's deployments in order.

        Falls back on connect errors, timeouts, 429/5xx (after retries) and credential
        errors; a request the provider finds invalid (400/413/422) is the client's and is
        answered as such, without fallback. Open circuits are skipped.
        """
        failure: AqtaError | None = None
        tried = 0
        for deployment in call.deployments:
            if not await self.breaker.available(deployment.name):
                continue
            tried += 1
            adapter = adapter_for(deployment.provider)
            request = adapter.build_request(deployment, call.body, call.stream)
            try:
                response = await open_response(
                    self.session,
                    request,
                    provider=deployment.name,
                    retries=settings.AQTA_UPSTREAM_RETRIES,
                )
            except AqtaError as error:
                failure = error
                metrics.UPSTREAM_ERRORS.labels(deployment.name, error.code).inc()
                await self.breaker.failure(deployment.name)
                continue
            if response.status == 200:
                await self.breaker.success(deployment.name)
                call.deployment = deployment
                call.provider = deployment.name
                return response, adapter
            raw = await response.read()
            response.release()
            metrics.UPSTREAM_ERRORS.labels(deployment.name, str(response.status)).inc()
            message = _scrub(adapter.error_message(response.status, raw), deployment)
            if response.status in (400, 413, 422):
                raise AqtaError(
                    f"{deployment.provider} refused the request: {message}",
                    code=ErrorCode.INVALID_REQUEST,
                )
            await self.breaker.failure(deployment.name)
            failure = provider_error(deployment.name, message, response.status)
        if tried == 0:
            raise AqtaError(
                "Every deployment of this model is failing; retry shortly.",
                code=ErrorCode.PROVIDER_UNAVAILABLE,
                retry_after=settings.AQTA_BREAKER_OPEN_SECONDS,
            )
        raise failure

    async def proxy_json(self, send, call: Call, use_cache: bool) -> None:
        response, adapter = await self._open(call)
        try:
            raw = await response.read()
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise provider_timeout(call.provider) from None
        except aiohttp.ClientError as error:
            raise provider_error(call.provider, type(error).__name__) from None
        finally:
            response.release()
        call.ttfb_ms = _ms(call.started)
        try:
            body, call.usage = adapter.parse_response(raw, call.body["model"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise provider_error(call.provider, "unreadable answer", 200) from None
        self._price(call)
        if use_cache:
            await self.cache.put(self.cache_key(call), {"provider": call.provider, "body": body})
        if call.record.content_logging:
            call.completion = orjson.dumps(body.get("choices")).decode()
        body["aqta"] = call.aqta()
        await http.send_json(send, 200, orjson.dumps(body), call.headers())

    async def proxy_stream(self, send, call: Call) -> None:
        response, adapter = await self._open(call)
        options = call.body.get("stream_options") or {}
        state = StreamState(
            include_usage=bool(options.get("include_usage")),
            model=call.body["model"],
            keep_text=call.record.content_logging,
        )
        tail = StreamTail(state.include_usage)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [http.SSE, http.NO_CACHE, *call.headers()],
            }
        )
        call.response_started = True
        try:
            try:
                async for data in response.content.iter_any():
                    events = adapter.translate_stream(data, state)
                    await self._forward(send, call, state, tail, events)
                    if state.done or state.error:
                        break
                else:  # the upstream body ended
                    await self._forward(send, call, state, tail, adapter.finish_stream(state))
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
                logger.warning(
                    "upstream stream from %s broke: %s",
                    call.provider,
                    error,
                    extra={"trace_id": call.trace_id},
                )
        finally:
            response.release()
            self._stream_usage(call, state)
        if state.done:
            first = state.first or {}
            envelope = {
                "id": first.get("id", "chatcmpl-" + call.trace_id[len("tr_") :]),
                "object": "chat.completion.chunk",
                "created": first.get("created", int(call.ts)),
                "model": first.get("model", call.body["model"]),
            }
            end = tail.close(call.aqta(), envelope, openai_usage(call.usage))
            await send({"type": "http.response.body", "body": end})
            return
        # Cut mid-way or an upstream error event: end with an error, never a fake [DONE].
        call.http_status, call.error_code = 502, ErrorCode.PROVIDER_ERROR
        metrics.UPSTREAM_ERRORS.labels(call.provider, "stream").inc()
        error = state.error or _sse(
            provider_error(call.provider, "the stream ended before it was complete").body()
        )
        await send({"type": "http.response.body", "body": tail.cut() + error})

    def _price(self, call: Call) -> None:
        """EUR cost of the usage; a per-request search fee defaults to the requested size."""
        usage = call.usage
        if usage.search_context_size is None:
            options = call.body.get("web_search_options")
            size = options.get("search_context_size") if isinstance(options, dict) else None
            if size in ("low", "medium", "high"):
                call.usage = usage = dataclasses.replace(usage, search_context_size=size)
        call.cost_eur = self.catalog.cost_eur(call.model, usage, call.ts)

    async def _forward(
        self, send, call: Call, state: StreamState, tail: StreamTail, events: list[bytes]
    ) -> None:
        if not events:
            return
        if state.keep_text:
            state.completion_text.extend(_delta_text(events))
        events = tail.feed(events)
        if not events:
            return
        if call.ttfb_ms is None:
            call.ttfb_ms = _ms(call.started)
        await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})

    def _stream_usage(self, call: Call, state: StreamState) -> None:
        if state.usage is not None:
            call.usage = state.usage
        else:  # cut short: bill what was seen (about one token per content chunk)
            call.usage = Usage(
                prompt_tokens=len(call.raw) // 4, completion_tokens=max(state.chunks - 1, 0)
            )
        self._price(call)
        if state.keep_text:
            call.completion = "".join(state.completion_text)

    # --- bookkeeping ---------------------------------------------------------------------

    async def finish(self, call: Call) -> None:
        """Settle the budget reservation and record the trace (one pipeline with Redis).

        A call that failed inside the gateway gives back everything admission took: its
        rate-limit slot, its quota unit and its budget reservation."""
        if call.record is None or call.finished:
            return
        if call.http_status >= 400 and call.status == "passed" and call.error_code:
            metrics.ERRORS.labels(call.error_code).inc()
        if call.status == "error":
            metrics.ERRORS.labels("internal_error").inc()
            call.usage, call.cost_eur = Usage(), Decimal(0)
        record = self.trace_record(call)
        metrics.observe(call, record)
        # Absurd usage reported upstream must not overflow Redis's 64-bit counters (the
        # trace itself is parked by the flusher as a record that cannot be stored).
        actual = min(math.ceil(call.cost_eur * policy.EUR_UNITS), MAX_SETTLE_UNITS)
        refund = call.status == "error" and call.ask is not None
        try:
            if self.redis is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    if refund:
                        policy.release_in_pipeline(pipe, call.ask, call.ts)
                    elif call.ask is not None and call.ask.estimate != actual:
                        policy.settle_in_pipeline(
                            pipe, call.ask, call.ts, actual - call.ask.estimate
                        )
                    self.buffer.pipeline_add(pipe, record)
                    await pipe.execute()
            else:
                if refund:
                    await self.limiter.release(call.ask, call.ts)
                elif call.ask is not None:
                    await self.limiter.settle(call.ask, call.ts, actual)
                self.buffer.pipeline_add(None, record)
        except (RedisError, OSError):
            metrics.REDIS_ERRORS.inc()
            logger.error(
                "redis unavailable: trace written from this process",
                extra={"trace_id": call.trace_id},
            )
            self.buffer.add_local(record)
        call.finished = True

    def trace_record(self, call: Call) -> dict:
        record = {
            "id": call.trace_id[len("tr_") :],  # the UUID's hex digits
            "ts": call.ts,
            "org_id": call.record.org_id,
            "key_id": call.record.key_id,
            "model": (call.body or {}).get("model", "")[:120]
            if isinstance(call.body, dict)
            else "",
            "provider": call.provider,
            "status": call.status,
            "http_status": call.http_status,
            "error_code": call.error_code,
            "policy": call.policy,
            "prompt_tokens": call.usage.prompt_tokens,
            "completion_tokens": call.usage.completion_tokens,
            "cached_tokens": call.usage.cached_tokens,
            "cost_eur": str(call.cost_eur),
            "cost_prevented_eur": str(call.cost_prevented),
            "latency_ms": _ms(call.started),
            "ttfb_ms": call.ttfb_ms,
            "stream": call.stream,
            "cached": call.cached,
            "loop_detected": call.loop_detected,
            "client_disconnected": call.disconnected,
            "request_sha256": hashlib.sha256(call.raw).hexdigest() if call.raw else "",
        }
        if call.loop_detected:
            record["event"] = "loop_detected"
        if call.record.content_logging and call.raw:
            record["content"] = {
                "request": crypto.encrypt(call.raw.decode(errors="replace")),
                "response": crypto.encrypt(call.completion or ""),
            }
        return record


def _internal_error(call: Call) -> AqtaError:
    return AqtaError(
        f"The gateway could not handle this request (trace {call.trace_id}); "
        "it was not counted against your limits.",
        code=ErrorCode.INTERNAL_ERROR,
    )


def _output_limit_check(body: dict, model: ModelEntry) -> None:
    """A completion limit above what the model can produce is refused, as OpenAI does,
    rather than clamped: the client learns the real limit instead of a silent cut."""
    limit = model.max_output_tokens
    if limit is None:
        return
    for name in ("max_completion_tokens", "max_tokens"):
        asked = body.get(name)
        if isinstance(asked, int) and asked > limit:
            raise AqtaError(
                f"{name} is too large: {asked}. This model supports at most {limit} "
                "completion tokens.",
                code=ErrorCode.INVALID_PARAMETER,
                param=name,
            )


async def _watch_disconnect(receive, task: asyncio.Task, call: Call) -> None:
    """Cancel the call's task when the client goes away (also before the first byte)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            call.disconnected = True
            task.cancel()
            return


def _units(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount * policy.EUR_UNITS)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _sse(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _scrub(message: str, deployment: Deployment) -> str:
    key = deployment.endpoint.api_key
    return message.replace(key, "[redacted]") if key else message


def _delta_text(events: list[bytes]) -> list[str]:
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


gateway = Gateway()
