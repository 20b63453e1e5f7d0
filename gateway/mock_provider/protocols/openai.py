"""OpenAI Chat Completions (``POST /v1/chat/completions``): the wire shapes live in ``wire.py``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import wire
from ..clinical import clinical_answer
from ..config import MockConfig
from ..replies import Reply, last_user_text, plan_reply, prompt_tokens
from .base import JSON_TYPE, Call, Protocol, StreamPlan, bearer_token, key_accepted


class OpenAIProtocol(Protocol):
    name = "openai"

    def response_headers(self, started: float, content_type: str = JSON_TYPE) -> dict[str, str]:
        return wire.response_headers(started=started, content_type=content_type)

    def auth_error(
        self, request: web.Request, config: MockConfig, started: float
    ) -> web.Response | None:
        token = bearer_token(request)
        if token is None or not key_accepted(token, config):
            return self.json_response(401, wire.invalid_api_key(token or ""), started)
        return None

    def bad_request(self, request: web.Request, message: str, started: float) -> web.Response:
        return self.json_response(400, wire.invalid_request(message), started)

    def invalid_json(self, request: web.Request, started: float) -> web.Response:
        return self.json_response(400, wire.invalid_json(), started)

    def directive_text(self, body: Mapping[str, Any]) -> str:
        messages = body.get("messages")
        return last_user_text(messages) if isinstance(messages, list) else ""

    def status_error(self, status: int, call: Call) -> Any:
        model = call.body.get("model")
        model = model if isinstance(model, str) else "unknown"
        return wire.status_error(status, model=model, retry_after=call.fault.retry_after)

    def request_error(self, call: Call) -> web.Response | None:
        problem = wire.request_problem(call.body)
        return None if problem is None else self.json_response(400, problem, call.started)

    def wants_stream(self, call: Call) -> bool:
        return call.body.get("stream") is True

    def answer(self, call: Call) -> web.Response:
        reply, n, usage = _plan(call)
        body = wire.completion(
            completion_id=wire.new_id("chatcmpl-", 15),
            created=int(time.time()),
            model=call.body["model"],
            reply=reply,
            n=n,
            usage=usage,
        )
        return web.Response(body=body, headers=self.response_headers(call.started))

    def stream(self, call: Call) -> StreamPlan:
        reply, n, usage = _plan(call)
        options = call.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        frames = wire.stream_frames(
            completion_id=wire.new_id("chatcmpl-", 15),
            created=int(time.time()),
            model=call.body["model"],
            reply=reply,
            n=n,
            usage=usage if include_usage else None,
        )
        start = len(frames.opening)
        return StreamPlan(
            frames=frames.all(),
            paced=range(start, start + len(frames.pieces)),
            headers=self.response_headers(call.started, wire.SSE_TYPE),
            ending=wire.DONE,
            error_event=wire.error_event(),
        )


def _plan(call: Call) -> tuple[Reply, int, dict[str, Any]]:
    """The reply each choice gets, the number of choices and the usage they add up to."""
    body = call.body
    call.state.note_model(body["model"])
    answer = clinical_answer(last_user_text(body["messages"]), call.config)
    reply = plan_reply(body, reply_text=call.config.reply_text, chunks=call.chunks, answer=answer)
    n = body.get("n") or 1
    return reply, n, wire.usage(prompt_tokens(body["messages"]), n * len(reply.pieces))
