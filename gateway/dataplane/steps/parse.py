"""Step 2: the body. JSON only, decoded with orjson, validated against OpenAI's published
schema for a chat completion request (``validation``)."""

from __future__ import annotations

from typing import Any

import orjson

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http, validation


def parse(scope: http.Scope, raw: bytes) -> dict[str, Any]:
    content_type = http.header(scope, b"content-type")
    if content_type is not None and not content_type.startswith(b"application/json"):
        raise AqtaError("Content-Type must be application/json.", code=ErrorCode.INVALID_REQUEST)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise AqtaError(f"Malformed JSON body: {error}.", code=ErrorCode.INVALID_JSON) from None
    return validation.chat_request(body)
