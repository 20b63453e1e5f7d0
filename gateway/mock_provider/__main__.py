"""``python -m gateway.mock_provider --port 9100``: serve the mock until interrupted."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from aiohttp import web

from .config import MockConfig
from .server import create_app, new_event_loop


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.mock_provider",
        description="Mock OpenAI, Anthropic, Gemini and Perplexity APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="wait before every chat answer"
    )
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="wait before each streamed piece"
    )
    parser.add_argument(
        "--chunks", type=int, default=20, help="reply length in tokens (= content chunks)"
    )
    parser.add_argument(
        "--api-key", default=None, help="accept only this key (default: any non-empty key)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = MockConfig(
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        chunks=args.chunks,
        api_key=args.api_key,
    )
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=1.0,
        loop=loop,
        print=lambda _: print(_banner(f"http://{args.host}:{args.port}"), flush=True),
    )


def _banner(url: str) -> str:
    """The base URL each provider's client should use, on one line (the bench filters it)."""
    return (
        f"Mock OpenAI provider on {url}/v1 (Anthropic: {url}, Gemini: {url}, "
        f"Perplexity: {url}/perplexity)"
    )


if __name__ == "__main__":
    main()
