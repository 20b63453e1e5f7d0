"""What the benchmark measures besides the load: CPU time of process trees and threads from
/proc (or psutil), peak RSS, the machine's busy share, Redis's counters and the trace stream."""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from bench.scenarios import REDIS_URL, BenchError

if TYPE_CHECKING:
    from bench.stack import Server

psutil: ModuleType | None
try:
    psutil = importlib.import_module("psutil")
except ImportError:  # reading /proc does the same on Linux
    psutil = None


TRACE_STREAM = "aqta:traces"  # gateway/storage.py STREAM and GROUP
CATCH_UP_TIMEOUT = 60.0  # after a phase, the traces must be in PostgreSQL within this time
CATCH_UP_POLL = 0.05
BUSY_WARNING = 0.15
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 1 = ppid, 11/12 = utime/stime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def children(pid: int, recursive: bool) -> list[int]:
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=recursive)]
        except psutil.Error:
            return []
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            by_parent.setdefault(int(fields[1]), []).append(int(entry))
    if not recursive:
        return by_parent.get(pid, [])
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and all its descendants."""
    total = 0.0
    for pid in [root, *children(root, recursive=True)]:
        if psutil is not None:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        elif (fields := _stat(pid)) is not None:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def thread_split(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread (the event loop) and of its other threads."""
    main = others = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return main, others
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if tid == str(pid):
            main += seconds
        else:
            others += seconds
    return main, others


def gateway_split(gateway: Server) -> tuple[float, float, float]:
    """CPU seconds of the workers' event-loop threads, their other threads, everything else."""
    loop = threads = 0.0
    for pid in gateway.workers():
        main, others = thread_split(pid)
        loop += main
        threads += others
    return loop, threads, max(cpu_seconds(gateway.proc.pid) - loop - threads, 0.0)


def split_per_request(
    after: tuple[float, float, float], before: tuple[float, float, float], n: int
) -> tuple[float, float, float]:
    """Milliseconds per request of each part of two ``gateway_split`` readings' difference."""
    loop, threads, rest = ((a - b) * 1000 / n for a, b in zip(after, before, strict=True))
    return loop, threads, rest


def redis_stats() -> dict[str, float]:
    """Redis server-wide: its CPU seconds, and calls and microseconds of some commands."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        cpu = client.info("cpu")
        commands = client.info("commandstats")
    except redis.RedisError:
        return {}
    finally:
        client.close()
    stats = {"cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}
    for name in ("evalsha", "xack"):
        entry = commands.get(f"cmdstat_{name}", {})
        stats[f"{name}_calls"] = float(entry.get("calls", 0))
        stats[f"{name}_usec"] = float(entry.get("usec", 0))
    return stats


def trace_stream() -> tuple[int, int | None]:
    """(entries waiting in the trace stream, entries ever added to it); (0, 0) before it exists.

    The flusher deletes an entry once its batch is in PostgreSQL, so the length is what is
    still to be written. ``entries-added`` needs Redis 7 (None before)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        if not client.exists(TRACE_STREAM):
            return 0, 0
        info = client.xinfo_stream(TRACE_STREAM)
    except redis.RedisError as error:
        raise BenchError(f"Redis at {REDIS_URL}: {error}") from None
    finally:
        client.close()
    added = info.get("entries-added")
    return int(info["length"]), None if added is None else int(added)


async def catch_up(expected: int, timeout: float = CATCH_UP_TIMEOUT) -> tuple[float, int]:
    """Wait until the ``expected`` traces were added to the stream and all were stored.

    A trace is added after its response is sent, so an empty stream alone is not enough.
    Returns the seconds waited and the traces still not stored (0 when caught up)."""
    started = time.monotonic()
    while True:
        length, added = trace_stream()
        # Without a count of added entries, an empty stream must stay empty for a moment.
        missing = max(expected - added, 0) if added is not None else 0
        waited = time.monotonic() - started
        if length == 0 and missing == 0 and (added is not None or waited >= 1.0):
            return waited, 0
        if waited >= timeout:
            return waited, length + missing
        await asyncio.sleep(CATCH_UP_POLL)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields)
    return total - idle, total


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


async def busy_share(seconds: float) -> float:
    """Share of all CPUs busy over the next ``seconds``."""
    before = machine_ticks()
    await asyncio.sleep(seconds)
    after = machine_ticks()
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


async def idle_cpu_ms_per_s(servers: list[Server], seconds: float) -> list[float]:
    """Each server's CPU milliseconds per second over the same ``seconds`` without load."""
    before = [cpu_seconds(server.proc.pid) for server in servers]
    await asyncio.sleep(seconds)
    return [
        (cpu_seconds(server.proc.pid) - b) * 1000 / seconds
        for server, b in zip(servers, before, strict=True)
    ]


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"
