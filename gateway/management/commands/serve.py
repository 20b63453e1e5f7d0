"""Serve Aqta with uvicorn (a production ASGI server), as ``make run`` does.

Without ``OPENAI_API_KEY`` the OpenAI models are routed to the built-in mock provider,
started here on a loopback port, so the demo works offline; the log says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

# Where the mock speaks each provider's protocol (base URLs as each adapter expects them).
MOCK_PATHS = {"OPENAI": "/v1", "ANTHROPIC": "", "GEMINI": "", "PERPLEXITY": "/perplexity"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        mock = None
        unset = [
            name
            for name in MOCK_PATHS
            if not os.environ.get(f"{name}_API_KEY") and not os.environ.get(f"{name}_BASE_URL")
        ]
        if unset:
            mock_port = _free_port()
            mock = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "gateway.mock_provider", "--port", str(mock_port)]
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
        try:
            uvicorn.run(
                "aqta.asgi:application",
                host=host,
                port=port,
                workers=workers,
                lifespan="on",
                access_log=False,
                proxy_headers=True,
            )
        finally:
            if mock is not None:
                mock.terminate()
                mock.wait(timeout=5)
