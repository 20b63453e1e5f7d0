"""ASGI entry point.

``/v1/...`` and the un-prefixed ``/chat/completions`` alias go to the gateway's own ASGI
app (``gateway.dataplane.app``); everything else goes to Django. Django's ASGI handler refuses
``lifespan`` scopes, so the router answers them: startup opens the worker's upstream
session and starts the trace flusher, shutdown flushes and closes them.
"""

from __future__ import annotations

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aqta.settings")

django_app = get_asgi_application()  # sets Django up before the gateway imports models

from gateway.dataplane.app import gateway  # noqa: E402

logger = logging.getLogger("aqta.asgi")


async def application(scope, receive, send):
    if scope["type"] == "http":
        path = scope["path"]
        if path.startswith("/v1/") or path == "/chat/completions":
            await gateway(scope, receive, send)
            return
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await django_app(scope, receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await gateway.startup()
            except Exception as error:
                logger.exception("gateway start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await gateway.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
