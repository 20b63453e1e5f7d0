"""The provider interface. Each provider is one module that turns the OpenAI request into
its own wire format and its answers (JSON, SSE, errors) back into OpenAI's. Adding a
provider means adding a module and registering it in ``gateway.dataplane.providers``.

Token usage is reported in OpenAI's terms (``billing.pricing.Usage``): ``prompt_tokens``
includes cached and cache-write tokens, which are also given separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from aqta.errors import AqtaError, ErrorCode
from billing.pricing import Usage
from gateway.dataplane.catalog import Deployment

# A JSON object as orjson decodes it (request bodies, answers, stream events): the adapters
# check the fields they read, so the values stay Any.
JsonObject: TypeAlias = dict[str, Any]


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class StreamState:
    """What a stream translation has seen so far (for the trace and for billing)."""

    include_usage: bool
    model: str = ""  # the model the client asked for, echoed in translated chunks
    usage: Usage | None = None
    chunks: int = 0
    first: JsonObject | None = None
    done: bool = False
    error: bytes | None = None
    finish_reason: str | None = None
    pending: bytes = b""
    completion_text: list[str] = field(default_factory=list)
    keep_text: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific scratch space


def refusal(message: str, param: str) -> AqtaError:
    """What a translating provider answers for a valid OpenAI request it cannot honour
    faithfully (a parameter, a value or a content shape): 400 ``unsupported_parameter``
    naming the parameter, the same code for every provider, as OpenAI's own API answers
    a parameter a model does not support. Raised before admission: it costs nothing."""
    return AqtaError(message, code=ErrorCode.UNSUPPORTED_PARAMETER, param=param)


SYSTEM_ROLES = ("system", "developer")


def only_system(messages: list[Any]) -> bool:
    """A conversation of system/developer messages alone. OpenAI answers it; providers
    that need a user turn get those messages as the user turn instead (every translating
    adapter does the same)."""
    return bool(messages) and all(
        isinstance(m, dict) and m.get("role") in SYSTEM_ROLES for m in messages
    )


def openai_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object for our token counts."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class Provider(Protocol):
    name: str

    def check_request(self, body: JsonObject) -> None:
        """Refuse (AqtaError 400, naming the parameter) what this provider cannot do."""
        ...

    def build_request(
        self, deployment: Deployment, body: JsonObject, stream: bool
    ) -> UpstreamRequest:
        """The OpenAI request → the provider's HTTP request (URL, headers, JSON body)."""
        ...

    def parse_response(self, raw: bytes, model: str) -> tuple[JsonObject, Usage]:
        """An upstream 200 body → (OpenAI chat.completion object, usage).

        ``model`` is the model id the client asked for (echoed in the answer)."""
        ...

    def translate_stream(self, data: bytes, state: StreamState) -> list[bytes]:
        """Upstream SSE bytes (any chunking) → complete OpenAI SSE events to forward
        (``data: {...}\\n\\n`` each, never ``[DONE]``), always ending with the usage
        chunk (``"choices": []``) as OpenAI sends it with ``include_usage``: the gateway
        holds the finish and usage chunks back and drops the latter unless it was asked
        for (``gateway.dataplane.stream_tail``). Sets ``state.usage`` (final totals),
        ``state.done`` when the upstream stream completed, ``state.error`` (an OpenAI
        ``data: {"error": ...}`` event) when the upstream reported an error mid-stream,
        ``state.first`` (the first translated chunk: its ``id``/``created``/``model``
        are reused by the gateway's final chunk) and ``state.chunks``."""
        ...

    def finish_stream(self, state: StreamState) -> list[bytes]:
        """Called when the upstream body ends: last events to forward, and ``state.done``
        set if ending here is a normal end (providers without an end marker)."""
        ...

    def error_message(self, status: int, raw: bytes) -> str:
        """A short, secret-free summary of an upstream error body (JSON or not)."""
        ...
