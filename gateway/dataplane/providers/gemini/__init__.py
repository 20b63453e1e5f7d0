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
``arguments``, recursive ``$ref`` schemas and schemas too deep or too large once inlined
(``schema.MAX_DEPTH``, ``schema.MAX_NODES``). A malformed schema (a keyword read with the
wrong JSON type) is a 400 ``invalid_parameter`` naming the parameter.

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

import orjson

from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.providers.base import JsonObject, StreamState, UpstreamRequest
from gateway.dataplane.providers.gemini.errors import error_message
from gateway.dataplane.providers.gemini.request import gemini_request_body, gemini_url
from gateway.dataplane.providers.gemini.response import completion
from gateway.dataplane.providers.gemini.schema import gemini_schema
from gateway.dataplane.providers.gemini.stream import finish_stream, translate_stream

__all__ = ["GeminiProvider", "gemini_request_body", "gemini_schema", "gemini_url"]


class GeminiProvider:
    name = "google"

    def check_request(self, body: JsonObject) -> None:
        """Translate once and throw the result away: whatever the translation would refuse
        is refused before anything goes upstream."""
        gemini_request_body(body)

    def build_request(
        self, deployment: Deployment, body: JsonObject, stream: bool
    ) -> UpstreamRequest:
        endpoint = deployment.endpoint
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key:
            headers["x-goog-api-key"] = endpoint.api_key
        return UpstreamRequest(
            url=gemini_url(endpoint.base_url, deployment.upstream_model_id, stream),
            headers=headers,
            body=orjson.dumps(gemini_request_body(body)),
        )

    def parse_response(self, raw: bytes, model: str) -> tuple[JsonObject, Usage]:
        return completion(raw, model)

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        return translate_stream(data, state)

    def finish_stream(self, state: StreamState) -> list[bytes]:
        return finish_stream(state)

    def error_message(self, status: int, raw: bytes) -> str:
        return error_message(status, raw)
