"""Errors both ways: refusing a request, and reading Gemini's ``google.rpc.Status`` bodies."""

from __future__ import annotations

import orjson

from aqta.errors import AqtaError
from gateway.dataplane.providers.base import JsonObject, refusal
from gateway.dataplane.providers.gemini.response import one_object


def bad(message: str, param: str) -> AqtaError:
    return refusal(message, param)


def invalid(message: str, param: str) -> AqtaError:
    """A malformed value (not one Gemini cannot honour): 400 ``invalid_parameter``."""
    return AqtaError(message, param=param)


def unsupported(param: str, why: str) -> AqtaError:
    return refusal(f"{param} is not supported for Gemini models: {why}", param)


def error_summary(data: JsonObject, status: int) -> str:
    """``STATUS: message`` from a google.rpc.Status error body, with the retry delay."""
    error = data.get("error")
    if not isinstance(error, dict):
        return str(error or f"HTTP {status}")[:300]
    summary = str(error.get("message") or f"HTTP {error.get('code') or status}")
    if error.get("status"):
        summary = f"{error['status']}: {summary}"
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("retryDelay"):
            summary += f" (retry after {detail['retryDelay']})"
    return summary[:300]


def error_message(status: int, raw: bytes) -> str:
    """A short summary of an upstream error body (JSON or not)."""
    try:
        data = one_object(raw)
    except (orjson.JSONDecodeError, ValueError):
        text = " ".join(raw[:300].decode(errors="replace").split())
        return (text or f"HTTP {status}")[:300]
    return error_summary(data, status)
