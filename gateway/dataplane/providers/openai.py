"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, LM Studio): a pass-through.

Requests go upstream as sent, with the upstream model id and streamed usage forced on;
answers come back byte for byte (the gateway drops the usage chunk when the client did not
ask for it, see ``gateway.dataplane.stream_tail``).
"""

from __future__ import annotations

import orjson

from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.base import JsonObject, StreamState, UpstreamRequest

EVENT_END = b"\n\n"
DATA = b"data:"
DONE = b"[DONE]"


def usage_from(data: JsonObject | None) -> Usage:
    if not data:
        return Usage()
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


class OpenAIProvider:
    name = "openai"

    def check_request(self, body: JsonObject) -> None:
        """Everything OpenAI accepts passes through."""

    def build_request(
        self, deployment: Deployment, body: JsonObject, stream: bool
    ) -> UpstreamRequest:
        endpoint = deployment.endpoint
        payload = dict(body)
        payload["model"] = deployment.upstream_model_id
        if stream:
            payload["stream_options"] = {
                **(body.get("stream_options") or {}),
                "include_usage": True,
            }
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        return UpstreamRequest(
            url=endpoint.base_url.rstrip("/") + "/chat/completions",
            headers=headers,
            body=orjson.dumps(payload),
        )

    def parse_response(self, raw: bytes, model: str) -> tuple[JsonObject, Usage]:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("upstream answer is not a JSON object")
        return data, usage_from(data.get("usage"))

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """An OpenAI stream ends with [DONE]; ending without it is a cut."""
        return []

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        buffer = state.pending + data
        *events, state.pending = buffer.replace(b"\r\n", b"\n").split(EVENT_END)
        out: list[bytes] = []
        for event in events:
            if not event.startswith(DATA):
                continue  # comments, keep-alives, empty events
            payload = event[len(DATA) :].strip()  # "data:" with or without the space
            if payload == DONE:
                state.done = True
                break
            # OpenAI's own "usage":null needs no parsing; any other spelling is parsed.
            has_usage = b'"usage"' in payload and b'"usage":null' not in payload
            if state.first is None or has_usage or b'"error"' in payload:
                chunk = orjson.loads(payload)
                if state.first is None:
                    state.first = chunk
                if chunk.get("error"):
                    state.error = b"data: " + payload + EVENT_END
                    break
                if chunk.get("usage"):
                    state.usage = usage_from(chunk["usage"])
            state.chunks += 1
            out.append(b"data: " + payload + EVENT_END)
        return out

    def error_message(self, status: int, raw: bytes) -> str:
        try:
            error = orjson.loads(raw).get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
        except (orjson.JSONDecodeError, AttributeError):
            message = raw[:200].decode(errors="replace")
        return str(message or f"HTTP {status}")[:300]
