"""ASGI entry point.

``/v1/...`` (and the un-prefixed ``/chat/completions`` alias) belong to the gateway's
own ASGI app once it lands; everything else goes to Django. Django's ASGI handler
refuses ``lifespan`` scopes, so the router answers them itself.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aqta.settings")

django_app = get_asgi_application()


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await django_app(scope, receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
