"""The /v1 data plane's ASGI app: its one route table and its one start-up path.

``aqta/asgi.py`` hands it every ``/v1/...`` request (and the un-prefixed aliases in
:data:`ROUTES`) and the server's ``lifespan`` events: start-up builds the worker's
:class:`~gateway.dataplane.runtime.Runtime`, shutdown flushes and closes it. What a call
does is ``pipeline.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http, pipeline
from gateway.dataplane.call import call_new
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.steps import answer

logger = logging.getLogger("aqta.gateway")

Handler = Callable[[Runtime, http.Scope, http.Receive, http.Send], Awaitable[None]]
MODELS = "/v1/models/"


async def _models(rt: Runtime, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
    model_id = scope["path"][len(MODELS) :] or None
    await pipeline.models(rt, scope, send, model_id)


async def _public_key(
    rt: Runtime, scope: http.Scope, receive: http.Receive, send: http.Send
) -> None:
    await pipeline.public_key(send)


# path → (method, handler); ``/v1/models/{id}`` is matched by its prefix.
ROUTES: dict[str, tuple[str, Handler]] = {
    "/v1/chat/completions": ("POST", pipeline.chat),
    "/chat/completions": ("POST", pipeline.chat),
    "/v1/models": ("GET", _models),
    "/v1/attestation/public-key": ("GET", _public_key),
}
PREFIXES: tuple[tuple[str, tuple[str, Handler]], ...] = ((MODELS, ("GET", _models)),)


def serves(path: str) -> bool:
    """Whether a path is the data plane's: all of ``/v1/`` (an unknown endpoint there gets
    the OpenAI-shaped 404) and the aliases in :data:`ROUTES`."""
    return path.startswith("/v1/") or path in ROUTES


def _lookup(path: str) -> tuple[str, Handler] | None:
    found = ROUTES.get(path)
    if found is None:
        found = next((route for prefix, route in PREFIXES if path.startswith(prefix)), None)
    return found


class Gateway:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    async def startup(self) -> None:
        if self.runtime is None:
            self.runtime = await Runtime.start()

    async def shutdown(self) -> None:
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.close()

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        found = _lookup(scope["path"])
        if self.runtime is None:  # served before start-up completed (or after shutdown)
            error = AqtaError(
                "The gateway is starting; retry shortly.",
                code=ErrorCode.SERVICE_UNAVAILABLE,
                retry_after=1,
            )
            await answer.error(send, call_new(), error)
            return
        if found is None:
            error = AqtaError(f"Unknown endpoint {scope['path']}.", code=ErrorCode.NOT_FOUND)
            await answer.error(send, call_new(), error)
            return
        method, handler = found
        if scope["method"] != method:
            error = AqtaError(
                f"{scope['method']} is not allowed here.", code=ErrorCode.METHOD_NOT_ALLOWED
            )
            await answer.error(send, call_new(), error, ((b"allow", method.encode()),))
            return
        await handler(self.runtime, scope, receive, send)

    async def _lifespan(self, receive: http.Receive, send: http.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    logger.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


gateway = Gateway()
