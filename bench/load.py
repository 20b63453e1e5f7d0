"""The load generator: request bodies, concurrent clients, and the checks of every answer
(JSON, OpenAI chat completion streams, Anthropic Messages streams)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import aiohttp
import orjson

from bench.scenarios import CHUNKS, Outcome, Scenario

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MAX_TOKENS = 4096  # what the gateway sends for this model (its max_output_tokens)
NONCE = secrets.token_hex(4)


class Bodies:
    """Request bodies with a counter in the user message: every fingerprint is distinct, so the
    loop guard (same request > 10 times a minute) never fires."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, scenario: Scenario, usage: bool) -> bytes:
        self.count += 1
        system = "You are a terse assistant."
        user = f"Bench {NONCE} request {self.count}: say hello."
        stream = scenario.stream
        body: dict
        if scenario.protocol == "anthropic":
            # What the gateway's Anthropic adapter sends for the OpenAI body below.
            body = {
                "model": scenario.model,
                "max_tokens": ANTHROPIC_MAX_TOKENS,
                "messages": [{"role": "user", "content": [{"type": "text", "text": user}]}],
                "system": [{"type": "text", "text": system}],
            }
            if stream:
                body["stream"] = True
            return orjson.dumps(body)
        body = {
            "model": scenario.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
        }
        if stream:
            body["stream"] = True
            if usage:
                body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)


async def load(
    session: aiohttp.ClientSession,
    url: str,
    api_key: str,
    scenario: Scenario,
    n: int,
    bodies: Bodies,
) -> Outcome:
    outcome = Outcome(n=n)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if scenario.protocol == "anthropic":
        headers = {
            "x-api-key": api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "Content-Type": "application/json",
        }
    # Behind the gateway the mock is asked for usage (the gateway forces it); ask the same of it
    # directly. Clients of the gateway (and of LiteLLM) use the SDK default (no stream_options).
    usage = scenario.target == "mock"
    left = n

    async def one() -> None:
        body = bodies.next(scenario, usage)
        outcome.sent += 1
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                if scenario.stream:
                    ttfb = await read_stream(response, started, scenario, outcome)
                    if ttfb is None:
                        return
                    outcome.ttfbs.append(ttfb)
                elif not await read_json(response, scenario, outcome):
                    return
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome.fail(f"client error {type(error).__name__}", repr(error))
            return
        outcome.latencies.append(time.perf_counter() - started)

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(scenario.concurrency)))
    outcome.elapsed = time.perf_counter() - started
    return outcome


def _error_reason(status: int, raw: bytes) -> str:
    code = ""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        error = orjson.loads(raw)["error"]
        code = error.get("code") or error.get("type") or ""  # OpenAI's code, Anthropic's type
    return f"HTTP {status} {code}".strip()


def _aqta_problem(body: dict, scenario: Scenario) -> str | None:
    """Behind the gateway: why the ``aqta`` object is missing or wrong, or None."""
    if scenario.target != "gateway":
        return None
    aqta = body.get("aqta")
    if not isinstance(aqta, dict):
        return "no aqta object"
    if scenario.provider is not None and aqta.get("provider") != scenario.provider:
        return f"aqta.provider is not {scenario.provider}"
    return None


async def read_json(response: aiohttp.ClientResponse, scenario: Scenario, outcome: Outcome) -> bool:
    raw = await response.read()
    if response.status != 200:
        outcome.fail(_error_reason(response.status, raw), raw.decode(errors="replace"))
        return False
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        outcome.fail("unreadable JSON", raw.decode(errors="replace"))
        return False
    if not isinstance(body, dict) or not body.get("choices"):
        outcome.fail("no choices", raw.decode(errors="replace"))
        return False
    if (problem := _aqta_problem(body, scenario)) is not None:
        outcome.fail(problem, raw.decode(errors="replace"))
        return False
    return True


async def read_stream(
    response: aiohttp.ClientResponse, started: float, scenario: Scenario, outcome: Outcome
) -> float | None:
    """Consume the whole SSE stream; the time to the first data event, or None on failure."""
    if response.status != 200:
        raw = await response.read()
        outcome.fail(_error_reason(response.status, raw), raw.decode(errors="replace"))
        return None
    ttfb, received = await _receive(response, started)
    events = received.replace(b"\r\n", b"\n").strip().split(b"\n\n")
    text = received[-600:].decode(errors="replace")
    if scenario.protocol == "anthropic":
        problem = anthropic_stream_problem(events)
        failure = None if problem is None else (problem, text)
    else:
        failure = chat_stream_failure(events, scenario, text)
    if failure is not None:
        outcome.fail(*failure)
        return None
    return ttfb


async def _receive(response: aiohttp.ClientResponse, started: float) -> tuple[float | None, bytes]:
    """The time to the first data event (None: there was none), and the whole body."""
    ttfb: float | None = None
    received = bytearray()
    async for data in response.content.iter_any():
        if ttfb is None and b"data:" in data:
            ttfb = time.perf_counter() - started
        received += data
    return ttfb, bytes(received)


def chat_stream_failure(
    events: list[bytes], scenario: Scenario, text: str
) -> tuple[str, str] | None:
    """A chat completion stream: CHUNKS chunks or more, then the last chunk, then [DONE];
    the reason it failed and the detail to show (``text``, its end), or None."""
    if len(events) < 2 or events[-1] != b"data: [DONE]":
        return "stream without [DONE]", text
    if len(events) < CHUNKS + 2:
        return "stream too short", f"{len(events)} events: {text}"
    problem = _last_chunk_problem(_sse_json(events[-2]), scenario)
    return None if problem is None else (problem, text)


def _sse_json(event: bytes) -> Any:
    """The JSON of a ``data:`` event, or None."""
    if not event.startswith(b"data:"):
        return None
    try:
        return orjson.loads(event[len(b"data:") :])
    except orjson.JSONDecodeError:
        return None


def _last_chunk_problem(chunk: Any, scenario: Scenario) -> str | None:
    # Direct, usage is asked for: the usage chunk comes last. Through the gateway or LiteLLM (the
    # SDK default, no usage asked) the finish chunk does, carrying the gateway's aqta object.
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if scenario.target != "mock":
        if not choices or not choices[0].get("finish_reason"):
            return "last chunk is not the finish chunk or is unreadable"
    elif choices != []:
        return "last chunk is not the usage chunk or is unreadable"
    assert isinstance(chunk, dict)  # the checks above found its choices
    if (problem := _aqta_problem(chunk, scenario)) is not None:
        return f"last chunk: {problem}"
    return None


def anthropic_stream_problem(events: list[bytes]) -> str | None:
    """An Anthropic Messages stream (mock direct): message_start, CHUNKS text deltas, message_stop;
    what is wrong with it, or None."""
    names = [event.split(b"\n", 1)[0] for event in events]
    if not names or names[0] != b"event: message_start":
        return "stream without message_start"
    if names[-1] != b"event: message_stop":
        return "stream without message_stop"
    deltas = names.count(b"event: content_block_delta")
    if deltas != CHUNKS:
        return f"stream with {deltas} content deltas, not {CHUNKS}"
    if b"event: error" in names:
        return "stream with an error event"
    return None
