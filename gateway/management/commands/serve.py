"""Serve Aqta with uvicorn (a production ASGI server), as ``make run`` does.

Without ``OPENAI_API_KEY`` the OpenAI models are routed to the built-in mock provider,
started here on a loopback port, so the demo works offline; the log says so. However the
server ends (a signal, an error, a port already taken), the mock provider ends with it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

# Where the mock speaks each provider's protocol (base URLs as each adapter expects them).
MOCK_PATHS = {"OPENAI": "/v1", "ANTHROPIC": "", "GEMINI": "", "PERPLEXITY": "/perplexity"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PR_SET_PDEATHSIG = 1


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # uvicorn handles SIGTERM while it serves, then raises it again once it has shut down,
    # for the default action: that would end this process before the mock is stopped.
    raise SystemExit(128 + signum)


def _stop_on_hangup(signum: int, frame: FrameType | None) -> None:
    # A closed terminal: shut down as for SIGTERM (gracefully while uvicorn serves). With
    # several workers uvicorn takes SIGHUP over and restarts them instead.
    signal.raise_signal(signal.SIGTERM)


# Signals whose default action would end this process without running its clean-up.
EXIT_HANDLERS = {signal.SIGTERM: _exit_on_signal, signal.SIGHUP: _stop_on_hangup}


def _die_with_parent() -> None:
    """In the child, before exec: be sent SIGTERM when the parent dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Command(BaseCommand):
    help = "Serve the control plane and /v1 with uvicorn (WEB_CONCURRENCY workers)."
    # System checks import the URLconf, hence prometheus_client, which must first see
    # PROMETHEUS_MULTIPROC_DIR (set below); `make run` has just migrated and checked.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        children: list[subprocess.Popen[bytes]] = []
        previous = {signum: signal.signal(signum, h) for signum, h in EXIT_HANDLERS.items()}
        try:
            self._serve(host, port, children)
        finally:
            _stop(children)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _serve(self, host: str, port: int, children: list[subprocess.Popen]) -> None:
        unset = [
            name
            for name in MOCK_PATHS
            if not os.environ.get(f"{name}_API_KEY") and not os.environ.get(f"{name}_BASE_URL")
        ]
        if unset:
            mock_port = _free_port()
            children.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "gateway.mock_provider", "--port", str(mock_port)],
                    preexec_fn=_die_with_parent,  # safe: no thread runs yet
                )
            )
            _wait(mock_port)
            for name in unset:
                os.environ[f"{name}_BASE_URL"] = f"http://127.0.0.1:{mock_port}{MOCK_PATHS[name]}"
                os.environ[f"{name}_API_KEY"] = "mock"
            self.stderr.write(
                f"No API key for {', '.join(unset)}: their models are served by the built-in "
                f"mock provider on 127.0.0.1:{mock_port}. Set <NAME>_API_KEY to use the real one."
            )
        metrics_dir = Path(settings.VAR_DIR) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
        uvicorn.run(
            "aqta.asgi:application",
            host=host,
            port=port,
            workers=workers,
            lifespan="on",
            access_log=False,
            proxy_headers=True,
        )
