"""The benchmark's scenarios, what one of them measures, and the settings its modules share."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bench.profiling import Profile


ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REDIS_URL = "redis://127.0.0.1:6379/15"
MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-haiku-20240307"  # routed by gateway/dataplane/providers/anthropic.py
CHUNKS = 20
WORKERS = 2
SCENARIO_TIMEOUT = 150.0
LITELLM_SCENARIO_TIMEOUT = 600.0  # 3000 requests at some 20 to 50 a second

Target = Literal["mock", "gateway", "litellm"]
Protocol = Literal["openai", "anthropic"]  # what the load generator speaks
Tier = Literal["pro", "healthcare"]
HEALTHCARE_KEY = "gateway-healthcare"


class BenchError(RuntimeError):
    """Set-up failed; the message says what and where to look."""


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    group: str  # the letter ``--only`` selects
    label: str
    target: Target
    stream: bool
    concurrency: int
    n: int
    model: str = MODEL
    protocol: Protocol = "openai"
    provider: str | None = None  # the gateway's answers must name it in aqta.provider
    workers: int = WORKERS  # the gateway's uvicorn workers (gateway scenarios)
    tier: Tier = "pro"  # the organisation calling: healthcare writes a receipt per call

    @property
    def key_name(self) -> str:
        """Which of the stack's keys the scenario calls with."""
        return HEALTHCARE_KEY if self.tier == "healthcare" else self.target

    @property
    def timeout(self) -> float:
        return LITELLM_SCENARIO_TIMEOUT if self.target == "litellm" else SCENARIO_TIMEOUT


# Group L: LiteLLM beside the gateway. They run after the others, B1 and E1 with a gateway of one
# worker (as LiteLLM has), LB and LE with the LiteLLM proxy; same bodies and N as B and E.
LITELLM_GROUP = "L"
LITELLM_PEERS = {"LB": ("B", "B1"), "LE": ("E", "E1")}  # LiteLLM row: the gateway's rows


def scenarios_for(quick: bool) -> list[Scenario]:
    def n(full: int, small: int) -> int:
        return small if quick else full

    openai: dict[str, Any] = {"provider": "openai"}
    one_worker: dict[str, Any] = {"provider": "openai", "workers": 1}
    anthropic: dict[str, Any] = {"model": ANTHROPIC_MODEL, "provider": "anthropic"}
    return [
        Scenario("A", "A", "A. mock direct, JSON, 10 clients", "mock", False, 10, n(3000, 300)),
        Scenario(
            "B", "B", "B. gateway, JSON, 10 clients", "gateway", False, 10, n(3000, 300), **openai
        ),
        Scenario(
            "H",
            "H",
            "H. gateway, Healthcare (a receipt per call), JSON, 10 clients",
            "gateway",
            False,
            10,
            n(3000, 300),
            tier="healthcare",
            **openai,
        ),
        Scenario("C0", "C", "C. mock direct, JSON, 1 client", "mock", False, 1, n(500, 100)),
        Scenario(
            "C", "C", "C. gateway, JSON, 1 client", "gateway", False, 1, n(500, 100), **openai
        ),
        Scenario("D", "D", "D. mock direct, stream, 10 clients", "mock", True, 10, n(1000, 100)),
        Scenario(
            "E", "E", "E. gateway, stream, 10 clients", "gateway", True, 10, n(1000, 100), **openai
        ),
        Scenario(
            "F",
            "F",
            "F. gateway, stream via Anthropic, 10 clients",
            "gateway",
            True,
            10,
            n(1000, 100),
            **anthropic,
        ),
        Scenario(
            "G",
            "G",
            "G. mock direct, Anthropic stream, 10 clients",
            "mock",
            True,
            10,
            n(1000, 100),
            model=ANTHROPIC_MODEL,
            protocol="anthropic",
        ),
        Scenario(
            "B1",
            LITELLM_GROUP,
            "B1. gateway, 1 worker, JSON, 10 clients",
            "gateway",
            False,
            10,
            n(3000, 300),
            **one_worker,
        ),
        Scenario(
            "E1",
            LITELLM_GROUP,
            "E1. gateway, 1 worker, stream, 10 clients",
            "gateway",
            True,
            10,
            n(1000, 100),
            **one_worker,
        ),
        Scenario(
            "LB", LITELLM_GROUP, "LB. LiteLLM, JSON, 10 clients", "litellm", False, 10, n(3000, 300)
        ),
        Scenario(
            "LE",
            LITELLM_GROUP,
            "LE. LiteLLM, stream, 10 clients",
            "litellm",
            True,
            10,
            n(1000, 100),
        ),
    ]


@dataclass(slots=True)
class Outcome:
    """What one load phase saw."""

    n: int = 0
    sent: int = 0  # requests actually sent (each leaves one trace behind the gateway)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    ttfbs: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, reason: str, detail: str) -> None:
        self.failures[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{reason}: {detail[:400]}")

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


@dataclass(slots=True)
class Result:
    scenario: Scenario
    warmup: Outcome
    outcome: Outcome
    server_cpu_ms: float | None  # measured server's process tree, per request
    flusher_cpu_ms: float | None  # the run_flusher process, per request (None: no such process)
    mock_cpu_ms: float | None  # the mock's tree, per request (also behind the gateway)
    client_cpu_ms: float  # this process, per request
    machine_busy: float  # share of all CPUs busy during the load (everything)
    other_cpu_ms: float  # per request: all CPU time not of the server, mock or client
    rss_mb: list[float]  # peak RSS of each gateway worker so far (gateway scenarios)
    split_ms: tuple[float, float, float] | None  # gateway per request: loop, threads, rest
    redis_cpu_us: float  # Redis's CPU per request (server-wide)
    admit_us: float | None  # Redis's time per admission script (EVALSHA) call
    trace_batches: int  # trace batches the flushers acknowledged (XACK calls)
    catch_up_s: float | None  # after the load, until every trace was in PostgreSQL (gateway)
    backlog: int  # traces not yet stored when the catch-up gave up (0: caught up)
    profile: Profile | None = None  # one gateway worker
    flusher_profile: Profile | None = None

    @property
    def total_cpu_ms(self) -> float | None:
        """Gateway process tree plus the flusher process, per request (LiteLLM: its tree, as it
        has no other process)."""
        if self.server_cpu_ms is None or self.scenario.target == "mock":
            return None
        return self.server_cpu_ms + (self.flusher_cpu_ms or 0.0)

    @property
    def rps(self) -> float:
        return self.outcome.n / self.outcome.elapsed if self.outcome.elapsed else 0.0

    def p(self, q: float) -> float | None:
        return percentile(self.outcome.latencies, q)

    def ttfb(self, q: float) -> float | None:
        return percentile(self.outcome.ttfbs, q)


@dataclass(slots=True)
class Run:
    results: list[Result] = field(default_factory=list)
    busy_before: float = 0.0  # share of all CPUs busy before anything started
    flush_in_workers: bool = False  # the simple shape: no flusher process
    gateway_idle_ms_per_s: float | None = None  # the gateway's background CPU, without load
    flusher_idle_ms_per_s: float | None = None
    litellm_version: str | None = None  # installed in LITELLM_VENV
    litellm_skipped: str | None = None  # why the LiteLLM rows were not run


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] * 1000
