"""The processes the benchmark starts and stops (the mock provider, ``manage.py run_flusher``,
the gateway under uvicorn), and the set-up of its PostgreSQL database and Redis db.

The processes are stopped at the end (SIGTERM, then SIGKILL to their process group; in
reverse order of start, so the gateway before the flusher)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.load import Bodies
from bench.measure import TRACE_STREAM, children
from bench.scenarios import (
    CHUNKS,
    HEALTHCARE_KEY,
    HOST,
    REDIS_URL,
    ROOT,
    WORKERS,
    BenchError,
    Scenario,
    Target,
)

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "aqta_bench"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
FLUSH_GROUP = "flushers"
ORG_SLUG = "demo"
ORG_BUDGET_EUR = 1_000_000
BENCH_RATE_LIMIT = 10_000_000
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

# Provider settings inherited from the shell would route models off this machine.
PROVIDER_ENV = re.compile(r"^[A-Z0-9_]+_(API_KEY|BASE_URL)(_FILE)?$")

# Start-up and shutdown chatter of uvicorn, the mock and run_flusher; other log lines are reported.
QUIET_LOG_LINES = (
    "INFO:",
    "Mock OpenAI provider on",
    "trace flusher running",
    "trace flusher stopped",
)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass(slots=True)
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    single_process: bool = False  # uvicorn with one worker serves in its own process
    problem: re.Pattern[str] | None = None  # log lines worth reporting (None: all but QUIET)
    stopped: bool = False

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self) -> list[str]:
        """Log lines other than uvicorn's and the mock's start-up chatter."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        if self.problem is not None:
            return [line for line in lines if self.problem.search(line)]
        return [line for line in lines if line.strip() and not line.startswith(QUIET_LOG_LINES)]

    def workers(self) -> list[int]:
        """uvicorn's worker processes (the multiprocessing resource tracker is not one)."""
        if self.single_process:
            return [self.proc.pid]
        return [
            pid
            for pid in children(self.proc.pid, recursive=False)
            if b"resource_tracker" not in _cmdline(pid)
        ]


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    logs: Path,
    *,
    cwd: Path = ROOT,
    single_process: bool = False,
    problem: re.Pattern[str] | None = None,
) -> Server:
    log = logs / f"{name}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(  # noqa: S603 (fixed command line, no shell)
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the clean-up can reach stragglers
        )
    return Server(name, proc, log, single_process, problem)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_server(server: Server) -> None:
    """SIGTERM, then SIGKILL to the server's process group after STOP_TIMEOUT."""
    server.stopped = True
    proc = server.proc
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{server.name}: still running {STOP_TIMEOUT:.0f} s after SIGTERM; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        print(f"{server.name}: processes left in its group after {STOP_TIMEOUT:.0f} s; SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(
    server: Server, url: str, api_key: str, workers: int = 0, timeout: float = READY_TIMEOUT
) -> None:
    """Until ``url`` answers 200 (and ``workers`` worker processes exist)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"}
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if not server.running():
                raise BenchError(
                    f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            try:
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                    if response.status == 200 and len(server.workers()) >= workers:
                        return
                    last = f"HTTP {response.status}: {body[:300].decode(errors='replace')}"
            except (aiohttp.ClientError, TimeoutError) as error:
                last = repr(error)
            await asyncio.sleep(0.2)
    raise BenchError(
        f"{server.name} not ready after {timeout:.0f} s ({last}):\n{server.log_tail()}"
    )


async def wait_flusher_ready(flusher: Server) -> None:
    """Until the flusher created its consumer group (no other process does in this shape).

    (Redis 7.0 lists the consumer only once a read returned entries, so that is no sign.)"""
    import redis

    deadline = time.monotonic() + READY_TIMEOUT
    client = redis.Redis.from_url(REDIS_URL)
    try:
        while time.monotonic() < deadline:
            if not flusher.running():
                raise BenchError(
                    f"flusher exited with {flusher.proc.returncode}:\n{flusher.log_tail()}"
                )
            with contextlib.suppress(redis.RedisError):  # no stream or group yet
                groups = client.xinfo_groups(TRACE_STREAM)
                if any(g["name"] == FLUSH_GROUP.encode() for g in groups):
                    return
            await asyncio.sleep(0.2)
    finally:
        client.close()
    raise BenchError(
        f"flusher not reading {TRACE_STREAM} after {READY_TIMEOUT:.0f} s:\n{flusher.log_tail()}"
    )


def prepare_stores() -> None:
    import psycopg
    import redis

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    except psycopg.Error as error:
        raise BenchError(f"PostgreSQL at {PG_ADMIN_URL}: {error}") from None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.RedisError as error:
        raise BenchError(f"Redis at {REDIS_URL}: {error}") from None
    finally:
        client.close()


def aqta_env(mock_port: int, logs: Path, flush_in_workers: bool) -> dict[str, str]:
    from cryptography.fernet import Fernet

    from healthcare.signing import IssuerKey

    env = {k: v for k, v in os.environ.items() if not PROVIDER_ENV.match(k)}
    metrics_dir = logs / "prometheus"
    metrics_dir.mkdir()
    env.update(
        DJANGO_SETTINGS_MODULE="aqta.settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY=secrets.token_urlsafe(48),
        AQTA_API_KEY_PEPPER=secrets.token_urlsafe(48),
        AQTA_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        AQTA_STAFF_REQUIRE_MFA="false",
        AQTA_RECEIPT_SIGNING_KEY=IssuerKey.generate().seed,
        LOG_LEVEL="WARNING",
        OPENAI_BASE_URL=f"http://{HOST}:{mock_port}/v1",
        OPENAI_API_KEY="mock",
        # The mock speaks Anthropic's Messages API at its root (the adapter adds /v1/messages).
        ANTHROPIC_BASE_URL=f"http://{HOST}:{mock_port}",
        ANTHROPIC_API_KEY="mock",
        # As `manage.py serve` and deployments run it: metrics in multiprocess mode.
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        # Production: a `manage.py run_flusher` process writes the traces, not the workers.
        AQTA_FLUSH_IN_WORKERS="true" if flush_in_workers else "false",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py``; its stdout's last line."""
    command = [sys.executable, "manage.py", *args]
    done = subprocess.run(  # noqa: S603 (fixed command line, no shell)
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {args[0]} failed ({done.returncode}):\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    return lines[-1].strip() if lines else ""


def prepare_aqta(env: dict[str, str]) -> str:
    """Migrate, create the demo organisation and the benchmark key; the key's secret."""
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "demo_setup")
    key = manage(
        env, "apikey_create", ORG_SLUG, "--name", "bench", "--rate-limit", str(BENCH_RATE_LIMIT)
    )
    if not key:
        raise BenchError("apikey_create printed no key")
    budget = (
        "from accounts.models import Organization; "
        f"n = Organization.objects.filter(slug='{ORG_SLUG}')"
        f".update(monthly_budget_eur={ORG_BUDGET_EUR}); print(n)"
    )
    if manage(env, "shell", "-c", budget) != "1":
        raise BenchError(f"could not set the budget of organisation {ORG_SLUG!r}")
    return key


def prepare_healthcare(env: dict[str, str]) -> str:
    """An organisation on the Healthcare tier beside the demo one (same budget, its own
    key): every call it makes is signed and stored as a receipt."""
    create = (
        "from accounts.models import Organization; from accounts.services import "
        "organization_create; from billing.selectors import tier_get; "
        f"demo = Organization.objects.get(slug='{ORG_SLUG}'); "
        "owner = demo.memberships.get(role='owner').user; "
        f"org = organization_create(name='Bench Health', owner=owner, tier=tier_get(slug="
        f"'healthcare')); org.monthly_budget_eur = {ORG_BUDGET_EUR}; "
        # An operator's override (the tier itself has no custom limits): as high as the Pro key.
        f"org.rate_limit_per_minute = {BENCH_RATE_LIMIT}; org.save(); print(org.slug)"
    )
    slug = manage(env, "shell", "-c", create)
    key = manage(env, "apikey_create", slug, "--name", "bench")
    if not key:
        raise BenchError("apikey_create printed no key for the Healthcare organisation")
    return key


def gateway_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "aqta.asgi:application",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--lifespan",
        "on",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


@dataclass(slots=True)
class Stack:
    """The running servers and what the scenarios share."""

    mock: Server
    gateway: Server  # the one running: 2 workers, then 1 for group L
    flusher: Server | None  # None with --flush-in-workers
    bodies: Bodies
    warmup: int
    profile_dir: Path | None
    litellm: Server | None = None
    ports: dict[str, int] = field(default_factory=dict)  # of the running servers, by target
    keys: dict[str, str] = field(default_factory=dict)  # the API key each target takes
    traces_sent: int = 0  # requests sent to the gateway so far: each adds one trace

    def url(self, scenario: Scenario) -> str:
        port = self.ports[scenario.target]
        if scenario.protocol == "anthropic":
            return f"http://{HOST}:{port}/v1/messages"  # the mock's Messages API
        return f"http://{HOST}:{port}/v1/chat/completions"

    def server(self, target: Target) -> Server:
        server = {"mock": self.mock, "gateway": self.gateway, "litellm": self.litellm}[target]
        if server is None:
            raise BenchError(f"no {target} server running")
        return server


async def start_stack(
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    servers: list[Server],
    api_key: str,
    ports: tuple[int, int],
    healthcare_key: str,
) -> Stack:
    """Start the mock, the flusher (unless the workers flush) and the gateway, each added to
    ``servers`` as it starts; return them once they all answer."""
    mock_port, gateway_port = ports
    mock = start_server(
        "mock",
        [
            sys.executable,
            "-m",
            "gateway.mock_provider",
            "--host",
            HOST,
            "--port",
            str(mock_port),
            "--chunks",
            str(CHUNKS),
            "--latency-ms",
            "0",
        ],
        env,
        logs,
    )
    servers.append(mock)
    flusher = None
    if not args.flush_in_workers:
        # Started before the gateway, stopped after it (reverse order): it gets the last
        # traces the workers add while they shut down.
        flusher = start_server("flusher", [sys.executable, "manage.py", "run_flusher"], env, logs)
        servers.append(flusher)
    gateway = start_server("gateway", gateway_command(gateway_port, WORKERS), env, logs)
    servers.append(gateway)
    await wait_ready(mock, f"http://{HOST}:{mock_port}/v1/models", "mock")
    await wait_ready(gateway, f"http://{HOST}:{gateway_port}/v1/models", api_key, WORKERS)
    if flusher is not None:
        await wait_flusher_ready(flusher)
    print(
        f"mock on :{mock_port}, gateway on :{gateway_port} (workers "
        f"{', '.join(map(str, gateway.workers()))}), "
        + (
            "traces written by the workers (--flush-in-workers)"
            if flusher is None
            else f"trace flusher pid {flusher.proc.pid}"
        )
        + f"; logs in {logs}",
        flush=True,
    )
    return Stack(
        mock=mock,
        gateway=gateway,
        flusher=flusher,
        bodies=Bodies(),
        warmup=50 if args.quick else 200,
        profile_dir=logs if args.profile else None,
        ports={"mock": mock_port, "gateway": gateway_port},
        keys={"mock": "mock", "gateway": api_key, HEALTHCARE_KEY: healthcare_key},
    )


def stop_all(servers: list[Server]) -> None:
    """Stop ``servers`` in reverse order; show what their logs have besides INFO lines."""
    for server in reversed(servers):
        stop_server(server)
    for server in servers:
        problems = server.problems()
        if problems:
            print(f"\n--- {server.name} log, besides INFO lines ({server.log}) ---")
            print("\n".join(problems[-60:]))
