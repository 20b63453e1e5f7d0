"""OpenAI messages → Anthropic's top-level ``system`` blocks and alternating turns."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dataplane.providers.anthropic.errors import bad
from gateway.dataplane.providers.base import SYSTEM_ROLES, JsonObject, only_system

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def system_and_turns(messages: list[Any]) -> tuple[list[JsonObject], list[JsonObject]]:
    """OpenAI messages → (system text blocks, Anthropic turns with alternating roles)."""
    system: list[JsonObject] = []
    turns: list[JsonObject] = []
    if only_system(messages):  # Anthropic needs a user turn: they become it
        messages = [{**m, "role": "user"} for m in messages]
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(where, f"{where} must be an object.")
        if message.get("role") in SYSTEM_ROLES:
            system += _text_blocks(message.get("content"), where)
        else:
            _add_turn(turns, *_turn(message, where))
    _tool_results_first(turns)
    if turns and turns[-1]["role"] == "assistant":
        _strip_prefill(turns)
    if not turns:
        raise bad("messages", "Anthropic models need at least one user or assistant message.")
    return system, turns


def _turn(message: JsonObject, where: str) -> tuple[str, list[JsonObject]]:
    """One non-system message as (Anthropic role, content blocks)."""
    role = message.get("role")
    if role == "user":
        return "user", _user_blocks(message.get("content"), where)
    if role == "tool":
        return "user", [_tool_result(message, where)]
    if role == "assistant":
        return "assistant", _assistant_blocks(message, where)
    raise bad(f"{where}.role", f"Role {role!r} is not supported for Anthropic models.")


def _add_turn(turns: list[JsonObject], role: str, blocks: list[JsonObject]) -> None:
    """Appends a turn, merged into the last one when it has the same role."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def _tool_results_first(turns: list[JsonObject]) -> None:
    for turn in turns:
        if turn["role"] == "user":  # a stable sort: tool results first, each group in order
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")


def _strip_prefill(turns: list[JsonObject]) -> None:
    blocks = turns[-1]["content"]
    if blocks[-1]["type"] == "text":
        blocks[-1]["text"] = blocks[-1]["text"].rstrip()
        if not blocks[-1]["text"]:
            blocks.pop()
    if not blocks:
        turns.pop()


def _text_block(text: str, part: JsonObject | None = None) -> JsonObject:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _parts(content: Any, where: str) -> list[JsonObject]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise bad(f"{where}.content", f"{where}.content must be a string or an array of parts.")
    return content


def _text_blocks(content: Any, where: str) -> list[JsonObject]:
    blocks = []
    for j, part in enumerate(_parts(content, where)):
        if part.get("type") != "text":
            raise bad(f"{where}.content[{j}].type", "Only text parts are allowed here.")
        if part.get("text"):  # Anthropic rejects empty text blocks
            blocks.append(_text_block(str(part["text"]), part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[JsonObject]:
    blocks = []
    for j, part in enumerate(_parts(content, where)):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append(_text_block(str(part["text"]), part))
        elif kind == "image_url":
            blocks.append(_image(part, f"{where}.content[{j}]"))
        else:
            raise bad(
                f"{where}.content[{j}].type", f"{kind!r} parts are not supported for Anthropic."
            )
    return blocks


def _image(part: JsonObject, where: str) -> JsonObject:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    param = f"{where}.image_url.url"
    if not isinstance(url, str):
        raise bad(param, "image_url.url must be a string.")
    if url.startswith("data:"):
        header, comma, data = url[len("data:") :].partition(",")
        media_type, *options = header.split(";")
        if not comma or "base64" not in options:
            raise bad(param, "Image data URLs must be base64 encoded.")
        if media_type.lower() not in IMAGE_TYPES:
            raise bad(param, "Anthropic accepts JPEG, PNG, GIF and WebP images.")
        source = {"type": "base64", "media_type": media_type.lower(), "data": data}
    elif url.lower().startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise bad(param, "Images must be http(s) or base64 data URLs.")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: JsonObject, where: str) -> list[JsonObject]:
    if message.get("function_call") is not None:
        raise bad(f"{where}.function_call", "Legacy function_call is not supported; use tools.")
    blocks = []
    for j, part in enumerate(_parts(message.get("content"), where)):
        kind = part.get("type")
        text = part.get("refusal") if kind == "refusal" else part.get("text")
        if kind not in ("text", "refusal"):
            raise bad(f"{where}.content[{j}].type", "Assistant content must be text.")
        if text:
            blocks.append(_text_block(str(text), part))
    if not blocks and message.get("refusal"):
        blocks.append(_text_block(str(message["refusal"])))
    for j, call in enumerate(message.get("tool_calls") or []):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, where: str) -> JsonObject:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
        raise bad(where, f"{where} needs an id and a function name.")
    arguments = function.get("arguments") or ""
    try:
        parsed = orjson.loads(arguments) if str(arguments).strip() else {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise bad(f"{where}.function.arguments", "Tool call arguments must be a JSON object.")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _tool_result(message: JsonObject, where: str) -> JsonObject:
    if not message.get("tool_call_id"):
        raise bad(f"{where}.tool_call_id", "Tool messages need a tool_call_id.")
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
