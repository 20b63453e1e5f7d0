"""Google Gemini (Generative Language API ``v1beta``): OpenAI chat requests in, Gemini
``generateContent`` / ``streamGenerateContent?alt=sse`` out, and the answers back.

Requests (docs/providers.md §3.2 and §3.6)
- ``system``/``developer`` messages, wherever they stand → ``systemInstruction`` (text only);
  a request made of system messages alone sends them as the user turn instead, since
  Gemini needs at least one content.
- ``user`` → ``user``, ``assistant`` → ``model``, ``tool`` → ``functionResponse`` parts in a
  ``user`` turn, ``{"name": <the called function>, "response": {"output": <text>}}`` (the
  name is looked up from the assistant ``tool_calls`` with that id); consecutive turns of
  one role are merged, so the roles alternate. Message ``name`` fields are dropped.
- Parts: text; ``image_url`` data URLs → ``inlineData``, other URLs → ``fileData`` with the
  MIME type guessed from the file name (refused when it cannot be guessed, except for
  Gemini Files API URIs, which Gemini knows the type of); ``input_audio`` → ``inlineData``;
  ``file`` with ``file_data`` → ``inlineData`` (``file_id`` refused: it names an OpenAI file).
- ``assistant.tool_calls`` → ``functionCall`` parts (``arguments`` parsed; ``""`` is ``{}``).
  Thinking models (Gemini 3) refuse a replayed call without its ``thoughtSignature``, and the
  OpenAI shape has nowhere to keep it, so an answer's signature travels in the call id
  (``call_<random>__thought__<signature>``, LiteLLM's convention) and is put back from there.
- ``generationConfig``: ``temperature``, ``top_p`` → ``topP``, ``max_completion_tokens`` (else
  ``max_tokens``) → ``maxOutputTokens``, ``stop`` → ``stopSequences`` (more than 5 refused),
  ``n`` → ``candidateCount``, ``seed`` → ``seed`` (Gemini's is 32-bit: larger seeds are folded
  into range, still deterministic), ``presence_penalty``/``frequency_penalty`` → same names
  when not 0 (several Gemini models reject any penalty, and 0 is OpenAI's no-op default).
- ``response_format``: ``json_object`` → ``responseMimeType: application/json``;
  ``json_schema`` → that plus ``responseSchema`` (see :func:`gemini_schema`); ``text`` → nothing.
- ``tools`` → one ``functionDeclarations`` entry (parameters converted like response schemas;
  an object without properties is left out, as Gemini rejects empty objects);
  ``tool_choice`` ``none``/``auto``/``required``/``{function}`` → ``NONE``/``AUTO``/``ANY``/``ANY``
  + ``allowedFunctionNames``; ``allowed_tools`` → ``ANY`` + names (``required``) or ``AUTO``
  with only the allowed declarations (``auto``).

Dropped, because the answer stays right without them: ``user``, ``metadata``, ``store``,
``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options`` (the gateway
reads ``include_usage``), ``prediction`` (a latency hint), ``verbosity``, ``reasoning_effort``
(the model thinks with its default budget), ``image_url.detail``, ``logprobs: false``,
``parallel_tool_calls`` when at most one tool is declared, and parameters unknown to OpenAI.

Refused with a 400 naming the parameter, because the client would get a wrong answer:
``logprobs: true``/``top_logprobs`` (not translated back), a non-empty ``logit_bias`` (OpenAI
token ids), ``parallel_tool_calls: false`` with several tools (Gemini has no such switch),
``functions``/``function_call`` and ``function`` messages (legacy; use tools), non-function
tools and tool choices, ``audio``/``modalities`` other than text, ``web_search_options``,
unknown roles and content parts, tool results for an unknown ``tool_call_id``, malformed
``arguments``, and recursive ``$ref`` schemas.

Answers: ``chatcmpl-<responseId>`` ids, the client's model name, candidates → ``choices[i]``
(text parts that are not thoughts joined; ``functionCall`` → ``tool_calls`` with JSON-string
arguments, and ``finish_reason`` ``tool_calls``); finish reasons as LiteLLM maps them (see
``FINISH_REASONS``); a prompt blocked before any candidate → one choice with ``content``
null and ``finish_reason`` ``content_filter``. Usage: ``prompt_tokens`` = prompt + tool-use
prompt tokens (cached ones included, also given as ``cached_tokens``), ``completion_tokens``
= candidates + thoughts.

Streams: every ``data:`` event (``\\n\\n`` or ``\\r\\n\\r\\n`` apart) is one OpenAI chunk; a
``functionCall`` is one complete ``tool_calls`` delta. Usage comes from the last
``usageMetadata`` (on a cut stream with at least a completion token per forwarded chunk, as
Gemini's running count lags). Gemini has no end marker and may send a trailing chunk after
the one with ``finishReason``, so only :meth:`GeminiProvider.finish_stream` marks the stream
done (when every candidate finished) and adds the usage chunk.
"""

from __future__ import annotations

import base64
import dataclasses
import mimetypes
import re
import secrets
import time
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import orjson

from aqta.errors import AqtaError, ErrorCode, error_body
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.base import StreamState, UpstreamRequest, refusal

API_VERSION = "v1beta"
THOUGHT_SEPARATOR = "__thought__"
MAX_STOP_SEQUENCES = 5
INT32 = 2**31

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "LANGUAGE",
            "OTHER",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ),
        "content_filter",
    ),
}  # anything else (MALFORMED_FUNCTION_CALL, TOO_MANY_TOOL_CALLS, ...) ends as "stop"

TOOL_CHOICE_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)
FILES_API_HOST = "generativelanguage.googleapis.com"


def _bad(message: str, param: str) -> AqtaError:
    return refusal(message, param)


def _unsupported(param: str, why: str) -> AqtaError:
    return refusal(f"{param} is not supported for Gemini models: {why}", param)


def _random_id() -> str:
    return secrets.token_hex(12)


# --- JSON Schema → Gemini's OpenAPI subset ---------------------------------------------------

SCHEMA_KEYS = ("description", "minItems", "maxItems", "minimum", "maximum")
FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def gemini_schema(schema: Any, *, param: str, ordering: bool = False) -> dict:
    """A JSON Schema in the subset Gemini accepts: upper-case types, ``anyOf`` with null as
    ``nullable``, ``$ref`` inlined, and no keywords Gemini rejects (``additionalProperties``,
    ``$schema``, ``default``, ``examples``, ``title``, ``pattern``, ...). Dropping a keyword
    only loosens the schema. ``ordering`` adds ``propertyOrdering`` (Gemini otherwise
    answers with the properties sorted by name)."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _schema(schema, defs, (), param, ordering)


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node) == 1


def _resolve(node: dict, defs: dict, seen: tuple[str, ...], param: str) -> tuple[dict, tuple]:
    while "$ref" in node:
        ref = str(node["$ref"])
        name = ref.rsplit("/", 1)[-1]
        if name in seen or ref == "#":
            raise _unsupported(param, f"the schema refers to itself ({ref}).")
        if name not in defs:
            raise _bad(f"{param}: unknown schema reference {ref}.", param)
        seen = (*seen, name)
        node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node.get("allOf"), list):
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            # Each part's own references stay its own: a sibling reusing them is no cycle.
            part = _resolve(part, defs, seen, param)[0] if isinstance(part, dict) else {}
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        node = merged
    return node, seen


def _schema(node: Any, defs: dict, seen: tuple, param: str, ordering: bool) -> dict:
    if not isinstance(node, dict):
        return {}
    node, seen = _resolve(node, defs, seen, param)
    declared = node.get("type")
    types = declared if isinstance(declared, list) else [declared] if declared else []
    nullable = bool(node.get("nullable")) or "null" in types
    types = [t for t in types if t in TYPES]
    options = node.get("anyOf") or node.get("oneOf") or []
    nullable = nullable or any(_is_null(o) for o in options)
    options = [o for o in options if not _is_null(o)]
    if len(types) > 1:  # ["string", "integer"] → anyOf, each branch with its own type
        rest = {k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf")}
        options, types = [{**rest, "type": t} for t in types], []

    def convert(child: Any) -> dict:
        return _schema(child, defs, seen, param, ordering)

    out: dict[str, Any] = {}
    if len(options) == 1 and not types:  # anyOf: [X, null] is X, nullable
        out = convert(options[0])
    elif options:
        out["anyOf"] = [convert(o) for o in options]
    if types:
        out["type"] = types[0].upper()
    if nullable:
        out["nullable"] = True
    for key in SCHEMA_KEYS:
        if key in node:
            out[key] = node[key]
    enum = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(enum, list) and None in enum:
        out["nullable"], enum = True, [v for v in enum if v is not None]
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        out["enum"] = enum  # Gemini enums are strings only; others are dropped
        out.setdefault("type", "STRING")
    if node.get("format") in FORMATS.get(out.get("type", ""), ()):
        out["format"] = node["format"]
    if isinstance(node.get("items"), dict):
        out["items"] = convert(node["items"])
    properties = node.get("properties")
    if isinstance(properties, dict) and properties:
        out["properties"] = {name: convert(p) for name, p in properties.items()}
        required = [r for r in node.get("required") or [] if r in properties]
        if required:
            out["required"] = list(dict.fromkeys(required))
        if ordering:
            out["propertyOrdering"] = list(properties)
    return out


# --- requests ------------------------------------------------------------------------------


def _check_params(body: dict) -> None:
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise _unsupported(param, "log probabilities are not returned by this gateway for Gemini.")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "Gemini does not take OpenAI token ids.")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise _unsupported(legacy, "use tools and tool_choice instead.")
    if body.get("audio") is not None:
        raise _unsupported("audio", "Gemini answers with text only here.")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _unsupported("modalities", "Gemini answers with text only here.")
    if body.get("web_search_options") is not None:
        raise _unsupported("web_search_options", "web search is not available through Gemini.")
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        raise _bad(f"stop takes at most {MAX_STOP_SEQUENCES} sequences for Gemini.", "stop")
    tools = body.get("tools") or []
    if body.get("parallel_tool_calls") is False and len(tools) > 1:
        raise _unsupported(
            "parallel_tool_calls",
            "Gemini may call several tools at once and cannot be told not to; "
            "leave parallel_tool_calls out or declare one tool.",
        )


def _text_of(content: Any, param: str, kinds: tuple[str, ...] = ("text",)) -> str:
    """The text of a content that may only hold text (system and tool messages)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string or an array of text parts.", param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise _bad(f"{param}[{j}]: only text parts are supported here.", f"{param}[{j}]")
        texts.append(str(part.get(kind) or ""))
    return "".join(texts)


def _data_url(url: str, param: str) -> dict:
    match = DATA_URL.fullmatch(url)
    if match is None or not match["mime"]:
        raise _bad(
            f"{param} must be a data: URL with a media type (data:image/png;base64,…).", param
        )
    data = match["data"]
    if ";base64" not in match["params"].lower():
        data = base64.b64encode(unquote_to_bytes(data)).decode()
    return {"inlineData": {"mimeType": match["mime"], "data": data.strip()}}


def _file_url(url: str, param: str) -> dict:
    """A URL Gemini fetches itself (``fileData``): its MIME type comes from its name."""
    parts = urlsplit(url)
    mime, _ = mimetypes.guess_type(parts.path)
    if mime is None and parts.hostname == FILES_API_HOST:
        return {"fileData": {"fileUri": url}}  # an uploaded Gemini file knows its type
    if mime is None:
        raise _bad(
            f"{param}: cannot tell the media type of {parts.scheme}://{parts.hostname}… for "
            "Gemini; send the image as a data: URL or use a URL ending in .png, .jpg, .webp, …",
            param,
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_part(part: Any, param: str) -> dict | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = str(part.get("text") or "")
        return {"text": text} if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise _bad(f"{param}.image_url.url is required.", f"{param}.image_url")
        url = url.strip()
        if url.startswith("data:"):
            return _data_url(url, f"{param}.image_url")
        return _file_url(url, f"{param}.image_url")
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        mime = AUDIO_TYPES.get(str(audio.get("format")))
        if mime is None:
            raise _bad(f"{param}.input_audio.format must be wav or mp3.", f"{param}.input_audio")
        return {"inlineData": {"mimeType": mime, "data": str(audio.get("data") or "")}}
    if kind == "file":
        file = part.get("file") or {}
        data = file.get("file_data")
        if not data:
            raise _unsupported(f"{param}.file", "send the file as file_data, not file_id.")
        if str(data).startswith("data:"):
            return _data_url(str(data), f"{param}.file")
        mime, _ = mimetypes.guess_type(str(file.get("filename") or ""))
        if mime is None:
            raise _bad(f"{param}.file needs a filename with a known extension.", f"{param}.file")
        return {"inlineData": {"mimeType": mime, "data": str(data)}}
    raise _bad(f"{param}: content parts of type {kind!r} are not supported for Gemini.", param)


def _user_parts(content: Any, param: str) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string or an array of content parts.", param)
    parts = (_user_part(part, f"{param}[{j}]") for j, part in enumerate(content))
    return [part for part in parts if part is not None]


def _call_part(call: Any, param: str) -> dict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise _bad(f"{param} must be a function call with a name.", param)
    arguments = function.get("arguments") or "{}"
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        param = f"{param}.function.arguments"
        raise _bad(f"{param} must be a JSON object (as a string).", param)
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    _, _, signature = str(call.get("id") or "").partition(THOUGHT_SEPARATOR)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _assistant_parts(message: dict, param: str) -> list[dict]:
    text = _text_of(message.get("content"), f"{param}.content", ("text", "refusal"))
    parts = [{"text": text}] if text else []
    calls = message.get("tool_calls") or []
    return parts + [_call_part(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(calls)]


def _turn(message: dict, param: str, names: dict[str, str]) -> tuple[str, list[dict]]:
    """One non-system message as (Gemini role, parts); ``names`` maps tool call ids to
    function names, for the tool results that follow."""
    role = message.get("role")
    if role == "user":
        return "user", _user_parts(message.get("content"), f"{param}.content")
    if role == "assistant":
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name"))
        return "model", _assistant_parts(message, param)
    if role == "tool":
        name = names.get(str(message.get("tool_call_id")))
        if name is None:
            raise _bad(
                f"{param}.tool_call_id does not match a tool call of an earlier assistant message.",
                f"{param}.tool_call_id",
            )
        output = _text_of(message.get("content"), f"{param}.content")
        return "user", [{"functionResponse": {"name": name, "response": {"output": output}}}]
    if role == "function":
        raise _unsupported(f"{param}.role", "use tool messages instead.")
    raise _bad(f"{param}.role {role!r} is not supported.", f"{param}.role")


def _contents(messages: list) -> tuple[list[dict], list[dict]]:
    """(systemInstruction parts, contents) with consecutive turns of one role merged."""
    system: list[dict] = []
    turns: list[dict] = []
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message.get("role") in ("system", "developer"):
            text = _text_of(message.get("content"), f"messages[{i}].content")
            system += [{"text": text}] if text else []
            continue
        role, parts = _turn(message, f"messages[{i}]", names)
        if parts and turns and turns[-1]["role"] == role:
            turns[-1]["parts"] += parts
        elif parts:
            turns.append({"role": role, "parts": parts})
    if not turns and system:
        return [], [{"role": "user", "parts": system}]
    return system, turns


def _generation_config(body: dict) -> dict:
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


def _response_format(value: Any) -> dict:
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


def _declaration(tool: Any, param: str) -> dict:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise _unsupported(param, "only function tools can be used with Gemini.")
    function = tool.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise _bad(f"{param}.function.name is required.", f"{param}.function")
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = gemini_schema(function.get("parameters"), param=f"{param}.function.parameters")
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def _tools(body: dict) -> dict:
    """``tools`` and ``toolConfig`` for the request (nothing without tools)."""
    tools = body.get("tools") or []
    declarations = [_declaration(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if not declarations:
        return {}
    choice = body.get("tool_choice")
    config: dict[str, Any] | None = None
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise _bad("tool_choice must be none, auto, required or a function.", "tool_choice")
        config = {"mode": TOOL_CHOICE_MODES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise _bad("tool_choice.function.name is required.", "tool_choice")
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
        raise _unsupported("tool_choice", "only function tool choices can be used with Gemini.")
    out: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    if config is not None:
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def gemini_request_body(body: dict) -> dict:
    """The Gemini ``generateContent`` body for an OpenAI chat request (AqtaError if it
    asks for something Gemini cannot give)."""
    _check_params(body)
    system, contents = _contents(body.get("messages") or [])
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


# --- answers -------------------------------------------------------------------------------


def _usage(meta: Any) -> tuple[dict, Usage]:
    """OpenAI's usage object and the billing usage from Gemini's ``usageMetadata``."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    cached = int(meta.get("cachedContentTokenCount") or 0)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }
    return usage, Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


def _call_id(part: dict) -> str:
    signature = part.get("thoughtSignature")
    suffix = f"{THOUGHT_SEPARATOR}{signature}" if signature else ""
    return f"call_{_random_id()}{suffix}"


def _read_parts(candidate: dict) -> tuple[str | None, list[dict]]:
    """(answer text or None, tool calls) of one candidate; thoughts are left out."""
    parts = (candidate.get("content") or {}).get("parts") or []
    texts, calls = [], []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            calls.append(
                {
                    "id": _call_id(part),
                    "type": "function",
                    "function": {
                        "name": call.get("name", ""),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    text = "".join(texts)
    # An empty text part is an empty answer; no text at all (or only calls) is null.
    return (text if text or (texts and not calls) else None), calls


def _finish_reason(reason: Any, has_calls: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def _candidates(data: dict) -> list[tuple[int, dict]]:
    candidates = [c for c in data.get("candidates") or [] if isinstance(c, dict)]
    return [(int(c.get("index", i) or 0), c) for i, c in enumerate(candidates)]


def _blocked(data: dict) -> bool:
    return not data.get("candidates") and bool(
        (data.get("promptFeedback") or {}).get("blockReason")
    )


def _one_object(raw: bytes) -> dict:
    data = orjson.loads(raw)
    if isinstance(data, list) and len(data) == 1:  # the non-SSE stream shape, [ {...} ]
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError("upstream answer is not a JSON object")
    return data


def _completion_id(data: dict) -> str:
    return f"chatcmpl-{data.get('responseId') or _random_id()}"


# --- streams -------------------------------------------------------------------------------


def _events(state: StreamState, data: bytes) -> list[bytes]:
    """Complete SSE events' JSON payloads; the incomplete rest stays in ``state.pending``."""
    buffer = (state.pending + data).replace(b"\r\n", b"\n")
    *events, state.pending = buffer.split(b"\n\n")
    return [payload for event in events if (payload := _payload(event))]


def _payload(event: bytes) -> bytes:
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    payload = b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines).strip()
    return b"" if payload == b"[DONE]" else payload


def _sse(chunk: dict) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class GeminiProvider:
    name = "google"

    def check_request(self, body: dict) -> None:
        """Translate once and throw the result away: whatever the translation would refuse
        is refused before anything goes upstream."""
        gemini_request_body(body)

    def build_request(self, deployment: Deployment, body: dict, stream: bool) -> UpstreamRequest:
        endpoint = deployment.endpoint
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key:
            headers["x-goog-api-key"] = endpoint.api_key
        return UpstreamRequest(
            url=gemini_url(endpoint.base_url, deployment.upstream_model_id, stream),
            headers=headers,
            body=orjson.dumps(gemini_request_body(body)),
        )

    def parse_response(self, raw: bytes, model: str) -> tuple[dict, Usage]:
        data = _one_object(raw)
        if "error" in data:
            raise ValueError("upstream answer is an error")
        # A blocked prompt has no candidates: one filtered, empty choice (as LiteLLM does).
        candidates = [(0, {"finishReason": "SAFETY"})] if _blocked(data) else _candidates(data)
        choices = []
        for index, candidate in candidates:
            text, calls = _read_parts(candidate)
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            reason = _finish_reason(candidate.get("finishReason", "STOP"), bool(calls))
            choices.append(
                {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
            )
        if not choices:
            raise ValueError("upstream answer has no candidates")
        usage, billed = _usage(data.get("usageMetadata"))
        completion = {
            "id": _completion_id(data),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": sorted(choices, key=lambda c: c["index"]),
            "usage": usage,
        }
        return completion, billed

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        return _feed(_events(state, data), state)

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """Gemini streams simply end: done if every candidate finished (else it was cut);
        the usage chunk goes out here."""
        out: list[bytes] = []
        last, state.pending = _payload(state.pending.replace(b"\r\n", b"\n")), b""
        if last and state.error is None:  # a last event without its blank line
            try:
                out = _feed([last], state)
            except orjson.JSONDecodeError:
                pass  # cut mid-event
        seen, finished = state.extra.get("seen", set()), state.extra.get("finished", set())
        state.done = state.error is None and bool(finished) and seen <= finished
        if not state.done and state.usage is not None:
            # Cut short: Gemini's running prompt count is exact but its completion count
            # lags (often absent); bill at least a token per forwarded chunk, as the
            # gateway does for streams that never reported usage.
            completion = max(state.usage.completion_tokens, state.chunks)
            state.usage = dataclasses.replace(state.usage, completion_tokens=completion)
        if state.done:
            usage = state.extra.get("usage") or _usage(None)[0]
            out.append(_sse({**_envelope(state, {}), "choices": [], "usage": usage}))
            state.chunks += 1
        return out

    def error_message(self, status: int, raw: bytes) -> str:
        try:
            data = _one_object(raw)
        except (orjson.JSONDecodeError, ValueError):
            text = " ".join(raw[:300].decode(errors="replace").split())
            return (text or f"HTTP {status}")[:300]
        return _error_summary(data, status)


def _feed(payloads: list[bytes], state: StreamState) -> list[bytes]:
    out: list[bytes] = []
    for payload in payloads:
        data = orjson.loads(payload)
        for response in data if isinstance(data, list) else [data]:
            if not isinstance(response, dict):
                continue
            if "error" in response:
                state.error = _sse(_error_event(response))
                return out
            out += _stream_chunk(response, state)
    return out


def _error_event(response: dict) -> dict:
    error = response["error"] if isinstance(response["error"], dict) else {}
    message = f"Upstream provider error: google reported {_error_summary(response, 0)}"
    limited = error.get("code") == 429 or error.get("status") == "RESOURCE_EXHAUSTED"
    kind = "rate_limit_error" if limited else "api_error"
    return error_body(message, code=ErrorCode.PROVIDER_ERROR, type=kind)


def _envelope(state: StreamState, response: dict) -> dict:
    if "id" not in state.extra:
        state.extra["id"] = _completion_id(response)
        state.extra["created"] = int(time.time())
    return {
        "id": state.extra["id"],
        "object": "chat.completion.chunk",
        "created": state.extra["created"],
        "model": state.model or str(response.get("modelVersion") or ""),
    }


def _stream_chunk(response: dict, state: StreamState) -> list[bytes]:
    """One Gemini stream response → at most one OpenAI chunk."""
    envelope = _envelope(state, response)
    if isinstance(response.get("usageMetadata"), dict):
        state.extra["usage"], state.usage = _usage(response["usageMetadata"])
    seen = state.extra.setdefault("seen", set())  # candidates that appeared
    finished = state.extra.setdefault("finished", set())  # ... and those that ended
    started = state.extra.setdefault("started", set())  # ... and got their role delta
    calls_so_far = state.extra.setdefault("calls", {})
    candidates = [(0, {"finishReason": "SAFETY"})] if _blocked(response) else _candidates(response)
    choices = []
    for index, candidate in candidates:
        text, calls = _read_parts(candidate)
        seen.add(index)
        delta: dict[str, Any] = {} if index in started else {"role": "assistant"}
        if text:
            delta["content"] = text
        if calls:
            first = calls_so_far.get(index, 0)
            calls_so_far[index] = first + len(calls)
            delta["tool_calls"] = [{"index": first + k, **c} for k, c in enumerate(calls)]
        reason = None
        # Only the first finish counts: captures show a stray trailing chunk such as
        # {"finishReason": "MALFORMED_FUNCTION_CALL"} after the real end.
        if candidate.get("finishReason") and index not in finished:
            finished.add(index)
            reason = _finish_reason(candidate["finishReason"], index in calls_so_far)
            state.finish_reason = reason
        if delta.keys() - {"role"} or reason:
            started.add(index)
            choices.append(
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            )
    if not choices:
        return []
    chunk = {**envelope, "choices": choices}
    if state.include_usage:
        chunk["usage"] = None
    if state.first is None:
        state.first = chunk
    state.chunks += 1
    return [_sse(chunk)]


def _error_summary(data: dict, status: int) -> str:
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
