"""Minimal ASGI plumbing for the data plane (no framework on the hot path)."""

from __future__ import annotations

import orjson

from aqta.errors import AqtaError, ErrorCode

JSON = (b"content-type", b"application/json")
SSE = (b"content-type", b"text/event-stream")
NO_CACHE = (b"cache-control", b"no-cache")


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def bearer(scope: dict) -> str | None:
    """Token from ``Authorization`` or the British ``Authorisation`` header."""
    value = header(scope, b"authorization") or header(scope, b"authorisation")
    if not value:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def read_body(receive, limit: int) -> bytes:
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


async def send_json(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_bytes(error: AqtaError) -> bytes:
    return orjson.dumps(error.body())


def error_headers(error: AqtaError) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
