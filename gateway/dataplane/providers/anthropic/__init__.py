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

import orjson

from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.anthropic.errors import error_message
from gateway.dataplane.providers.anthropic.request import request_payload
from gateway.dataplane.providers.anthropic.response import completion
from gateway.dataplane.providers.anthropic.stream import EVENT_END, translate_events
from gateway.dataplane.providers.base import JsonObject, StreamState, UpstreamRequest

__all__ = ["API_VERSION", "AnthropicProvider"]

API_VERSION = "2023-06-01"


class AnthropicProvider:
    name = "anthropic"

    def check_request(self, body: JsonObject) -> None:
        """A dry run of the translation: it refuses what Anthropic cannot answer faithfully."""
        request_payload(body, model="", max_output_tokens=None, stream=False)

    def build_request(
        self, deployment: Deployment, body: JsonObject, stream: bool
    ) -> UpstreamRequest:
        payload = request_payload(
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

    def parse_response(self, raw: bytes, model: str) -> tuple[JsonObject, Usage]:
        return completion(raw, model)

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        if state.done or state.error:
            return []
        # A "\r" left at the end of pending meets its "\n" here, so CRLF split anywhere is fine.
        buffer = (state.pending + data).replace(b"\r\n", b"\n")
        *events, state.pending = buffer.split(EVENT_END)
        return translate_events(events, state)

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """Anthropic ends with ``message_stop``; a last event without its blank line counts."""
        tail, state.pending = state.pending, b""
        if state.done or state.error or not tail.strip():
            return []
        return translate_events([tail], state, cut=True)

    def error_message(self, status: int, raw: bytes) -> str:
        return error_message(status, raw)
