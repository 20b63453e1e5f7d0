"""Checks on what the gateway relies on; every other OpenAI parameter passes through."""

from __future__ import annotations

from typing import Any

from aqta.errors import AqtaError


def _bad(message: str, param: str, code: str = "invalid_parameter") -> AqtaError:
    return AqtaError(message, code=code, param=param)


def _number(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{name} must be a number between {low:g} and {high:g}.", name)


def _integer(body: dict, name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer between {low} and {high}.", name)


def _messages(messages: Any) -> None:
    if messages is None:
        raise _bad("messages is required.", "messages", "missing_parameter")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role is None:
            raise _bad(
                f"messages[{i}].role is required.", f"messages[{i}].role", "missing_parameter"
            )
        if not isinstance(role, str) or not role:
            raise _bad(f"messages[{i}].role must be a non-empty string.", f"messages[{i}].role")


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise _bad("stop must be a string or an array of up to 4 strings.", "stop")


def _response_format(value: Any) -> None:
    if value is None:
        return
    kinds = {"text", "json_object", "json_schema"}
    if not isinstance(value, dict) or value.get("type") not in kinds:
        raise _bad(
            "response_format.type must be one of text, json_object, json_schema.",
            "response_format",
        )
    if value["type"] == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise _bad("response_format.json_schema must be an object.", "response_format.json_schema")


def chat_request(body: Any) -> dict:
    """Validate a chat completion request body (already JSON-decoded)."""
    if not isinstance(body, dict):
        raise AqtaError("The request body must be a JSON object.", code="invalid_request")
    model = body.get("model")
    if model is None:
        raise _bad("model is required.", "model", "missing_parameter")
    if not isinstance(model, str) or not model:
        raise _bad("model must be a non-empty string.", "model")
    _messages(body.get("messages"))
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "n", 1, 128)
    _integer(body, "max_tokens", 1, 10_000_000)
    _integer(body, "max_completion_tokens", 1, 10_000_000)
    _integer(body, "top_logprobs", 0, 20)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    _stop(body.get("stop"))
    _response_format(body.get("response_format"))
    for name in ("stream", "logprobs", "parallel_tool_calls"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise _bad(f"{name} must be a boolean.", name)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise _bad("tools must be an array.", "tools")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options must be an object.", "stream_options")
        if not body.get("stream"):
            raise _bad("stream_options is only allowed with stream: true.", "stream_options")
    return body
