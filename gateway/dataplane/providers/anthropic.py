"""Anthropic Messages (``POST {base}/v1/messages``) behind the OpenAI chat completions shape.

Requests
- ``system`` and ``developer`` messages, wherever they stand, become the top-level ``system``
  text blocks, in order.
- ``user`` content: text parts → text blocks, ``image_url`` data URLs → base64 image blocks,
  http(s) URLs → ``url`` image blocks (``detail`` is dropped). Audio and file parts are refused.
- ``tool`` messages → ``tool_result`` blocks in a user turn. Consecutive user and tool messages
  make one user turn with its ``tool_result`` blocks first (Anthropic wants the answers to the
  previous turn's calls before anything else); consecutive assistant messages make one turn.
- Assistant ``tool_calls`` → ``tool_use`` blocks after the text, ``arguments`` parsed into the
  ``input`` object ("" counts as ``{}``; anything but a JSON object is refused). A final
  assistant message (a prefill) loses its trailing whitespace, which Anthropic rejects.
- ``max_completion_tokens`` or ``max_tokens``, else the deployment's ``max_output_tokens``,
  else 4096 → ``max_tokens`` (required upstream). ``stop`` → ``stop_sequences``.
- ``tools`` → ``{name, description, input_schema}``; ``tool_choice`` none/auto/required/
  {function} → none/auto/any/tool; ``parallel_tool_calls: false`` →
  ``disable_parallel_tool_use``. ``user`` → ``metadata.user_id`` unless it looks like an
  e-mail address or is longer than Anthropic's 256 characters (then dropped: the id is only an
  abuse signal and Anthropic asks for no personal data in it).
- ``response_format`` json_schema / json_object → one extra tool whose ``input_schema`` is the
  schema (a permissive object schema for json_object), forced with ``tool_choice``. Its name is
  the schema name behind the reserved prefix ``aqta_json_``: answers do not echo the request,
  so the prefix is how a response (or a stream) is recognised as the JSON answer. Client tools
  may not use the prefix. With client tools and tool_choice auto the model must call one tool,
  a client tool or the answer tool; with ``required`` or a named function this turn is a tool
  call anyway and no answer tool is added; with ``none`` only the answer tool is sent.

Parameters that cannot be mapped
- Dropped, harmless: ``seed``, ``presence_penalty``, ``frequency_penalty``, ``metadata``,
  ``store``, ``service_tier``, ``prediction``, ``reasoning_effort``, ``verbosity``,
  ``prompt_cache_key``, ``safety_identifier``, ``stream_options`` (the gateway's own business).
- Refused with a 400 naming the parameter, because the client would get a different answer
  than it asked for: ``n`` > 1, ``logprobs``/``top_logprobs``, a non-empty ``logit_bias``,
  ``temperature`` > 1 (Anthropic's range is 0..1; refusing beats silently clamping a sampling
  setting), whitespace-only ``stop`` sequences (Anthropic rejects them; dropping one would let
  the answer run past it), audio output, ``web_search_options``, the legacy
  ``functions``/``function_call`` and non-function tools.

Answers
- ``id`` is ``chatcmpl-<msg id>``, ``model`` the model the client asked for. Text blocks are
  joined into ``content``; ``tool_use`` blocks become ``tool_calls`` with JSON-string
  ``arguments``; thinking and server-tool blocks are left out. The answer tool's input becomes
  ``content`` (other text is dropped so the content stays valid JSON) and ``finish_reason`` is
  ``stop``. ``stop_reason``: end_turn/stop_sequence → stop, max_tokens → length, tool_use →
  tool_calls, refusal → content_filter, pause_turn and model_context_window_exceeded → length,
  anything else → stop.
- Usage: ``prompt_tokens = input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens``; ``cached_tokens`` is the cache read.
- Streams: ``message_start`` gives the role chunk; text and ``input_json_delta`` fragments become
  content / tool-call deltas (a call's first delta carries its id and name with ``arguments``
  ""; a call that streamed no fragment gets its start ``input`` or ``{}`` at
  ``content_block_stop`` so clients always get valid JSON); ``message_delta`` gives the chunk
  with ``finish_reason`` and the cumulative usage; ``message_stop`` ends the stream (after the
  usage chunk when the client asked for it). ``ping`` and unknown events are skipped; an
  ``error`` event, or an event that is not JSON, becomes an OpenAI error event. Text streamed
  before the answer tool is forwarded as content (forcing the tool makes Anthropic skip such
  text, and a stream cannot take it back). Lines may end in ``\\n`` or ``\\r\\n`` (a lone
  ``\\r`` is not a line end here).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from aqta.errors import AqtaError, ErrorCode, error_body
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.base import (
    SYSTEM_ROLES,
    StreamState,
    UpstreamRequest,
    only_system,
    openai_usage,
    refusal,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL_PREFIX = "aqta_json_"
TOOL_NAME_MAX = 64
USER_ID_MAX = 256
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PERMISSIVE_SCHEMA = {"type": "object", "additionalProperties": True}
JSON_TOOL_DESCRIPTION = "Give your whole answer by calling this tool; its input is the answer."
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "length",
    "model_context_window_exceeded": "length",
}
EVENT_END = b"\n\n"


def _bad(param: str, message: str) -> AqtaError:
    return refusal(message, param)


class AnthropicProvider:
    name = "anthropic"

    def check_request(self, body: dict) -> None:
        """A dry run of the translation: it refuses what Anthropic cannot answer faithfully."""
        _payload(body, model="", max_output_tokens=None, stream=False)

    def build_request(self, deployment: Deployment, body: dict, stream: bool) -> UpstreamRequest:
        payload = _payload(
            body,
            model=deployment.upstream_model_id,
            max_output_tokens=deployment.max_output_tokens,
            stream=stream,
        )
        endpoint = deployment.endpoint
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if endpoint.api_key:
            headers["x-api-key"] = endpoint.api_key
        base = endpoint.base_url.rstrip("/")
        # Accept a base URL configured with or without the version segment.
        url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        return UpstreamRequest(url=url, headers=headers, body=orjson.dumps(payload))

    def parse_response(self, raw: bytes, model: str) -> tuple[dict, Usage]:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("type", "message") != "message":
            raise ValueError("upstream answer is not an Anthropic message")
        texts: list[str] = []
        calls: list[dict] = []
        answer: str | None = None
        for block in data.get("content") or []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_use":
                name = str(block.get("name") or "")
                arguments = orjson.dumps(block.get("input") or {}).decode()
                if name.startswith(JSON_TOOL_PREFIX):
                    answer = arguments if answer is None else answer
                else:
                    calls.append(_tool_call(block.get("id"), name, arguments))
        content = answer if answer is not None else ("".join(texts) if texts else None)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        message["refusal"] = None
        usage = _usage(data.get("usage") or {})
        completion = {
            "id": "chatcmpl-" + str(data.get("id") or uuid.uuid4().hex),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model or str(data.get("model") or ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish_reason(data.get("stop_reason"), bool(calls)),
                }
            ],
            "usage": openai_usage(usage),
        }
        return completion, usage

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        if state.done or state.error:
            return []
        # A "\r" left at the end of pending meets its "\n" here, so CRLF split anywhere is fine.
        buffer = (state.pending + data).replace(b"\r\n", b"\n")
        *events, state.pending = buffer.split(EVENT_END)
        return _translate_events(events, state)

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """Anthropic ends with ``message_stop``; a last event without its blank line counts."""
        tail, state.pending = state.pending, b""
        if state.done or state.error or not tail.strip():
            return []
        return _translate_events([tail], state, cut=True)

    def error_message(self, status: int, raw: bytes) -> str:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            message = _summary(error)
        elif isinstance(error, str):
            message = error
        else:  # HTML from a proxy in front of the API (e.g. 413), or plain text
            text = re.sub(r"<[^>]*>", " ", raw[:2000].decode(errors="replace"))
            message = " ".join(text.split())[:200]
        if not message:
            message = "overloaded" if status == 529 else f"HTTP {status}"
        return message[:300]


# --- requests ---------------------------------------------------------------------------------


def _payload(body: dict, *, model: str, max_output_tokens: int | None, stream: bool) -> dict:
    _refuse_unmappable(body)
    system, turns = _messages(body.get("messages") or [])
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


def _refuse_unmappable(body: dict) -> None:
    if body.get("n") not in (None, 1):
        raise _bad("n", "Anthropic models return a single choice; n must be 1.")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name):
            raise _bad(name, "Anthropic models do not return log probabilities.")
    if body.get("logit_bias"):
        raise _bad("logit_bias", "Anthropic models do not support logit_bias.")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        raise _bad("temperature", "Anthropic models accept a temperature between 0 and 1.")
    for name in ("functions", "function_call"):
        if body.get(name) is not None:
            raise _bad(name, f"{name} is not supported for Anthropic models; use tools.")
    if body.get("audio") is not None:
        raise _bad("audio", "Anthropic models answer with text only.")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and set(map(str, modalities)) - {"text"}:
        raise _bad("modalities", "Anthropic models answer with text only.")
    if body.get("web_search_options") is not None:
        raise _bad("web_search_options", "web_search_options is not supported for Anthropic.")


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s.strip() for s in sequences):
        raise _bad(
            "stop", "Anthropic models do not accept empty or whitespace-only stop sequences."
        )
    return sequences


def _messages(messages: list) -> tuple[list[dict], list[dict]]:
    """OpenAI messages → (system text blocks, Anthropic turns with alternating roles)."""
    system: list[dict] = []
    turns: list[dict] = []
    if only_system(messages):  # Anthropic needs a user turn: they become it
        messages = [{**m, "role": "user"} for m in messages]
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(where, f"{where} must be an object.")
        role = message.get("role")
        if role in SYSTEM_ROLES:
            system += _text_blocks(message.get("content"), where)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        else:
            raise _bad(f"{where}.role", f"Role {role!r} is not supported for Anthropic models.")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":  # a stable sort: tool results first, each group in order
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if turns and turns[-1]["role"] == "assistant":
        _strip_prefill(turns)
    if not turns:
        raise _bad("messages", "Anthropic models need at least one user or assistant message.")
    return system, turns


def _strip_prefill(turns: list[dict]) -> None:
    blocks = turns[-1]["content"]
    if blocks[-1]["type"] == "text":
        blocks[-1]["text"] = blocks[-1]["text"].rstrip()
        if not blocks[-1]["text"]:
            blocks.pop()
    if not blocks:
        turns.pop()


def _text_block(text: str, part: dict | None = None) -> dict:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _parts(content: Any, where: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise _bad(f"{where}.content", f"{where}.content must be a string or an array of parts.")
    return content


def _text_blocks(content: Any, where: str) -> list[dict]:
    blocks = []
    for j, part in enumerate(_parts(content, where)):
        if part.get("type") != "text":
            raise _bad(f"{where}.content[{j}].type", "Only text parts are allowed here.")
        if part.get("text"):  # Anthropic rejects empty text blocks
            blocks.append(_text_block(str(part["text"]), part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict]:
    blocks = []
    for j, part in enumerate(_parts(content, where)):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append(_text_block(str(part["text"]), part))
        elif kind == "image_url":
            blocks.append(_image(part, f"{where}.content[{j}]"))
        else:
            raise _bad(
                f"{where}.content[{j}].type", f"{kind!r} parts are not supported for Anthropic."
            )
    return blocks


def _image(part: dict, where: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    param = f"{where}.image_url.url"
    if not isinstance(url, str):
        raise _bad(param, "image_url.url must be a string.")
    if url.startswith("data:"):
        header, comma, data = url[len("data:") :].partition(",")
        media_type, *options = header.split(";")
        if not comma or "base64" not in options:
            raise _bad(param, "Image data URLs must be base64 encoded.")
        if media_type.lower() not in IMAGE_TYPES:
            raise _bad(param, "Anthropic accepts JPEG, PNG, GIF and WebP images.")
        source = {"type": "base64", "media_type": media_type.lower(), "data": data}
    elif url.lower().startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise _bad(param, "Images must be http(s) or base64 data URLs.")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict, where: str) -> list[dict]:
    if message.get("function_call") is not None:
        raise _bad(f"{where}.function_call", "Legacy function_call is not supported; use tools.")
    blocks = []
    for j, part in enumerate(_parts(message.get("content"), where)):
        kind = part.get("type")
        text = part.get("refusal") if kind == "refusal" else part.get("text")
        if kind not in ("text", "refusal"):
            raise _bad(f"{where}.content[{j}].type", "Assistant content must be text.")
        if text:
            blocks.append(_text_block(str(text), part))
    if not blocks and message.get("refusal"):
        blocks.append(_text_block(str(message["refusal"])))
    for j, call in enumerate(message.get("tool_calls") or []):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, where: str) -> dict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
        raise _bad(where, f"{where} needs an id and a function name.")
    arguments = function.get("arguments") or ""
    try:
        parsed = orjson.loads(arguments) if str(arguments).strip() else {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad(f"{where}.function.arguments", "Tool call arguments must be a JSON object.")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _tool_result(message: dict, where: str) -> dict:
    if not message.get("tool_call_id"):
        raise _bad(f"{where}.tool_call_id", "Tool messages need a tool_call_id.")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        texts = _text_blocks(content, where)
        if texts:
            block["content"] = texts
    return block


def _object_schema(schema: Any, param: str) -> dict:
    """Anthropic wants ``type: object`` at the top; a schema that leaves it out gets it."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise _bad(param, "The schema must describe a JSON object.")
    return schema if "type" in schema else {"type": "object", **schema}


def _tools(tools: Any) -> list[dict]:
    specs = []
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _bad(f"{where}.type", "Only function tools are supported for Anthropic.")
        function = tool.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.function.name", "Tools need a function name.")
        if name.startswith(JSON_TOOL_PREFIX):
            raise _bad(f"{where}.function.name", f"The prefix {JSON_TOOL_PREFIX} is reserved.")
        spec: dict[str, Any] = {"name": name}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["input_schema"] = _object_schema(
            function.get("parameters"), f"{where}.function.parameters"
        )
        specs.append(spec)
    return specs


def _answer_tool(response_format: Any) -> dict | None:
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
        raise _bad("response_format", f"response_format type {kind!r} is not supported.")
    return {
        "name": (JSON_TOOL_PREFIX + re.sub(r"[^a-zA-Z0-9_-]", "_", name))[:TOOL_NAME_MAX],
        "description": " ".join(filter(None, [JSON_TOOL_DESCRIPTION, description])),
        "input_schema": schema,
    }


def _tool_choice(choice: Any, *, has_tools: bool) -> dict | None:
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
        raise _bad("tool_choice", "tool_choice must be none, auto, required or a function.")
    if not has_tools:
        if mapped["type"] in ("any", "tool"):
            raise _bad("tool_choice", "tool_choice needs tools.")
        return None
    return mapped


def _tools_and_choice(body: dict) -> tuple[list[dict], dict | None]:
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


# --- answers ----------------------------------------------------------------------------------


def _tool_call(call_id: Any, name: str, arguments: str) -> dict:
    return {
        "id": str(call_id or ""),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _finish_reason(stop_reason: Any, tool_called: bool) -> str:
    reason = FINISH_REASONS.get(str(stop_reason), "stop")
    # Only the answer tool was called: to the client that is a finished JSON answer.
    return "stop" if reason == "tool_calls" and not tool_called else reason


def _usage(counts: dict) -> Usage:
    read = int(counts.get("cache_read_input_tokens") or 0)
    written = int(counts.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(counts.get("input_tokens") or 0) + read + written,
        completion_tokens=int(counts.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def _summary(error: dict) -> str:
    message = str(error.get("message") or "").strip()
    kind = str(error.get("type") or "").strip()
    return f"{message} ({kind})" if message and kind else message or kind


# --- streams ----------------------------------------------------------------------------------
# state.extra holds: "envelope" (id/object/created/model of every chunk), "counts" (Anthropic's
# usage so far), "blocks" (Anthropic block index → tool call being streamed) and "calls" (client
# tool calls so far, which is also the OpenAI index of the next one).


def _translate_events(events: list[bytes], state: StreamState, cut: bool = False) -> list[bytes]:
    """``cut``: the last bytes of a body; an event broken off there is a cut, not an error."""
    out: list[bytes] = []
    for raw in events:
        name, payload = _sse_event(raw)
        if not payload:
            continue  # comments, keep-alives
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            if not cut:
                state.error = _error_event("the stream carried an unreadable event")
            break
        kind = event.get("type") or name
        if kind == "error":
            error = event.get("error")
            state.error = _error_event(_summary(error) if isinstance(error, dict) else str(error))
            break
        handler = HANDLERS.get(kind)
        if handler is not None:
            out += handler(event, state)
        if state.done:
            break
    return out


def _sse_event(raw: bytes) -> tuple[str, bytes]:
    name, data = "", []
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[len(b"event:") :].strip().decode(errors="replace")
        elif line.startswith(b"data:"):
            data.append(line[len(b"data:") :].strip())
    return name, b"\n".join(data)


def _error_event(summary: str) -> bytes:
    body = error_body(
        f"Upstream provider error: anthropic: {summary or 'stream error'}",
        code=ErrorCode.PROVIDER_ERROR,
        type="api_error",
    )
    return b"data: " + orjson.dumps(body) + EVENT_END


def _chunk(state: StreamState, delta: dict, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    chunk: dict[str, Any] = {**state.extra["envelope"], "choices": [choice]}
    if state.include_usage:  # as OpenAI does: null on every chunk but the usage chunk
        chunk["usage"] = None
    if state.first is None:
        state.first = chunk
    state.chunks += 1
    return b"data: " + orjson.dumps(chunk) + EVENT_END


def _start(state: StreamState, message: dict) -> list[bytes]:
    if "envelope" in state.extra:
        return []
    state.extra.update(
        envelope={
            "id": "chatcmpl-" + str(message.get("id") or uuid.uuid4().hex),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": state.model or str(message.get("model") or ""),
        },
        counts=dict(message.get("usage") or {}),
        blocks={},
        calls=0,
    )
    state.usage = _usage(state.extra["counts"])
    return [_chunk(state, {"role": "assistant", "content": ""})]


def _on_message_start(event: dict, state: StreamState) -> list[bytes]:
    return _start(state, event.get("message") or {})


def _on_block_start(event: dict, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    block = event.get("content_block") or {}
    if block.get("type") == "text" and block.get("text"):
        out.append(_chunk(state, {"content": block["text"]}))
    if block.get("type") != "tool_use":
        return out  # text, or thinking and server-tool blocks, which OpenAI has no place for
    name = str(block.get("name") or "")
    entry = {"input": block.get("input") or {}, "streamed": False, "call": None}
    state.extra["blocks"][event.get("index")] = entry
    if name.startswith(JSON_TOOL_PREFIX):
        return out  # the answer tool: its input streams as content
    entry["call"] = state.extra["calls"]
    state.extra["calls"] += 1
    call = {"index": entry["call"], **_tool_call(block.get("id"), name, "")}
    return [*out, _chunk(state, {"tool_calls": [call]})]


def _arguments(state: StreamState, entry: dict, fragment: str) -> bytes:
    entry["streamed"] = True
    if entry["call"] is None:
        return _chunk(state, {"content": fragment})
    return _chunk(
        state, {"tool_calls": [{"index": entry["call"], "function": {"arguments": fragment}}]}
    )


def _on_block_delta(event: dict, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    delta = event.get("delta") or {}
    if delta.get("type") == "text_delta" and delta.get("text"):
        out.append(_chunk(state, {"content": delta["text"]}))
    elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
        entry = state.extra["blocks"].get(event.get("index"))
        if entry is not None:
            out.append(_arguments(state, entry, delta["partial_json"]))
    return out


def _on_block_stop(event: dict, state: StreamState) -> list[bytes]:
    entry = state.extra.get("blocks", {}).get(event.get("index"))
    if entry is None or entry["streamed"]:
        return []
    return [_arguments(state, entry, orjson.dumps(entry["input"]).decode())]


def _on_message_delta(event: dict, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    usage = event.get("usage") or {}
    # Counts here are cumulative: they replace what message_start said.
    state.extra["counts"].update({k: v for k, v in usage.items() if v is not None})
    state.usage = _usage(state.extra["counts"])
    if state.finish_reason is None:
        reason = (event.get("delta") or {}).get("stop_reason")
        state.finish_reason = _finish_reason(reason, state.extra["calls"] > 0)
        out.append(_chunk(state, {}, state.finish_reason))
    return out


def _on_message_stop(event: dict, state: StreamState) -> list[bytes]:
    out = _start(state, {})
    if state.finish_reason is None:  # no message_delta came: still end with a finish reason
        state.finish_reason = "stop"
        out.append(_chunk(state, {}, "stop"))
    usage = openai_usage(state.usage or Usage())
    chunk = {**state.extra["envelope"], "choices": [], "usage": usage}
    state.chunks += 1
    out.append(b"data: " + orjson.dumps(chunk) + EVENT_END)
    state.done = True
    return out


HANDLERS = {
    "message_start": _on_message_start,
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "content_block_stop": _on_block_stop,
    "message_delta": _on_message_delta,
    "message_stop": _on_message_stop,
}
