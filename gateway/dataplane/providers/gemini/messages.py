"""OpenAI messages → Gemini's ``systemInstruction`` parts and ``contents``."""

from __future__ import annotations

import base64
import mimetypes
import re
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson

from gateway.dataplane.providers.base import JsonObject
from gateway.dataplane.providers.gemini.errors import bad, unsupported
from gateway.dataplane.providers.gemini.response import THOUGHT_SEPARATOR

AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)
FILES_API_HOST = "generativelanguage.googleapis.com"


def _text_of(content: Any, param: str, kinds: tuple[str, ...] = ("text",)) -> str:
    """The text of a content that may only hold text (system and tool messages)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise bad(f"{param} must be a string or an array of text parts.", param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise bad(f"{param}[{j}]: only text parts are supported here.", f"{param}[{j}]")
        texts.append(str(part.get(kind) or ""))
    return "".join(texts)


def _data_url(url: str, param: str) -> JsonObject:
    match = DATA_URL.fullmatch(url)
    if match is None or not match["mime"]:
        raise bad(
            f"{param} must be a data: URL with a media type (data:image/png;base64,…).", param
        )
    data = match["data"]
    if ";base64" not in match["params"].lower():
        data = base64.b64encode(unquote_to_bytes(data)).decode()
    return {"inlineData": {"mimeType": match["mime"], "data": data.strip()}}


def _file_url(url: str, param: str) -> JsonObject:
    """A URL Gemini fetches itself (``fileData``): its MIME type comes from its name."""
    parts = urlsplit(url)
    mime, _ = mimetypes.guess_type(parts.path)
    if mime is None and parts.hostname == FILES_API_HOST:
        return {"fileData": {"fileUri": url}}  # an uploaded Gemini file knows its type
    if mime is None:
        raise bad(
            f"{param}: cannot tell the media type of {parts.scheme}://{parts.hostname}… for "
            "Gemini; send the image as a data: URL or use a URL ending in .png, .jpg, .webp, …",
            param,
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_part(part: Any, param: str) -> JsonObject | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = str(part.get("text") or "")
        return {"text": text} if text else None
    if kind == "image_url":
        return _image_part(part, param)
    if kind == "input_audio":
        return _audio_part(part, param)
    if kind == "file":
        return _file_part(part, param)
    raise bad(f"{param}: content parts of type {kind!r} are not supported for Gemini.", param)


def _image_part(part: JsonObject, param: str) -> JsonObject:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad(f"{param}.image_url.url is required.", f"{param}.image_url")
    url = url.strip()
    if url.startswith("data:"):
        return _data_url(url, f"{param}.image_url")
    return _file_url(url, f"{param}.image_url")


def _audio_part(part: JsonObject, param: str) -> JsonObject:
    audio = part.get("input_audio") or {}
    mime = AUDIO_TYPES.get(str(audio.get("format")))
    if mime is None:
        raise bad(f"{param}.input_audio.format must be wav or mp3.", f"{param}.input_audio")
    return {"inlineData": {"mimeType": mime, "data": str(audio.get("data") or "")}}


def _file_part(part: JsonObject, param: str) -> JsonObject:
    file = part.get("file") or {}
    data = file.get("file_data")
    if not data:
        raise unsupported(f"{param}.file", "send the file as file_data, not file_id.")
    if str(data).startswith("data:"):
        return _data_url(str(data), f"{param}.file")
    mime, _ = mimetypes.guess_type(str(file.get("filename") or ""))
    if mime is None:
        raise bad(f"{param}.file needs a filename with a known extension.", f"{param}.file")
    return {"inlineData": {"mimeType": mime, "data": str(data)}}


def _user_parts(content: Any, param: str) -> list[JsonObject]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise bad(f"{param} must be a string or an array of content parts.", param)
    parts = (_user_part(part, f"{param}[{j}]") for j, part in enumerate(content))
    return [part for part in parts if part is not None]


def _call_part(call: Any, param: str) -> JsonObject:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise bad(f"{param} must be a function call with a name.", param)
    arguments = function.get("arguments") or "{}"
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        param = f"{param}.function.arguments"
        raise bad(f"{param} must be a JSON object (as a string).", param)
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    _, _, signature = str(call.get("id") or "").partition(THOUGHT_SEPARATOR)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _assistant_parts(message: JsonObject, param: str) -> list[JsonObject]:
    text = _text_of(message.get("content"), f"{param}.content", ("text", "refusal"))
    parts = [{"text": text}] if text else []
    calls = message.get("tool_calls") or []
    return parts + [_call_part(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(calls)]


def _turn(message: JsonObject, param: str, names: dict[str, str]) -> tuple[str, list[JsonObject]]:
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
            raise bad(
                f"{param}.tool_call_id does not match a tool call of an earlier assistant message.",
                f"{param}.tool_call_id",
            )
        output = _text_of(message.get("content"), f"{param}.content")
        return "user", [{"functionResponse": {"name": name, "response": {"output": output}}}]
    if role == "function":
        raise unsupported(f"{param}.role", "use tool messages instead.")
    raise bad(f"{param}.role {role!r} is not supported.", f"{param}.role")


def system_and_contents(messages: list[Any]) -> tuple[list[JsonObject], list[JsonObject]]:
    """(systemInstruction parts, contents) with consecutive turns of one role merged."""
    system: list[JsonObject] = []
    turns: list[JsonObject] = []
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
