"""Aqta benchmark: the /v1 data plane in front of the mock provider, all on loopback.

``python -m bench.run`` prepares its own PostgreSQL database (``aqta_bench``) and Redis db (15),
starts the mock provider and the gateway (uvicorn, 2 workers), loads both with an aiohttp client,
prints a Markdown table with the goals and writes it to ``bench/results.md``. See bench/README.md.

As a peer, the same run measures the LiteLLM proxy (pinned in bench/litellm-requirements.txt,
installed on demand into ``.venv/litellm``, one worker, no database) in front of the same mock,
and the gateway at one worker beside it; ``--no-litellm`` skips them.

By default it runs the production shape: ``AQTA_FLUSH_IN_WORKERS=false`` and one
``manage.py run_flusher`` process writing the traces to PostgreSQL; ``--flush-in-workers`` runs
the simple shape, where the gateway workers write them themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from bench.litellm import ensure_litellm, litellm_version, start_litellm
from bench.load import load
from bench.measure import (
    BUSY_WARNING,
    CLK_TCK,
    alive,
    busy_share,
    catch_up,
    cpu_seconds,
    gateway_split,
    idle_cpu_ms_per_s,
    machine_ticks,
    peak_rss_mb,
    redis_stats,
    split_per_request,
)
from bench.profiling import PROJECT_PACKAGES, Profiler, py_spy
from bench.report import num, report
from bench.scenarios import (
    HOST,
    LITELLM_GROUP,
    ROOT,
    BenchError,
    Outcome,
    Result,
    Run,
    Scenario,
    scenarios_for,
)
from bench.stack import (
    Server,
    Stack,
    aqta_env,
    free_port,
    gateway_command,
    prepare_aqta,
    prepare_healthcare,
    prepare_stores,
    start_server,
    start_stack,
    stop_all,
    stop_server,
    wait_ready,
)

RESULTS = Path(__file__).resolve().parent / "results.md"
REQUEST_TIMEOUT = 30.0
LITELLM_READY_TIMEOUT = 180.0  # it imports for 10 to 20 s on a 2-core machine
IDLE_SECONDS = 3.0  # the gateway's background CPU is measured this long after the scenarios


# --- the run -------------------------------------------------------------------------------------


def _cpu(server: Server | None) -> float:
    return cpu_seconds(server.proc.pid) if server is not None else 0.0


async def run_scenario(scenario: Scenario, url: str, api_key: str, stack: Stack) -> Result:
    """Warm up, wait for the traces, then measure the load phase plus the traces' catch-up."""
    on_gateway = scenario.target == "gateway"
    proxy = scenario.target != "mock"  # the gateway or LiteLLM, in front of the mock
    measured = stack.server(scenario.target)
    flusher, mock = stack.flusher, stack.mock
    connector = aiohttp.TCPConnector(limit=scenario.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm = await _bounded(
            load(session, url, api_key, scenario, stack.warmup, stack.bodies), scenario
        )
        if on_gateway:
            # The warm-up's traces are written before the measurement starts, not during it.
            stack.traces_sent += warm.sent
            _, backlog = await catch_up(stack.traces_sent)
            if backlog:
                print(f"WARNING: {backlog} warm-up traces still not stored", flush=True)
        profiler = flusher_profiler = None
        if stack.profile_dir is not None and proxy:
            workers = measured.workers()
            if workers:
                profiler = Profiler(workers[0], stack.profile_dir / f"profile-{scenario.key}.txt")
            if flusher is not None and on_gateway:
                flusher_profiler = Profiler(
                    flusher.proc.pid, stack.profile_dir / f"profile-{scenario.key}-flusher.txt"
                )
        split_before = gateway_split(measured) if proxy else None
        redis_before = redis_stats()
        server_before = cpu_seconds(measured.proc.pid)
        flusher_before = _cpu(flusher)
        mock_before = cpu_seconds(mock.proc.pid)
        client_before = time.process_time()
        machine_before = machine_ticks()
        outcome = await _bounded(
            load(session, url, api_key, scenario, scenario.n, stack.bodies), scenario
        )
        machine_loaded = machine_ticks()  # "machine busy" is about the load, not the catch-up
        catch_up_s: float | None = None
        backlog = 0
        if on_gateway:
            # Measured until every trace of the phase is in PostgreSQL, so the writes' CPU (in
            # the flusher, or in the workers with --flush-in-workers) is all counted.
            stack.traces_sent += outcome.sent
            catch_up_s, backlog = await catch_up(stack.traces_sent)
        client_cpu = time.process_time() - client_before
        machine_after = machine_ticks()
        server_cpu = cpu_seconds(measured.proc.pid) - server_before
        flusher_cpu = _cpu(flusher) - flusher_before
        split_after = gateway_split(measured) if proxy else None
        redis_after = redis_stats()
        mock_cpu = cpu_seconds(mock.proc.pid) - mock_before
    packages = ("litellm/",) if scenario.target == "litellm" else PROJECT_PACKAGES
    profile = profiler.finish(packages=packages) if profiler is not None else None
    flusher_profile = flusher_profiler.finish() if flusher_profiler is not None else None
    rss = [peak_rss_mb(pid) or 0.0 for pid in measured.workers()] if proxy else []
    n = max(outcome.n, 1)
    busy = machine_after[0] - machine_before[0]
    redis = {k: redis_after.get(k, 0.0) - redis_before.get(k, 0.0) for k in redis_after}
    evalsha_calls = redis.get("evalsha_calls", 0.0)
    return Result(
        scenario=scenario,
        redis_cpu_us=redis.get("cpu", 0.0) * 1e6 / n,
        admit_us=redis["evalsha_usec"] / evalsha_calls if evalsha_calls else None,
        trace_batches=int(redis.get("xack_calls", 0)),
        catch_up_s=catch_up_s,
        backlog=backlog,
        warmup=warm,
        outcome=outcome,
        server_cpu_ms=server_cpu * 1000 / n,
        flusher_cpu_ms=flusher_cpu * 1000 / n if flusher is not None and on_gateway else None,
        mock_cpu_ms=mock_cpu * 1000 / n,
        client_cpu_ms=client_cpu * 1000 / n,
        machine_busy=(machine_loaded[0] - machine_before[0])
        / max(machine_loaded[1] - machine_before[1], 1),
        other_cpu_ms=(
            busy / CLK_TCK - mock_cpu - client_cpu - flusher_cpu - (server_cpu if proxy else 0.0)
        )
        * 1000
        / n,
        rss_mb=rss,
        split_ms=split_per_request(split_after, split_before, n)
        if split_after is not None and split_before is not None
        else None,
        profile=profile,
        flusher_profile=flusher_profile,
    )


async def _bounded(phase: Coroutine[Any, Any, Outcome], scenario: Scenario) -> Outcome:
    try:
        return await asyncio.wait_for(phase, scenario.timeout)
    except TimeoutError:
        outcome = Outcome(n=scenario.n, elapsed=scenario.timeout)
        outcome.fail("scenario timed out", f"not finished after {scenario.timeout:.0f} s")
        return outcome


def _prepare_litellm(run: Run, chosen: list[Scenario]) -> tuple[list[Scenario], Path | None]:
    """Install LiteLLM if group L is chosen; without it, the scenarios less group L."""
    if not any(s.group == LITELLM_GROUP for s in chosen):
        return chosen, None
    command, why = ensure_litellm()
    if command is None:
        run.litellm_skipped = f"LiteLLM could not be installed: {why}"
        print(f"WARNING: {run.litellm_skipped}\nThe benchmark goes on without it.", flush=True)
        return [s for s in chosen if s.group != LITELLM_GROUP], None
    run.litellm_version = litellm_version()
    return chosen, command


async def measure(run: Run, stack: Stack, scenario: Scenario) -> None:
    """Run one scenario against its target, add its result, say how it went."""
    result = await run_scenario(scenario, stack.url(scenario), stack.keys[scenario.key_name], stack)
    run.results.append(result)
    print(
        f"  {scenario.label}: {result.rps:,.0f} req/s, "
        f"p50 {num(result.p(0.5), 2)} ms, failures {result.outcome.failed}"
        f" (+{result.warmup.failed} in warm-up)"
        + (
            f", traces stored {result.catch_up_s:.1f} s after the load"
            if result.catch_up_s is not None and not result.backlog
            else ""
        ),
        flush=True,
    )
    if result.backlog:
        print(
            f"WARNING: {result.backlog} traces not stored {result.catch_up_s:.0f} s after the load",
            flush=True,
        )


def _check_alive(servers: list[Server], scenario: Scenario) -> None:
    for server in servers:
        if not server.stopped and not alive(server.proc.pid):
            raise BenchError(f"{server.name} died during {scenario.label}")


async def bench(args: argparse.Namespace, logs: Path) -> Run:
    run = Run(flush_in_workers=args.flush_in_workers)
    chosen, litellm_command = _prepare_litellm(
        run, [s for s in scenarios_for(args.quick) if s.group in args.only]
    )
    run.busy_before = await busy_share(1.0)
    if run.busy_before > BUSY_WARNING:
        print(
            f"WARNING: the machine is {100 * run.busy_before:.0f} % busy before the benchmark "
            "starts; other processes will perturb the numbers.",
            flush=True,
        )
    mock_port, gateway_port = free_port(), free_port()
    print("Preparing PostgreSQL database aqta_bench and Redis db 15 ...", flush=True)
    prepare_stores()
    env = aqta_env(mock_port, logs, args.flush_in_workers)
    api_key = prepare_aqta(env)
    healthcare_key = prepare_healthcare(env)
    servers: list[Server] = []
    try:
        stack = await start_stack(
            args, env, logs, servers, api_key, (mock_port, gateway_port), healthcare_key
        )
        for scenario in chosen:
            if scenario.group != LITELLM_GROUP:
                await measure(run, stack, scenario)
                _check_alive(servers, scenario)
        await measure_idle(run, stack)
        peers = [s for s in chosen if s.group == LITELLM_GROUP]
        if any(s.target == "gateway" for s in peers):
            await bench_one_worker(run, stack, env, logs, servers, api_key, peers)
        if litellm_command is not None and any(s.target == "litellm" for s in peers):
            await bench_litellm(run, stack, litellm_command, logs, servers, peers)
        return run
    finally:
        stop_all(servers)


async def measure_idle(run: Run, stack: Stack) -> None:
    """The background CPU of the gateway and the flusher, without load."""
    flusher = stack.flusher
    idle = await idle_cpu_ms_per_s([stack.gateway, *([flusher] if flusher else [])], IDLE_SECONDS)
    run.gateway_idle_ms_per_s = idle[0]
    run.flusher_idle_ms_per_s = idle[1] if flusher is not None else None


async def bench_one_worker(
    run: Run,
    stack: Stack,
    env: dict[str, str],
    logs: Path,
    servers: list[Server],
    api_key: str,
    scenarios: list[Scenario],
) -> None:
    """The gateway scenarios of ``scenarios`` on the gateway with one worker, as LiteLLM runs,
    in place of the one with WORKERS; stopped after them, so that LiteLLM is measured alone
    in front of the mock (and the flusher)."""
    stop_server(stack.gateway)
    port = free_port()
    one = start_server("gateway-1-worker", gateway_command(port, 1), env, logs, single_process=True)
    servers.append(one)
    await wait_ready(one, f"http://{HOST}:{port}/v1/models", api_key, 1)
    print(f"gateway with 1 worker on :{port} (pid {one.proc.pid})", flush=True)
    stack.gateway, stack.ports["gateway"] = one, port
    for scenario in scenarios:
        if scenario.target == "gateway":
            await measure(run, stack, scenario)
            _check_alive(servers, scenario)
    stop_server(one)


async def bench_litellm(
    run: Run,
    stack: Stack,
    command: Path,
    logs: Path,
    servers: list[Server],
    scenarios: list[Scenario],
) -> None:
    """Start LiteLLM, run its scenarios, stop it. If it does not start, or dies, the run goes on
    without (the rest of) its rows, and the report says why."""
    port = free_port()
    litellm, master_key = start_litellm(command, stack.ports["mock"], port, logs)
    servers.append(litellm)
    try:
        await wait_ready(
            litellm, f"http://{HOST}:{port}/v1/models", master_key, timeout=LITELLM_READY_TIMEOUT
        )
    except BenchError as error:
        first = str(error).splitlines()[0]
        run.litellm_skipped = f"LiteLLM did not start: {first} (log: {litellm.log})"
        print(f"WARNING: {error}\nThe benchmark goes on without LiteLLM.", flush=True)
        stop_server(litellm)
        return
    print(
        f"LiteLLM {run.litellm_version or '(version unknown)'} on :{port} "
        f"(pid {litellm.proc.pid}, 1 worker, no database)",
        flush=True,
    )
    stack.litellm = litellm
    stack.ports["litellm"], stack.keys["litellm"] = port, master_key
    for scenario in scenarios:
        if scenario.target != "litellm":
            continue
        await measure(run, stack, scenario)
        if not alive(litellm.proc.pid):
            run.litellm_skipped = f"LiteLLM died during {scenario.label} (log: {litellm.log})"
            print(f"WARNING: {run.litellm_skipped}", flush=True)
            break
        _check_alive(servers, scenario)
    stop_server(litellm)
    stack.litellm = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument(
        "--only",
        default="A,B,C,D,E,F,G,H,L",
        help="scenarios, e.g. B,E (C = both C rows; L = LiteLLM: LB, LE, and the gateway at 1"
        " worker: B1, E1)",
    )
    parser.add_argument(
        "--no-litellm",
        action="store_true",
        help="skip the LiteLLM peer rows (group L), and so its install into .venv/litellm",
    )
    parser.add_argument(
        "--flush-in-workers",
        action="store_true",
        help="the simple shape: the gateway workers write the traces (AQTA_FLUSH_IN_WORKERS=true),"
        " no run_flusher process",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record one gateway worker (and the flusher) during the gateway scenarios"
        " (needs py-spy)",
    )
    args = parser.parse_args(argv)
    args.only = {part.strip().upper() for part in args.only.split(",") if part.strip()}
    unknown = args.only - set("ABCDEFGH" + LITELLM_GROUP)
    if unknown or not args.only:
        parser.error(
            f"--only takes letters A to H and L, not {','.join(sorted(unknown)) or 'nothing'}"
        )
    if args.no_litellm:
        args.only.discard(LITELLM_GROUP)
        if not args.only:
            parser.error("--no-litellm leaves no scenario to run")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # runs the clean-up in the finally blocks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logs = Path(tempfile.mkdtemp(prefix="aqta-bench-"))
    started = time.monotonic()
    try:
        if args.profile:
            py_spy()
        run = asyncio.run(bench(args, logs))
    except BenchError as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; the servers were stopped.", file=sys.stderr)
        return 130
    text, clean = report(run, args)
    print("\n" + text)
    RESULTS.write_text(text)
    print(f"Written to {RESULTS.relative_to(ROOT)} ({time.monotonic() - started:.0f} s).")
    if not clean:
        print("\n!!! THE BENCHMARK SAW FAILED REQUESTS: see the list above. !!!", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
