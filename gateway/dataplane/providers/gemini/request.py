"""The ``generateContent`` request: its URL, and a body made of the translated messages,
``generationConfig`` and tools."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from gateway.dataplane.providers.base import JsonObject
from gateway.dataplane.providers.gemini.errors import bad, unsupported
from gateway.dataplane.providers.gemini.messages import system_and_contents
from gateway.dataplane.providers.gemini.schema import gemini_schema

API_VERSION = "v1beta"
MAX_STOP_SEQUENCES = 5
INT32 = 2**31
TOOL_CHOICE_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}


def _check_params(body: JsonObject) -> None:
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise unsupported(param, "log probabilities are not returned by this gateway for Gemini.")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "Gemini does not take OpenAI token ids.")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise unsupported(legacy, "use tools and tool_choice instead.")
    if body.get("audio") is not None:
        raise unsupported("audio", "Gemini answers with text only here.")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported("modalities", "Gemini answers with text only here.")
    if body.get("web_search_options") is not None:
        raise unsupported("web_search_options", "web search is not available through Gemini.")
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        raise bad(f"stop takes at most {MAX_STOP_SEQUENCES} sequences for Gemini.", "stop")
    tools = body.get("tools") or []
    if body.get("parallel_tool_calls") is False and len(tools) > 1:
        raise unsupported(
            "parallel_tool_calls",
            "Gemini may call several tools at once and cannot be told not to; "
            "leave parallel_tool_calls out or declare one tool.",
        )


def _generation_config(body: JsonObject) -> JsonObject:
    config: dict[str, Any] = {}
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    limit = body.get("max_completion_tokens")
    limit = limit if limit is not None else body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("n") is not None:
        config["candidateCount"] = body["n"]
    seed = body.get("seed")
    if seed is not None:
        config["seed"] = seed if -INT32 <= seed < INT32 else seed % INT32
    for name, wire in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(name):
            config[wire] = body[name]
    config.update(_response_format(body.get("response_format")))
    return config


def _response_format(value: Any) -> JsonObject:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("json_object", "json_schema"):
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    schema = (value.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if isinstance(schema, dict) and schema:
        config["responseSchema"] = gemini_schema(
            schema, param="response_format.json_schema.schema", ordering=True
        )
    return config


def _declaration(tool: Any, param: str) -> JsonObject:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise unsupported(param, "only function tools can be used with Gemini.")
    function = tool.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad(f"{param}.function.name is required.", f"{param}.function")
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = gemini_schema(function.get("parameters"), param=f"{param}.function.parameters")
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def _tools(body: JsonObject) -> JsonObject:
    """``tools`` and ``toolConfig`` for the request (nothing without tools)."""
    tools = body.get("tools") or []
    declarations = [_declaration(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if not declarations:
        return {}
    choice = body.get("tool_choice")
    config: dict[str, Any] | None = None
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise bad("tool_choice must be none, auto, required or a function.", "tool_choice")
        config = {"mode": TOOL_CHOICE_MODES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise bad("tool_choice.function.name is required.", "tool_choice")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [(t.get("function") or {}).get("name") for t in allowed.get("tools") or []]
        if allowed.get("mode") == "required":
            config = {"mode": "ANY", "allowedFunctionNames": names}
        else:  # AUTO cannot be restricted: declare only the allowed functions
            declarations = [d for d in declarations if d["name"] in names]
            config = {"mode": "AUTO"}
    elif choice is not None:
        raise unsupported("tool_choice", "only function tool choices can be used with Gemini.")
    out: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    if config is not None:
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def gemini_request_body(body: JsonObject) -> JsonObject:
    """The Gemini ``generateContent`` body for an OpenAI chat request (AqtaError if it
    asks for something Gemini cannot give)."""
    _check_params(body)
    system, contents = system_and_contents(body.get("messages") or [])
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    payload.update(_tools(body))
    config = _generation_config(body)
    if config:
        payload["generationConfig"] = config
    return payload


def gemini_url(base_url: str, model: str, stream: bool) -> str:
    """``{base}/v1beta/models/{model}:generateContent`` (or the SSE stream). A base URL that
    already ends with an API version keeps it; a model id with a collection prefix
    (``models/…``, ``tunedModels/…``) is used as it is."""
    base = base_url.rstrip("/")
    if not re.search(r"/v1(beta\d*)?$", base):
        base += f"/{API_VERSION}"
    path = model if "/" in model else f"models/{model}"
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base}/{quote(path, safe='/')}:{method}"
