"""Errors both ways: refusing a request, and reading Anthropic's error bodies."""

from __future__ import annotations

import re

import orjson

from aqta.errors import AqtaError
from gateway.dataplane.providers.base import JsonObject, refusal


def bad(param: str, message: str) -> AqtaError:
    return refusal(message, param)


def summary(error: JsonObject) -> str:
    message = str(error.get("message") or "").strip()
    kind = str(error.get("type") or "").strip()
    return f"{message} ({kind})" if message and kind else message or kind


def error_message(status: int, raw: bytes) -> str:
    """A short summary of an upstream error body: Anthropic's JSON, or a proxy's page."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = summary(error)
    elif isinstance(error, str):
        message = error
    else:  # HTML from a proxy in front of the API (e.g. 413), or plain text
        text = re.sub(r"<[^>]*>", " ", raw[:2000].decode(errors="replace"))
        message = " ".join(text.split())[:200]
    if not message:
        message = "overloaded" if status == 529 else f"HTTP {status}"
    return message[:300]
