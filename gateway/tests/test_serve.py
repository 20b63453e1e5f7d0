"""``manage.py serve`` as ``make run`` starts it: a real process, with the mock provider
as its child when no provider key is set. However it ends, nothing it started may stay."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from gateway.tests.conftest import ROOT, _database_url, _free_port, seed_catalogue

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc"
)

MOCK_LINE = re.compile(r"mock provider on 127\.0\.0\.1:(\d+)")


@dataclass
class Served:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def mock_port(self) -> int:
        match = MOCK_LINE.search(self.log.read_text())
        assert match, "serve did not say where the mock provider listens"
        return int(match.group(1))


def _state(pid: int) -> str | None:
    """The process's state letter, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")  # a zombie has ended; only its entry is left


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _environment(tmp_path: Path, workers: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "aqta.settings",
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": "serve-test-secret",
        "AQTA_API_KEY_PEPPER": settings.AQTA_API_KEY_PEPPER,
        "AQTA_ENCRYPTION_KEYS": ",".join(settings.AQTA_ENCRYPTION_KEYS),
        "AQTA_VAR_DIR": str(tmp_path / "var"),
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
        # No provider key or URL: serve starts the mock provider for all of them.
    }


@contextlib.contextmanager
def serving(tmp_path: Path, *, workers: int = 1, port: int | None = None) -> Iterator[Served]:
    port = port or _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=_environment(tmp_path, workers),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so a failed test can still clean up
        )
    try:
        yield Served(process=process, port=port, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left of it: as it should be
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ready(served: Served) -> None:
    def answers() -> bool:
        assert served.process.poll() is None, served.log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=1).is_success
        return False

    assert _wait_until(answers, timeout=30), served.log.read_text()


@pytest.fixture
def catalogue(transactional_db) -> None:
    seed_catalogue()  # committed: the server loads it at start-up


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 1), (signal.SIGHUP, 1)],
    ids=["sigterm", "sigterm-2-workers", "sigint", "sighup"],
)
def test_a_signal_stops_serve_with_every_process_it_started(catalogue, tmp_path, signum, workers):
    with serving(tmp_path, workers=workers) as served:
        _ready(served)
        children = _descendants(served.process.pid)
        mock_port = served.mock_port
        assert len(children) >= 1 + (workers if workers > 1 else 0)
        assert not _port_free(mock_port)

        served.process.send_signal(signum)

        served.process.wait(timeout=30)
        assert _wait_until(lambda: not any(_alive(pid) for pid in children)), [
            (pid, _state(pid)) for pid in children
        ]
        assert _port_free(served.port) and _port_free(mock_port)


def test_serve_that_cannot_take_its_port_stops_its_mock_provider(catalogue, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serving(tmp_path, port=port) as served:
            assert served.process.wait(timeout=30) != 0
            mock_port = served.mock_port

    assert _port_free(mock_port)
    assert "address already in use" in served.log.read_text().lower()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_the_mock_provider_does_not_outlive_a_killed_serve(catalogue, tmp_path):
    with serving(tmp_path) as served:
        _ready(served)
        children = _descendants(served.process.pid)
        mock_port = served.mock_port

        served.process.kill()  # no handler runs: the child must notice on its own
        served.process.wait(timeout=10)

        assert _wait_until(lambda: not any(_alive(pid) for pid in children))
        assert _wait_until(lambda: _port_free(mock_port))
