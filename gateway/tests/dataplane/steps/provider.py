"""A made-up LLM provider: a real local HTTP server speaking OpenAI's chat completions and
Anthropic's Messages wire formats (JSON answers, server-sent event streams, error bodies).

Replies are scripted per path; the server records every request it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
CREATED = 1_700_000_000


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    events: list[bytes] | None = None  # a stream: written one by one
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    json: Any


def openai_completion(text: str = "Hi there", prompt: int = 10, completion: int = 5) -> Reply:
    answer = {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o-mini-2024",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    return Reply(body=orjson.dumps(answer), headers={"Content-Type": "application/json"})


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini-2024",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_stream(*texts: str, done: bool = True) -> Reply:
    """Role chunk, one chunk per text, finish chunk, usage chunk, ``[DONE]`` (unless cut)."""
    usage = {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini-2024",
        "choices": [],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": len(texts),
            "total_tokens": 10 + len(texts),
        },
    }
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": text}) for text in texts]
    if done:
        events += [
            _chunk({}, "stop"),
            b"data: " + orjson.dumps(usage) + b"\n\n",
            b"data: [DONE]\n\n",
        ]
    return Reply(events=events, headers={"Content-Type": "text/event-stream"})


def openai_error(status: int, message: str) -> Reply:
    error = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    return Reply(
        status=status, body=orjson.dumps(error), headers={"Content-Type": "application/json"}
    )


def anthropic_message(text: str = "Hi there") -> Reply:
    answer = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    return Reply(body=orjson.dumps(answer), headers={"Content-Type": "application/json"})


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream(*texts: str) -> Reply:
    start: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    events = [
        _sse("message_start", {"type": "message_start", "message": start}),
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    events += [
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
        )
        for t in texts
    ]
    events += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return Reply(events=events, headers={"Content-Type": "text/event-stream"})


def anthropic_error(status: int, message: str) -> Reply:
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return Reply(
        status=status, body=orjson.dumps(error), headers={"Content-Type": "application/json"}
    )


@dataclass
class Provider:
    """Answers the n-th request to a path with that path's n-th reply (the last repeats)."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def script(self, path: str, *replies: Reply) -> None:
        self.replies[path] = list(replies)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.path, dict(request.headers), await request.json()))
        replies = self.replies.get(request.path) or [Reply(status=404, body=b"no reply scripted")]
        reply = replies[min(len(self.to(request.path)), len(replies)) - 1]
        if reply.events is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        for event in reply.events:
            await response.write(event)
            await asyncio.sleep(0)
        await response.write_eof()
        return response


@asynccontextmanager
async def serving() -> AsyncIterator[Provider]:
    provider = Provider()
    app = web.Application()
    app.router.add_post(OPENAI_PATH, provider.handle)
    app.router.add_post(ANTHROPIC_PATH, provider.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    provider.url = f"http://{host}:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()
