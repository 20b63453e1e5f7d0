"""ASGI entry point.

Requests the data plane serves (``gateway.dataplane.app.serves``: ``/v1/...`` and its
aliases) and the server's ``lifespan`` events go to the gateway's own ASGI app; everything
else goes to Django, whose ASGI handler refuses ``lifespan`` scopes.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aqta.settings")

django_app = get_asgi_application()  # sets Django up before the gateway imports models

from gateway.dataplane.app import gateway, serves  # noqa: E402
from gateway.dataplane.http import Receive, Scope, Send  # noqa: E402


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan" or (scope["type"] == "http" and serves(scope["path"])):
        await gateway(scope, receive, send)
        return
    # django-stubs narrow ASGI's MutableMapping scope and messages to dict and Mapping.
    await django_app(scope, receive, send)  # type: ignore[arg-type]
