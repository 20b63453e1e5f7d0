"""Minimal ASGI plumbing for the data plane (no framework on the hot path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aqta.errors import AqtaError, ErrorCode

# As the ASGI specification (and asgiref, httpx and uvicorn) types them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")
SSE = (b"content-type", b"text/event-stream")
NO_CACHE = (b"cache-control", b"no-cache")


def header(scope: Scope, name: bytes) -> bytes | None:
    key: bytes
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def bearer(scope: Scope) -> str | None:
    """Token from ``Authorization`` or the British ``Authorisation`` header."""
    value = header(scope, b"authorization") or header(scope, b"authorisation")
    if not value:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise AqtaError(
                f"Request body is larger than {limit} bytes.", code=ErrorCode.REQUEST_TOO_LARGE
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_headers(error: AqtaError) -> Headers:
    return [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
