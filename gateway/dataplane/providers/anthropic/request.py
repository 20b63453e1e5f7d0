"""The request body: parameters, tools and tool choice, and the answer tool that carries a
JSON ``response_format`` (rules in the package docstring)."""

from __future__ import annotations

import re
from typing import Any

from gateway.dataplane.providers.anthropic.errors import bad
from gateway.dataplane.providers.anthropic.messages import system_and_turns
from gateway.dataplane.providers.base import JsonObject

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL_PREFIX = "aqta_json_"
TOOL_NAME_MAX = 64
USER_ID_MAX = 256
PERMISSIVE_SCHEMA = {"type": "object", "additionalProperties": True}
JSON_TOOL_DESCRIPTION = "Give your whole answer by calling this tool; its input is the answer."


def request_payload(
    body: JsonObject, *, model: str, max_output_tokens: int | None, stream: bool
) -> JsonObject:
    _refuse_unmappable(body)
    system, turns = system_and_turns(body.get("messages") or [])
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or max_output_tokens
        or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        payload["system"] = system
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            payload[name] = body[name]
    stop = _stop_sequences(body.get("stop"))
    if stop:
        payload["stop_sequences"] = stop
    tools, choice = _tools_and_choice(body)
    if tools:
        payload["tools"] = tools
        payload["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user and "@" not in user and len(user) <= USER_ID_MAX:
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    return payload


def _refuse_unmappable(body: JsonObject) -> None:
    _refuse_sampling(body)
    _refuse_features(body)


def _refuse_sampling(body: JsonObject) -> None:
    """Choices, log probabilities and sampling settings Anthropic cannot honour."""
    if body.get("n") not in (None, 1):
        raise bad("n", "Anthropic models return a single choice; n must be 1.")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name):
            raise bad(name, "Anthropic models do not return log probabilities.")
    if body.get("logit_bias"):
        raise bad("logit_bias", "Anthropic models do not support logit_bias.")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        raise bad("temperature", "Anthropic models accept a temperature between 0 and 1.")


def _refuse_features(body: JsonObject) -> None:
    """Features Anthropic does not offer: legacy functions, output other than text, web search."""
    for name in ("functions", "function_call"):
        if body.get(name) is not None:
            raise bad(name, f"{name} is not supported for Anthropic models; use tools.")
    if body.get("audio") is not None:
        raise bad("audio", "Anthropic models answer with text only.")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and set(map(str, modalities)) - {"text"}:
        raise bad("modalities", "Anthropic models answer with text only.")
    if body.get("web_search_options") is not None:
        raise bad("web_search_options", "web_search_options is not supported for Anthropic.")


def _stop_sequences(stop: Any) -> list[str]:
    sequences: list[Any] = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s.strip() for s in sequences):
        raise bad("stop", "Anthropic models do not accept empty or whitespace-only stop sequences.")
    return sequences


def _object_schema(schema: Any, param: str) -> JsonObject:
    """Anthropic wants ``type: object`` at the top; a schema that leaves it out gets it."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise bad(param, "The schema must describe a JSON object.")
    return schema if "type" in schema else {"type": "object", **schema}


def _tools(tools: Any) -> list[JsonObject]:
    specs = []
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad(f"{where}.type", "Only function tools are supported for Anthropic.")
        function = tool.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"{where}.function.name", "Tools need a function name.")
        if name.startswith(JSON_TOOL_PREFIX):
            raise bad(f"{where}.function.name", f"The prefix {JSON_TOOL_PREFIX} is reserved.")
        spec: dict[str, Any] = {"name": name}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["input_schema"] = _object_schema(
            function.get("parameters"), f"{where}.function.parameters"
        )
        specs.append(spec)
    return specs


def _answer_tool(response_format: Any) -> JsonObject | None:
    """The forced tool that carries a JSON answer (None for plain text)."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        name, description, schema = "object", "", dict(PERMISSIVE_SCHEMA)
    elif kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        name = str(spec.get("name") or "response")
        description = str(spec.get("description") or "")
        schema = _object_schema(
            spec.get("schema") or PERMISSIVE_SCHEMA, "response_format.json_schema.schema"
        )
    else:
        raise bad("response_format", f"response_format type {kind!r} is not supported.")
    return {
        "name": (JSON_TOOL_PREFIX + re.sub(r"[^a-zA-Z0-9_-]", "_", name))[:TOOL_NAME_MAX],
        "description": " ".join(filter(None, [JSON_TOOL_DESCRIPTION, description])),
        "input_schema": schema,
    }


def _tool_choice(choice: Any, *, has_tools: bool) -> JsonObject | None:
    if choice is None or choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance((choice.get("function") or {}).get("name"), str)
    ):
        mapped = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise bad("tool_choice", "tool_choice must be none, auto, required or a function.")
    if not has_tools:
        if mapped["type"] in ("any", "tool"):
            raise bad("tool_choice", "tool_choice needs tools.")
        return None
    return mapped


def _tools_and_choice(body: JsonObject) -> tuple[list[JsonObject], JsonObject | None]:
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), has_tools=bool(tools))
    answer = _answer_tool(body.get("response_format"))
    if answer is not None and (choice is None or choice["type"] in ("auto", "none")):
        if choice is not None and choice["type"] == "auto":
            tools, choice = [*tools, answer], {"type": "any"}
        else:  # no client tools, or the client forbade them: the answer tool is the only one
            tools = [answer]
            choice = {"type": "tool", "name": answer["name"], "disable_parallel_tool_use": True}
    if choice is not None and body.get("parallel_tool_calls") is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return tools, choice
