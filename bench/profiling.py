"""py-spy profiles of a server process during a measured phase (``--profile``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import ROOT, BenchError

PROJECT_PACKAGES = tuple(
    f"{package}/"
    for package in ("gateway", "accounts", "aqta", "billing", "compliance", "healthcare")
)


class Profiler:
    """``py-spy record`` of one gateway worker for the duration of a measured phase."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(  # noqa: S603 (fixed command line, no shell)
            [
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--nonblocking",
                "--nolineno",
                "--format",
                "raw",
                "--output",
                str(out),
                "--rate",
                "200",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # let it attach before the phase starts

    def finish(self, top: int = 15, packages: tuple[str, ...] = PROJECT_PACKAGES) -> Profile:
        """Stop recording and summarise the samples (``packages``: whose functions to list by
        inclusive time)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
        try:
            lines = self.out.read_text().splitlines()
        except OSError:
            print(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-500:]}")
            return Profile(0, [], [])
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in lines:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_short(frame) for frame in stack.split(";")]
            own[frames[-1]] += int(count)
            for frame in set(frames):
                if frame.partition(" (")[2].startswith(packages):
                    inclusive[frame] += int(count)
            total += int(count)
        return Profile(total, own.most_common(top), inclusive.most_common(top))


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int  # non-idle samples, all threads
    own: list[tuple[str, int]]  # functions by own (leaf) samples
    project: list[tuple[str, int]]  # Aqta's (or LiteLLM's) functions by inclusive samples


def py_spy() -> str:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py)`` -> ``func (pkg/mod.py)``."""
    name, _, path = frame.partition(" (")
    path = path.rstrip(")")
    for marker in ("site-packages/", f"{ROOT}/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name
